"""Batch files in the older format: every malformed file is one ConfigError line naming the file,
the key path and what is allowed (never a traceback); a valid file maps onto Hydra overrides that
parse back to the values it holds."""

import copy
import datetime
import os
import random

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from sensoryforge.core.params import ConfigError
from sensoryforge.sweep.batchfile import MAX_STIMULI, load_batch_file, override_value

from conftest import run_cli

VALID = {
    "metadata": {"batch_name": "legacy sweep, v2", "version": "1.0", "author": "me", "date": datetime.date(2026, 2, 11)},
    "base_config": {
        "pipeline": {"device": "cpu", "seed": 7, "grid_size": 40, "spacing": 0.3, "center": [0.0, 0.0]},
        "neurons": {"sa_neurons": 16, "ra_neurons": 25, "pc_neurons": 4, "sa2_neurons": 0, "dt": 0.5},
        "innervation": {"receptors_per_neuron": 28},
        "grids": [{"name": "Main Grid"}],  # the later "canonical" format: no equivalent here
        "temporal": {"t_pre": 20, "t_ramp": 10, "t_plateau": 100.5, "t_post": 50, "dt": 1.0},
    },
    "batch": {
        "output_dir": "legacy_out",
        "save_format": "hdf5",
        "save_intermediates": True,
        "stimuli": [
            {"type": "gaussian_sweep", "base_seed": 42, "repetitions": 2,
             "parameters": {"amplitude": [10.0, 1e-05], "sigma": 0.5, "center_x": [0, -1.25]}},
            {"type": "gabor", "parameters": {"frequency": [1.0, 2.0], "wavelength": [None], "duration": [300]}},
            {"type": "step", "repetitions": 1, "parameters": {}},
        ],
    },
}
COMMON = {
    "pipeline.device": "cpu", "pipeline.seed": "7", "pipeline.grid_size": "40", "pipeline.spacing": "0.3",
    "neurons.sa.count": "16", "neurons.ra.count": "25", "neurons.pc.count": "4", "neurons.sa2.count": "0",
    "pipeline.dt": "1.0", "pipeline.duration": "190.5", "pipeline.save_intermediates": "true",
}
BLOCKS = [
    {**COMMON, "stimulus": "gaussian", "stimulus.t_pre": "20", "stimulus.t_ramp": "10", "stimulus.t_plateau": "100.5",
     "stimulus.amplitude": "10.0,1e-05", "stimulus.sigma": "0.5", "stimulus.center_x": "0,-1.25",
     "repetition": "range(2)", "seed": "42"},
    {**COMMON, "stimulus": "gabor", "stimulus.t_pre": "20", "stimulus.t_ramp": "10", "stimulus.t_plateau": "100.5",
     "stimulus.frequency": "1.0,2.0", "stimulus.wavelength": "null", "pipeline.duration": "300", "repetition": "range(1)"},
    {**COMMON, "stimulus": "step", "stimulus.t_pre": "20", "stimulus.t_plateau": "100.5", "repetition": "range(1)"},  # no t_ramp
]


def write(tmp_path, content, name="bad.yml"):
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True, sort_keys=False))
    return p


def load_error(path):
    with pytest.raises(ConfigError) as e:
        load_batch_file(path)
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg and len(msg) < 700, msg
    assert msg.startswith(f"batch_file={path}: "), msg
    return msg


def test_valid_file_maps_to_blocks(tmp_path):
    b = load_batch_file(write(tmp_path, VALID, "ok.yml"))
    assert b.blocks == BLOCKS
    assert (b.name, b.format, b.output_dir) == ("legacy sweep, v2", "hdf5", "legacy_out")
    assert b.ignored == ["innervation", "grids", "pipeline.center"]


def test_overrides_parse_back_to_the_file_values(tmp_path):
    parser = OverridesParser.create()
    b = load_batch_file(write(tmp_path, VALID, "ok.yml"))
    (o,) = parser.parse_overrides([f"k={b.blocks[0]['stimulus.amplitude']}"])
    assert list(o.sweep_iterator()) == [10.0, 1e-05]
    for v in ["a,b", "c d", " lead", "it's", "back\\", "a\\'b", "x=y", "true", "null", "10", "1e-05", "é", "[a]",
              "a:b", "{x}", "x\\", "''", "~/out dir", 0.1, 1e-07, -0.0, 12, True, None]:
        (o,) = parser.parse_overrides([f"k={override_value(v)}"])
        assert not o.is_sweep_override() and o.value() == v and type(o.value()) is type(v), (v, override_value(v))


