"""The configuration schema (Hydra structured configs) and the checks run before any simulation.

Units, stated once: space in mm, time in ms, rates in Hz, stimulus pressure in kPa.
The schema rejects unknown keys and wrong types while Hydra composes; `check()` rejects values out
of range with one line naming the key and what is allowed (ranges live in `param` metadata).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from sensoryforge import neurons as _neurons
from sensoryforge import stimuli as _stimuli
from sensoryforge.neurons import AdExParams, IzhikevichParams, LIFParams
from sensoryforge.params import ConfigError, check_fields, param

POPULATIONS = ("sa", "ra", "sa2")
SEED_KEYS = ("seed", "repetition")  # per-trial keys: no parameter point of their own
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


@dataclass
class PipelineConfig:
    device: str = param("cpu", "", "in:cpu,cuda,mps,auto", "where tensors live; auto = cuda, else mps, else cpu")
    dtype: str = param("float32", "", "in:float32,float64", "floating point precision")
    seed: int = param(42, "", None, "population seed: afferent positions, receptive fields, per-neuron parameters")
    grid_size: int = param(80, "receptors", ">=1", "receptors per side of the square receptor grid")
    spacing: float = param(0.15, "mm", ">0", "distance between neighbouring receptors")
    dt: float = param(0.5, "ms", ">0", "simulation time step")
    duration: float = param(1000.0, "ms", ">0", "simulated time per stimulus")
    save_intermediates: bool = param(False, "", None, "also save filtered drive, membrane potential, stimulus")
    batch_size: int = param(0, "stimuli", ">=0", "stimuli simulated together; 0 = automatic (memory-bounded)")
    threads: int = param(0, "", ">=0", "torch CPU threads; 0 = the cores divided by the launcher's parallel jobs")


@dataclass
class FilterParams:
    """Linear-nonlinear temporal filter on the pooled pressure x(t) of each afferent:

    drive = gain * (w_static * LP(x) + w_on * [V(x)]+ + w_off * [-V(x)]+) + bias

    LP is a first-order low-pass (tau_static); V is the velocity tau_dynamic * d/dt of x passed
    through two first-order low-passes (tau_dynamic): a band-pass peaking near 1/(2 pi tau_dynamic).
    SA: mostly sustained; RA: velocity only (silent during a steady hold); SA2: slow sustained.
    """

    tau_static: float = param(10.0, "ms", ">0", "time constant of the sustained path")
    w_static: float = param(1.0, "", ">=0", "weight of the sustained path")
    tau_dynamic: float = param(5.0, "ms", ">0", "time constant of the velocity path")
    w_on: float = param(0.0, "", ">=0", "weight of indentation velocity (onset)")
    w_off: float = param(0.0, "", ">=0", "weight of release velocity (offset)")


@dataclass
class PopulationConfig:
    count: int = param(100, "afferents", ">=0", "number of afferents in the patch")
    rf_sigma: float = param(1.0, "mm", ">0", "receptive-field scale: sd of the Gaussian receptor sampling")
    innervation: float = param(0.3, "", "0..1", "connection probability of a receptor at the field centre")
    jitter: float = param(0.5, "", "0..1", "afferent position jitter, as a fraction of the lattice step")
    gain: float = param(0.1, "1/kPa", ">=0", "drive (in rheobase units) per kPa of filtered pressure")
    bias: float = param(0.0, "", None, "constant drive (rheobase units); > 1 fires spontaneously")
    filter: FilterParams = field(default_factory=FilterParams)
    noise_std: float = param(0.05, "", ">=0", "input noise sd, rheobase units (Ornstein-Uhlenbeck)")
    noise_tau: float = param(5.0, "ms", ">0", "input noise correlation time")
    refractory: float = param(2.0, "ms", ">=0", "absolute refractory period")
    variability: float = param(0.1, "", "0..0.5", "per-neuron coefficient of variation of model parameters")
    model: str = param("izhikevich", "", "in:" + ",".join(_neurons.MODELS), "spiking model")
    izhikevich: IzhikevichParams = field(default_factory=IzhikevichParams)
    lif: LIFParams = field(default_factory=LIFParams)
    adex: AdExParams = field(default_factory=AdExParams)


@dataclass
class NeuronsConfig:
    sa: PopulationConfig = field(default_factory=PopulationConfig)
    ra: PopulationConfig = field(default_factory=PopulationConfig)
    sa2: PopulationConfig = field(default_factory=PopulationConfig)


@dataclass
class OutcomeConfig:
    series: list[str] = param(
        ["sa_rate", "ra_rate", "sa2_rate", "sa_count", "ra_count", "sa2_count"],
        "",
        None,
        "<population>_rate (Hz per afferent, binned) or <population>_count (cumulative spikes)",
    )
    measures: list[str] = param(
        ["mean", "peak", "final", "auc", "time_to_10"],
        "",
        None,
        "mean, peak, final, auc (trapezoidal, unit x s), time_to_N (ms until the series reaches N)",
    )
    bin: float = param(10.0, "ms", ">0", "bin width of the outcome series")
    primary: str = param("sa_rate_mean", "", None, "<series>_<measure> returned to Hydra's sweepers")


@dataclass
class DatasetConfig:
    format: str = param("both", "", "in:both,hdf5,pytorch", "dataset files written when a sweep ends")
    name: str | None = param(None, "", None, "batch id; default: the sweep folder's name")


@dataclass
class Config:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    neurons: NeuronsConfig = field(default_factory=NeuronsConfig)
    stimulus: Any = MISSING
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    seed: int = param(0, "", None, "base seed of the trial noise")
    repetition: int = param(0, "", ">=0", "trial index; the noise seed derives from (seed, repetition)")
    dry_run: bool = param(False, "", None, "print what would run, with estimates; simulate nothing")
    batch_file: str | None = param(None, "", None, "a batch YAML in the older format, run as a sweep")
    chunk: str | None = param(None, "", None, "set by the sweeper: which stimuli this job runs")
    fail_stimuli: list[str] = param([], "", None, "stimulus ids made to fail on purpose (tests)")
    objective: str = param(
        "primary", "", "in:primary,validation,validation_quick",
        "what a job returns to Hydra's sweepers: outcome.primary, or the physiology battery's validation loss "
        "(validation_quick: fewer afferents per experiment)",
    )
    validation_checks: list[int] = param([], "", None, "battery checks in the validation loss; empty = all")


def register_configs() -> None:
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)


register_configs()


def stimulus_type(node: Any) -> str:
    cls = OmegaConf.get_type(node) if isinstance(node, DictConfig) else type(node)
    for name, c in _stimuli.REGISTRY.items():
        if c is cls:
            return name
    raise ConfigError(f"stimulus: not a registered stimulus type; allowed: {', '.join(sorted(_stimuli.REGISTRY))}")


def check(cfg: DictConfig) -> None:
    """Every value check that needs no simulation. Raises ConfigError (one line)."""
    from sensoryforge.outcomes import parse_outcomes

    stimulus_type(cfg.stimulus)
    check_fields(cfg, "")
    stim = to_stimulus(cfg.stimulus)
    stim.check(cfg.pipeline.dt, cfg.pipeline.duration)
    if cfg.pipeline.duration < cfg.pipeline.dt:
        raise ConfigError(
            f"pipeline.duration={cfg.pipeline.duration}: must be at least one step (pipeline.dt={cfg.pipeline.dt} ms)"
        )
    parse_outcomes(cfg.outcome)
    from sensoryforge.pipeline import resolve_device

    resolve_device(cfg.pipeline.device)
    if cfg.objective != "primary":
        from sensoryforge.validate import parse_checks

        parse_checks(list(cfg.validation_checks))


def to_stimulus(node: Any) -> _stimuli.Stimulus:
    """The stimulus dataclass instance from its config node (field checks included)."""
    obj = OmegaConf.to_object(node) if isinstance(node, DictConfig) else node
    check_fields(obj, "stimulus")
    return obj


def load_config(overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The composed config (without the hydra node), as a job sees it, for library use and tests."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONF_DIR), version_base="1.3", job_name="run"):
        return compose("config", overrides=list(overrides))
