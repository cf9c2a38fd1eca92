"""Hydra sweeper plugin: `hydra/sweeper=sensoryforge` (the default of SensoryForge's config).

Hydra only loads plugins from the `hydra_plugins` package; the work is done by
`sensoryforge.sweep.sweeper`, imported when a sweep starts so plugin discovery stays fast.
"""

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class SensoryForgeSweeperConf:
    _target_: str = "hydra_plugins.sensoryforge_sweeper.sensoryforge_sweeper.SensoryForgeSweeper"
    # key -> sweep, as Hydra's basic sweeper (crossed with the command line's sweeps)
    params: dict[str, str] | None = None
    # several sweeps in one batch: each block is its own key -> sweep grid, run one after another
    blocks: list[dict[str, str]] | None = None
    # stimuli per Hydra job; 0 = automatic (see sensoryforge.sweep.plan.chunk_size)
    chunk_size: int = 0
    min_chunk_size: int = 1
    max_chunk_size: int = 256


ConfigStore.instance().store(group="hydra/sweeper", name="sensoryforge", node=SensoryForgeSweeperConf)


class SensoryForgeSweeper(Sweeper):
    def __init__(self, params=None, blocks=None, chunk_size=0, min_chunk_size=1, max_chunk_size=256):
        self.params, self.blocks = params, blocks
        self.chunk_size, self.min_chunk_size, self.max_chunk_size = chunk_size, min_chunk_size, max_chunk_size
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.hydra_context, self.task_function, self.config = hydra_context, task_function, config

    def sweep(self, arguments: list[str]) -> Any:
        from sensoryforge.sweep.sweeper import run_sweep

        return run_sweep(self, arguments)