def test_anchors_and_merge_keys_are_plain_yaml(tmp_path):
    text = (
        "batch:\n  stimuli:\n    - &g {type: gaussian, repetitions: 2, parameters: {amplitude: [5]}}\n"
        "    - {<<: *g, repetitions: 3}\n"  # a merged key given again is no duplicate
    )
    b = load_batch_file(write(tmp_path, text, "ok.yml"))
    assert [blk["repetition"] for blk in b.blocks] == ["range(2)", "range(3)"]


def _set(path, value):
    doc = copy.deepcopy(VALID)
    node = doc
    for k in path[:-1]:
        node = node[k]
    if value is DEL:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


DEL = object()
S0, S1 = ("batch", "stimuli", 0), ("batch", "stimuli", 1)
P0 = (*S0, "parameters")

# (id, file content: text, bytes or a document; the expected part of the message)
ROWS = [
    # the file itself
    ("yaml-syntax", "batch:\n  stimuli: [1, 2\n", "not valid YAML at line 3, column 1"),
    ("yaml-indent", "batch:\n  a: 1\n b: 2\n", "not valid YAML at line 3"),
    ("python-object-tag", "batch: !!python/object/apply:os.system ['touch pwned']\n", "python/object/apply:os.system"),
    ("python-name-tag", "!!python/name:os.system\n", "tags that build objects are not read"),
    ("unknown-local-tag", "batch: !include other.yml\n", "not valid YAML"),
    ("duplicate-key", "batch:\n  stimuli: []\nbatch: {}\n", "key 'batch' given twice"),
    ("yaml-bad-date", "metadata:\n  date: 2020-13-45\n", "not valid YAML at line 2, column 9: 2020-13-45 is not a valid timestamp"),
    ("yaml-bad-int-tag", "batch: !!int abc\n", "not valid YAML at line 1, column 8: abc is not a valid int"),
    ("yaml-set-of-scalar", "batch: !!set [1]\n", "not valid YAML: "),
    ("yaml-recursive-alias", "batch: &a {stimuli: [*a]}\n", "batch.stimuli[0].stimuli: unknown key"),
    ("control-character", "batch: \x07\n", "not valid YAML"),
    ("not-utf8", b"batch:\n  output_dir: caf\xe9\n", "not UTF-8 text (byte 0xe9 at offset 24)"),
    ("utf16", "batch: {}\n".encode("utf-16"), "not UTF-8 text"),
    ("empty", "", "the file is empty"),
    ("only-comments", "# nothing here\n", "the file is empty"),
    ("deep-nesting", "batch: " + "[" * 5000 + "]" * 5000 + "\n", "batch"),
    # the top level
    ("top-list", "- batch\n- stimuli\n", "the file holds ['batch', 'stimuli']; it must be a mapping of metadata, base_config, batch"),
    ("top-scalar", "hello\n", "the file holds hello; it must be a mapping"),
    ("top-typo", _set(("batchh",), {}), "batchh: unknown key (did you mean 'batch'?); allowed keys: base_config, batch, metadata"),
    ("top-unknown", _set(("pipeline",), {}), "pipeline: unknown key; allowed keys: base_config, batch, metadata"),
    ("top-key-not-text", "1: a\nbatch: {}\n", "1: a key must be text"),
    # metadata
    ("metadata-list", _set(("metadata",), [1, 2]), "metadata=[1, 2]: must be a mapping"),
    ("batch-name-typo", _set(("metadata", "batch_nam"), "x"), "metadata.batch_nam: unknown key (did you mean 'batch_name'?)"),
    ("batch-name-int", _set(("metadata", "batch_name"), 5), "metadata.batch_name=5: must be one non-empty line of text"),
    ("batch-name-blank", _set(("metadata", "batch_name"), "  "), "metadata.batch_name=  : must be one non-empty line of text"),
    # base_config and its sections
    ("base-config-list", _set(("base_config",), ["pipeline"]), "base_config=['pipeline']: must be a mapping (key: value lines) of pipeline, neurons, temporal"),
    ("base-config-typo", _set(("base_config", "temporl"), {}), "base_config.temporl: unknown key (did you mean 'temporal'?)"),
    ("pipeline-string", _set(("base_config", "pipeline"), "cpu"), "base_config.pipeline=cpu: must be a mapping"),
    ("pipeline-typo", _set(("base_config", "pipeline", "grid_sise"), 3), "base_config.pipeline.grid_sise: unknown key (did you mean 'grid_size'?)"),
    ("device-choice", _set(("base_config", "pipeline", "device"), "gpu"), "base_config.pipeline.device=gpu: must be one of cpu, cuda, mps, auto"),
    ("device-long", _set(("base_config", "pipeline", "device"), "x" * 500), "base_config.pipeline.device=" + "x" * 57 + "...: must be one of"),
    ("seed-float", _set(("base_config", "pipeline", "seed"), 1.5), "base_config.pipeline.seed=1.5: must be an integer >= 0"),
    ("grid-size-bool", _set(("base_config", "pipeline", "grid_size"), True), "base_config.pipeline.grid_size=true: must be an integer >= 1"),
    ("grid-size-2.0", _set(("base_config", "pipeline", "grid_size"), 2.0), "base_config.pipeline.grid_size=2.0: must be an integer"),
    ("spacing-string", _set(("base_config", "pipeline", "spacing"), "abc"), "base_config.pipeline.spacing=abc: must be a finite number > 0 mm"),
    ("spacing-zero", _set(("base_config", "pipeline", "spacing"), 0), "base_config.pipeline.spacing=0: must be a finite number > 0 mm"),
    ("neurons-list", _set(("base_config", "neurons"), [16]), "base_config.neurons=[16]: must be a mapping"),
    ("neurons-typo", _set(("base_config", "neurons", "sa_neuron"), 3), "base_config.neurons.sa_neuron: unknown key (did you mean 'sa_neurons'?)"),
    ("neuron-count-abc", _set(("base_config", "neurons", "ra_neurons"), "abc"), "base_config.neurons.ra_neurons=abc: must be an integer >= 0 afferents"),
    ("neuron-count-negative", _set(("base_config", "neurons", "pc_neurons"), -1), "base_config.neurons.pc_neurons=-1: must be an integer >= 0"),
    ("neuron-count-huge", _set(("base_config", "neurons", "sa_neurons"), 10**40), "base_config.neurons.sa_neurons=100000000000000000...0000000000000000000: must be an integer >= 0"),
    ("neurons-dt-string", _set(("base_config", "neurons", "dt"), "fast"), "base_config.neurons.dt=fast: must be a finite number > 0 ms"),
    ("temporal-scalar", _set(("base_config", "temporal"), 5), "base_config.temporal=5: must be a mapping"),
    ("temporal-typo", _set(("base_config", "temporal", "t_psot"), 5), "base_config.temporal.t_psot: unknown key (did you mean 't_post'?)"),
    ("t-pre-abc", _set(("base_config", "temporal", "t_pre"), "abc"), "base_config.temporal.t_pre=abc: must be a finite number >= 0 ms"),
    ("t-ramp-negative", _set(("base_config", "temporal", "t_ramp"), -1), "base_config.temporal.t_ramp=-1: must be a finite number >= 0 ms"),
    ("t-plateau-inf", "base_config:\n  temporal: {t_plateau: .inf}\n", "base_config.temporal.t_plateau=inf: must be a finite number"),
    ("t-post-nan", "base_config:\n  temporal: {t_post: .nan}\n", "base_config.temporal.t_post=nan: must be a finite number"),
    ("t-post-huge", _set(("base_config", "temporal", "t_post"), 1e300), "base_config.temporal.t_post=1e+300: must be a finite number"),
    ("t-post-null", _set(("base_config", "temporal", "t_post"), None), "base_config.temporal.t_post=null: must be a finite number"),
    ("dt-zero", _set(("base_config", "temporal", "dt"), 0), "base_config.temporal.dt=0: must be a finite number > 0 ms"),
    ("dt-list", _set(("base_config", "temporal", "dt"), [1.0]), "base_config.temporal.dt=[1.0]: must be a finite number > 0 ms"),
    ("duration-zero", _set(("base_config", "temporal"), {"t_pre": 0, "t_ramp": 0, "t_plateau": 0, "t_post": 0}), "t_pre + 2 t_ramp + t_plateau + t_post = 0 ms (the duration): must be > 0"),
    # batch
    ("batch-string", _set(("batch",), "run"), "batch=run: must be a mapping (key: value lines) of output_dir, save_format, save_intermediates, stimuli"),
    ("batch-missing", _set(("batch",), DEL), "batch.stimuli=null: must list at least one sweep"),
    ("batch-typo-stimulii", {"batch": {"stimulii": [{"type": "gaussian"}]}}, "batch.stimulii: unknown key (did you mean 'stimuli'?); allowed keys: output_dir, save_format, save_intermediates, stimuli"),
    ("batch-unknown", _set(("batch", "workers"), 4), "batch.workers: unknown key; allowed keys:"),
    ("batch-key-not-text", {"batch": {1: 2}}, "batch.1: a key must be text"),
    ("save-format", _set(("batch", "save_format"), "csv"), "batch.save_format=csv: must be one of pytorch, hdf5, both, nwb"),
    ("save-format-list", _set(("batch", "save_format"), ["hdf5"]), "batch.save_format=['hdf5']: must be one of pytorch, hdf5, both, nwb"),
    ("save-intermediates-string", _set(("batch", "save_intermediates"), "sure"), "batch.save_intermediates=sure: must be true or false"),
    ("save-intermediates-int", _set(("batch", "save_intermediates"), 1), "batch.save_intermediates=1: must be true or false"),
    ("output-dir-empty", _set(("batch", "output_dir"), ""), "batch.output_dir=: must be one non-empty line of text"),
    ("output-dir-int", _set(("batch", "output_dir"), 5), "batch.output_dir=5: must be one non-empty line of text"),
    ("output-dir-null", _set(("batch", "output_dir"), None), "batch.output_dir=null: must be one non-empty line of text"),
    ("output-dir-newline", _set(("batch", "output_dir"), "a\nb"), "batch.output_dir=a\\nb: must be one non-empty line of text"),
    ("output-dir-interpolation", _set(("batch", "output_dir"), "${oc.env:HOME}"), "batch.output_dir=${oc.env:HOME}: must be one non-empty line of text"),
    ("output-dir-nul", _set(("batch", "output_dir"), "a\x00b"), "batch.output_dir=a\\x00b: must be"),
    # the stimuli
    ("stimuli-mapping", _set(("batch", "stimuli"), {"type": "gaussian"}), "batch.stimuli={'type': 'gaussian'}: must list at least one sweep"),
    ("stimuli-empty", _set(("batch", "stimuli"), []), "batch.stimuli=[]: must list at least one sweep"),
    ("stimuli-string", _set(("batch", "stimuli"), "gaussian"), "batch.stimuli=gaussian: must list at least one sweep"),
    ("stimulus-string", _set(("batch", "stimuli", 2), "gaussian"), "batch.stimuli[2]=gaussian: must be a mapping (key: value lines) of type, parameters, repetitions, base_seed"),
    ("stimulus-null", _set(("batch", "stimuli", 2), None), "batch.stimuli[2].type: missing; allowed: gabor, gabor_sweep"),
    ("stimulus-typo", _set((*S1, "repititions"), 2), "batch.stimuli[1].repititions: unknown key (did you mean 'repetitions'?)"),
    ("type-missing", _set((*S0, "type"), DEL), "batch.stimuli[0].type: missing; allowed:"),
    ("type-int", _set((*S1, "type"), 5), "batch.stimuli[1].type=5: must be one non-empty line of text"),
    ("type-unknown", _set((*S1, "type"), "spiral_sweep"), "batch.stimuli[1].type=spiral_sweep: unknown stimulus type; allowed: gabor, gabor_sweep"),
    ("repetitions-abc", _set((*S1, "repetitions"), "abc"), "batch.stimuli[1].repetitions=abc: must be an integer >= 1"),
    ("repetitions-zero", _set((*S1, "repetitions"), 0), "batch.stimuli[1].repetitions=0: must be an integer >= 1"),
    ("repetitions-bool", _set((*S1, "repetitions"), True), "batch.stimuli[1].repetitions=true: must be an integer >= 1"),
    ("repetitions-float", _set((*S1, "repetitions"), 2.5), "batch.stimuli[1].repetitions=2.5: must be an integer >= 1"),
    ("repetitions-too-many", _set((*S1, "repetitions"), MAX_STIMULI), f"batch.stimuli[1]: {8 + 2 * MAX_STIMULI} stimuli in all"),
    ("base-seed-string", _set((*S0, "base_seed"), "x"), "batch.stimuli[0].base_seed=x: must be an integer >= 0"),
    ("base-seed-negative", _set((*S0, "base_seed"), -3), "batch.stimuli[0].base_seed=-3: must be an integer >= 0"),
    ("parameters-list", _set(P0, [1, 2]), "batch.stimuli[0].parameters=[1, 2]: must be a mapping"),
    ("parameter-typo", _set((*P0, "amplitud"), [1]), "batch.stimuli[0].parameters.amplitud: unknown key (did you mean 'amplitude'?); allowed keys: amplitude, center_x"),
    ("parameter-other-type", _set((*P0, "frequency"), [1]), "batch.stimuli[0].parameters.frequency: unknown key; allowed keys:"),
    ("parameter-nested-list", _set((*P0, "amplitude"), [[1, 2]]), "batch.stimuli[0].parameters.amplitude[0]=[1, 2]: must be a single value"),
    ("parameter-empty-list", _set((*P0, "amplitude"), []), "batch.stimuli[0].parameters.amplitude=[]: an empty list"),
    ("parameter-mapping", _set((*P0, "amplitude"), {"min": 1}), "batch.stimuli[0].parameters.amplitude={'min': 1}: must be a finite number >= 0 kPa"),
    ("parameter-string", _set((*P0, "sigma"), "abc"), "batch.stimuli[0].parameters.sigma=abc: must be a finite number > 0 mm"),
    ("parameter-element-string", _set((*P0, "amplitude"), [1, "abc"]), "batch.stimuli[0].parameters.amplitude[1]=abc: must be a finite number"),
    ("parameter-out-of-range", _set((*P0, "amplitude"), [-5]), "batch.stimuli[0].parameters.amplitude[0]=-5: must be a finite number >= 0 kPa"),
    ("parameter-null", _set((*P0, "amplitude"), None), "batch.stimuli[0].parameters.amplitude=null: must be a finite number"),
    ("parameter-bool", _set((*P0, "center_x"), [True]), "batch.stimuli[0].parameters.center_x[0]=true: must be a finite number"),
    ("parameter-date", _set((*P0, "center_x"), datetime.date(2020, 1, 1)), "batch.stimuli[0].parameters.center_x=datetime.date(2020, 1, 1): must be a finite number"),
    ("parameter-nan", "batch:\n  stimuli:\n  - {type: gaussian, parameters: {sigma: [.nan]}}\n", "batch.stimuli[0].parameters.sigma[0]=nan: must be a finite number"),
    ("parameter-duration", _set((*S1, "parameters", "duration"), [0]), "batch.stimuli[1].parameters.duration[0]=0: must be a finite number > 0 ms"),
    ("parameter-set-tag", "batch:\n  stimuli:\n  - {type: gaussian, parameters: {sigma: !!set {1, 2}}}\n", "batch.stimuli[0].parameters.sigma="),
]


