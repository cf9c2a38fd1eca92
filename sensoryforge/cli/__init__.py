"""The command lines besides `sensoryforge` itself (sensoryforge/run.py): thin argparse layers, and
the checks of `sensoryforge`'s own command line before Hydra starts."""
