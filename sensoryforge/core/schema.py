"""The configuration schema: plain dataclasses whose fields carry their unit, allowed values and a
doc line (`param`). The ground every other module stands on: no torch, no Hydra.

Units, stated once: space in mm, time in ms, rates in Hz, stimulus pressure in kPa.

The defaults here are the model's defaults (the populations tuned against the physiology battery,
docs/PHYSIOLOGY.md), so `Simulator(PipelineConfig(), NeuronsConfig())` is the default patch of
skin without any config file; Hydra's config groups (conf/) compose on top of this schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sensoryforge.core.params import param

POPULATIONS = ("sa", "ra", "pc", "sa2")  # SA1, RA (FA I), PC (FA II, Pacinian), SA2
COLORS = {"sa": "#1f77b4", "ra": "#d62728", "pc": "#9467bd", "sa2": "#2ca02c"}  # one colour per population, every plot
SEED_KEYS = ("seed", "repetition")  # per-trial keys: no parameter point of their own


# -- spiking models' parameters (the models are in neurons.py) -----------------------------------


@dataclass
class IzhikevichParams:
    a: float = param(0.02, "1/ms", ">0", "recovery time scale")
    b: float = param(0.2, "", "0..4.9", "recovery sensitivity to v")
    c: float = param(-65.0, "mV", None, "reset potential")
    d: float = param(8.0, "", ">=0", "recovery jump after a spike (adaptation)")
    v_peak: float = param(30.0, "mV", None, "spike cut-off")


@dataclass
class LIFParams:
    tau_m: float = param(10.0, "ms", ">0", "membrane time constant")
    v_rest: float = param(-65.0, "mV", None, "resting potential")
    v_threshold: float = param(-50.0, "mV", None, "firing threshold")
    v_reset: float = param(-65.0, "mV", None, "reset potential")
    resistance: float = param(10.0, "MOhm", ">0", "membrane resistance (input current in nA)")


@dataclass
class AdExParams:
    C: float = param(281.0, "pF", ">0", "membrane capacitance")
    g_L: float = param(30.0, "nS", ">0", "leak conductance")
    E_L: float = param(-70.6, "mV", None, "leak reversal")
    V_T: float = param(-50.4, "mV", None, "threshold slope factor position")
    delta_T: float = param(2.0, "mV", ">0", "sharpness of the exponential")
    tau_w: float = param(144.0, "ms", ">0", "adaptation time constant")
    a: float = param(4.0, "nS", ">=0", "subthreshold adaptation")
    b: float = param(80.5, "pA", ">=0", "spike-triggered adaptation")
    V_reset: float = param(-70.6, "mV", None, "reset potential")
    V_peak: float = param(0.0, "mV", None, "spike cut-off")


# model name -> its parameters; the models themselves are registered under the same names
MODEL_PARAMS: dict[str, type] = {"izhikevich": IzhikevichParams, "lif": LIFParams, "adex": AdExParams}


# -- the simulation ------------------------------------------------------------------------------


@dataclass
class PipelineConfig:
    device: str = param("cpu", "", "in:cpu,cuda,mps,auto", "where tensors live; auto = cuda, else mps, else cpu")
    dtype: str = param("float32", "", "in:float32,float64", "floating point precision")
    seed: int = param(42, "", ">=0", "population seed: afferent positions, receptive fields, per-neuron parameters")
    grid_size: int = param(80, "receptors", ">=1", "receptors per side of the square receptor grid")
    spacing: float = param(0.15, "mm", ">0", "distance between neighbouring receptors")
    dt: float = param(0.25, "ms", ">0", "simulation time step (0.25 ms: vibration to 500 Hz, a quarter of Nyquist)")
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
    tau_dynamic: float = param(5.0, "ms", ">0", "time constant of the dynamic path")
    order: int = param(1, "", "1..3", "derivative order of the dynamic path: 1 velocity, 2 acceleration, 3 jerk")
    w_on: float = param(0.0, "", ">=0", "weight of the dynamic path's positive part (indentation, onset)")
    w_off: float = param(0.0, "", ">=0", "weight of its negative part (release, offset)")


@dataclass
class PopulationConfig:
    count: int = param(100, "afferents", ">=0", "number of afferents in the patch")
    rf_sigma: float = param(1.0, "mm", ">0", "receptive-field scale: sd of the Gaussian receptor sampling")
    innervation: float = param(0.3, "", "0..1", "connection probability of a receptor at the field centre")
    jitter: float = param(0.5, "", "0..1", "afferent position jitter, as a fraction of the lattice step")
    gain: float = param(0.1, "1/kPa", ">=0", "drive (in rheobase units) per kPa of filtered pressure")
    bias: float = param(0.0, "", None, "constant drive (rheobase units); > 1 fires spontaneously")
    saturation: float = param(0.0, "", ">=0", "drive d -> s tanh(d / s), rheobase units: transduction saturates; 0 = linear")
    filter: FilterParams = field(default_factory=FilterParams)
    noise_std: float = param(0.05, "", ">=0", "input noise sd, rheobase units (Ornstein-Uhlenbeck)")
    noise_scaling: float = param(0.0, "", ">=0", "input noise sd per unit of drive: transduction noise grows with the stimulus")
    noise_tau: float = param(5.0, "ms", ">0", "input noise correlation time")
    refractory: float = param(2.0, "ms", ">=0", "absolute refractory period")
    variability: float = param(0.1, "", "0..0.5", "per-neuron coefficient of variation of model parameters")
    model: str = param("izhikevich", "", "in:" + ",".join(MODEL_PARAMS), "spiking model")
    izhikevich: IzhikevichParams = field(default_factory=IzhikevichParams)
    lif: LIFParams = field(default_factory=LIFParams)
    adex: AdExParams = field(default_factory=AdExParams)


# The default populations of a 12 x 12 mm fingertip patch (Johansson & Vallbo 1979 densities:
# SA1 ~70/cm^2, RA ~140/cm^2, SA2 ~10-20/cm^2 on 1.44 cm^2), Izhikevich regular spiking, tuned
# against the physiology battery: wider SA/RA fields, a slower SA dynamic path, a sensitive RA
# with a fast recovery current (a, d) that locks it 1:1 to vibration (docs/PHYSIOLOGY.md).
def _sa() -> PopulationConfig:
    return PopulationConfig(count=100, rf_sigma=1.4, gain=0.3, bias=-0.15, saturation=15.0,
                            filter=FilterParams(tau_dynamic=1.0, w_on=12.0),
                            noise_std=0.05, noise_scaling=0.2, noise_tau=10.0)


def _ra() -> PopulationConfig:
    return PopulationConfig(count=196, rf_sigma=1.4, gain=7.0,
                            filter=FilterParams(w_static=0.0, tau_dynamic=2.5, w_on=1.0, w_off=0.35),
                            izhikevich=IzhikevichParams(a=0.1, d=15.0), noise_std=0.15, noise_scaling=0.1)


def _pc() -> PopulationConfig:
    return PopulationConfig(count=36, rf_sigma=3.5, innervation=1.0, gain=2500.0,
                            filter=FilterParams(w_static=0.0, tau_dynamic=0.7, order=3, w_on=1.0),
                            izhikevich=IzhikevichParams(a=0.1, d=2.0))


def _sa2() -> PopulationConfig:
    return PopulationConfig(count=25, rf_sigma=3.0, innervation=1.0, gain=0.56, saturation=15.0,
                            filter=FilterParams(tau_static=50.0, tau_dynamic=10.0))


@dataclass
class NeuronsConfig:
    sa: PopulationConfig = field(default_factory=_sa)
    ra: PopulationConfig = field(default_factory=_ra)
    pc: PopulationConfig = field(default_factory=_pc)
    sa2: PopulationConfig = field(default_factory=_sa2)


@dataclass
class OutcomeConfig:
    series: list[str] = param(
        [f"{p}_{k}" for k in ("rate", "count") for p in POPULATIONS],
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


# -- the application: sweeps, datasets, calibration --------------------------------------------


@dataclass
class DatasetConfig:
    format: str = param("both", "", "in:both,hdf5,pytorch,nwb",
                         "dataset files written when a sweep ends: both = hdf5 + pytorch; nwb = results.nwb")
    name: str | None = param(None, "", None, "batch id; default: the sweep folder's name")


@dataclass
class SensitivityConfig:
    """experiment=sensitivity: a Morris screening (or Sobol indices) over chosen parameters, run as
    one sweep and analysed with SALib into sensitivity.csv / .png (sensoryforge/sweep/sensitivity.py)."""

    method: str = param("morris", "", "in:morris,sobol", "Morris elementary effects (screening) or Sobol indices")
    parameters: dict[str, Any] = param(
        {}, "", None, "dotted key -> [low, high] (real-valued keys; a range of null leaves the key out)"
    )
    trajectories: int = param(10, "", ">=2", "Morris: trajectories r; points = r x (parameters + 1)")
    levels: int = param(4, "", ">=2", "Morris: grid levels p, even")
    samples: int = param(64, "", ">=2", "Sobol: base samples N, a power of 2; points = N x (parameters + 2)")
    repetitions: int = param(1, "", ">=1", "noise repetitions per point (repetition=0..k-1); measures averaged")
    seed: int = param(0, "", ">=0", "seed of the sample and of the bootstrap confidence intervals")
    resamples: int = param(1000, "", ">=1", "bootstrap resamples of the confidence intervals")
    measures: list[str] | None = param(None, "", None, "measures analysed (full or short names); null = every one")


@dataclass
class Config:
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    neurons: NeuronsConfig = field(default_factory=NeuronsConfig)
    stimulus: Any = "???"  # a registered stimulus type (stimulus=<type>), required
    outcome: OutcomeConfig = field(default_factory=OutcomeConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    sensitivity: SensitivityConfig | None = None  # experiment=sensitivity sets it
    seed: int = param(0, "", ">=0", "base seed of the trial noise")
    repetition: int = param(0, "", ">=0", "trial index; the noise seed derives from (seed, repetition)")
    dry_run: bool = param(False, "", None, "print what would run, with estimates; simulate nothing")
    detach: bool = param(False, "", None, "with hydra/launcher=slurm: submit, record and return; the same command "
                         "again attaches to the running tasks")
    batch_file: str | None = param(None, "", None, "a batch YAML in the older format, run as a sweep")
    chunk: str | None = param(None, "", None, "set by the sweeper: which stimuli this job runs")
    fail_stimuli: list[str] = param([], "", None, "stimulus ids made to fail on purpose (tests)")
    objective: str = param(
        "primary", "", "in:primary,validation,validation_quick",
        "what a job returns to Hydra's sweepers: outcome.primary, or the physiology battery's validation loss "
        "(validation_quick: fewer afferents per experiment)",
    )
    validation_checks: list[int] = param([], "", None, "battery checks in the validation loss; empty = all")


# command-line and testing switches: never part of a sweep point, a fingerprint or a table
SWITCHES = ("chunk", "dry_run", "detach", "batch_file", "fail_stimuli")
# keys that change neither spikes nor outcomes: left out of fingerprints and datasets' configs
NON_RESULT_KEYS = ("chunk", "dry_run", "detach", "fail_stimuli", "dataset", "batch_file", "objective", "validation_checks",
                   "sensitivity")
NON_RESULT_PIPELINE_KEYS = ("batch_size", "threads", "save_intermediates")