@pytest.mark.parametrize("content, expected", [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_malformed_file_is_one_line(tmp_path, content, expected):
    msg = load_error(write(tmp_path, content))
    assert expected in msg


def test_file_that_cannot_be_read(tmp_path):
    assert load_error(tmp_path / "missing.yml").endswith("cannot read it (No such file or directory)")
    assert load_error(tmp_path).endswith("is a folder, not a file")
    with pytest.raises(ConfigError, match=r"a\\x00b.yml: cannot read it \(embedded null byte\)$"):
        load_batch_file(tmp_path / "a\x00b.yml")  # the name shown escaped, on one line
    os.mkfifo(tmp_path / "fifo")
    assert load_error(tmp_path / "fifo").endswith("is not a regular file")
    big = tmp_path / "big.yml"
    with open(big, "wb") as f:
        f.truncate(64 * 2**20)  # sparse: large on paper only
    assert "bytes; a batch file is at most" in load_error(big)
    if os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, VALID, "locked.yml")
        locked.chmod(0)
        assert load_error(locked).endswith("cannot read it (Permission denied)")


def test_output_dir_that_is_a_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    for out, why in [(tmp_path / "afile", "is a file, not a folder"), (tmp_path / "afile" / "sub", f"lies under {tmp_path / 'afile'}, a file")]:
        msg = load_error(write(tmp_path, _set(("batch", "output_dir"), str(out))))
        assert f"batch.output_dir={out}: {why}" in msg or why in msg


BAD_VALUES = [None, "abc", "", [], [[1]], {}, {"a": 1}, True, 1.5, -1, 0, float("nan"), float("inf"), 10**30,
              "x" * 300, "${x}", datetime.date(2020, 1, 1), [None], ["a,b"]]


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, (*path, i))


