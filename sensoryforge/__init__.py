"""SensoryForge: tactile afferent populations (SA, RA, PC, SA2) as Hydra sweeps that become datasets."""

import os

# Idle OpenMP threads sleep instead of spinning. With spinning, torch's threads fight any other
# busy process for the cores: on a loaded 2-core machine building a population took 5 s instead
# of 0.6 s. It must be set before torch loads its OpenMP runtime; users can still override it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
