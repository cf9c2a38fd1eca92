# Makes conf/ the package `sensoryforge.conf` of an installed copy (pyproject.toml maps it there),
# so that a wheel carries its Hydra config groups.
