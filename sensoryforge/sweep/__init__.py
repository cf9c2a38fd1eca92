"""Sweeps: the plan (points, checks, fingerprints, resume, chunks), the dry run's estimates, the
sweeper that runs them through Hydra's launchers, and progress."""