@pytest.mark.parametrize("path", [p for p in _paths(VALID) if p], ids=lambda p: ".".join(map(str, p)))
def test_any_value_anywhere_is_accepted_or_one_line(tmp_path, path):
    """Every key of the valid file set to each of many wrong values: loads, or one ConfigError."""
    for v in BAD_VALUES:
        p = write(tmp_path, _set(path, v))
        try:
            load_batch_file(p)
        except ConfigError as e:
            assert "\n" not in str(e) and str(e).startswith(f"batch_file={p}: ") and len(str(e)) < 700


def test_mangled_text_is_accepted_or_one_line(tmp_path):
    """The valid file's text with a few characters deleted, inserted or replaced (YAML's own
    syntax among them), many times over: loads, or one ConfigError; never another exception."""
    text = yaml.safe_dump(VALID, sort_keys=False)
    pieces = [*":-[]{},&*!|>'\"%@#?\n \t0.e+\\", "!!", "<<: ", ".inf", "2020-13-45", "!!set ", "!!map ", "&a ", "*a"]
    rng = random.Random(0)
    for _ in range(400):
        chars = list(text)
        for _ in range(rng.randint(1, 4)):
            i, op = rng.randrange(len(chars)), rng.random()
            if op < 0.3:
                del chars[i]
            elif op < 0.7:
                chars.insert(i, rng.choice(pieces))
            else:
                chars[i] = rng.choice(pieces)
        p = write(tmp_path, "".join(chars))
        try:
            load_batch_file(p)
        except ConfigError as e:
            assert "\n" not in str(e) and str(e).startswith(f"batch_file={p}: ")


# -- through the real command line ---------------------------------------------------------------

# a sample through the command line (the table above holds every category, in-process)
CLI_ROWS = [
    ("python-tag", "batch: !!python/object/apply:os.system ['touch pwned']\n"),
    ("top-list", "- a\n- b\n"),
    ("not-utf8", b"batch:\n  output_dir: caf\xe9\n"),
    ("output-dir-file", _set(("batch", "output_dir"), "afile")),
]


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["hydra.sweep.dir=out"]], ids=["own-dir", "sweep-dir"])
@pytest.mark.parametrize("content", [r[1] for r in CLI_ROWS], ids=[r[0] for r in CLI_ROWS])
def test_command_line_stops_with_one_line_and_no_folder(tmp_path, content, extra):
    write(tmp_path, content)
    (tmp_path / "afile").write_text("x")
    before = set(os.listdir(tmp_path))
    r = run_cli(["-m", "batch_file=bad.yml", *extra], tmp_path, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sensoryforge: error: batch_file=bad.yml: "), r.stderr
    assert set(os.listdir(tmp_path)) == before  # no output folder (legacy_out, out, multirun)
