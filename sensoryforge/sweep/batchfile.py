"""Batch YAML files in the older format, run unchanged as a Hydra sweep:

    sensoryforge -m batch_file=examples/batch_config.yml

The file's parts map onto SensoryForge as follows:
  metadata.batch_name                 -> dataset.name (the batch id)
  base_config.pipeline.{device,seed,grid_size,spacing}
                                      -> pipeline.*
  base_config.neurons.{sa,ra,pc,sa2}_neurons
                                      -> neurons.<pop>.count
  base_config.neurons.dt, temporal.dt -> pipeline.dt
  base_config.temporal.{t_pre,t_ramp,t_plateau} -> stimulus.* of every sweep (whose type has them)
  base_config.temporal.t_post         -> pipeline.duration = t_pre + 2 t_ramp + t_plateau + t_post
  batch.output_dir                    -> hydra.sweep.dir
  batch.save_format (pytorch|hdf5|both|nwb) -> dataset.format
  batch.save_intermediates            -> pipeline.save_intermediates
  batch.stimuli[i]                    -> one sweep block: stimulus=<type without _sweep>,
      parameters.<name>: [values]     -> stimulus.<name>=v1,v2,...  (duration -> pipeline.duration)
      repetitions: n                  -> repetition=range(n)
      base_seed: s                    -> seed=s
Sections with no equivalent here (innervation, filters, neuron_params, noise, solver, grid
center) are reported once and otherwise ignored: SensoryForge's own calibrated defaults apply.

The whole file is checked on reading: anything wrong in it is one `ConfigError` line naming the
file, the key path in it (batch.stimuli[2].repetitions), the value and what is allowed. Every
scalar is checked by the rule of the schema field it sets (`_field`): the same rule as on the
command line. Unknown keys are refused with a "did you mean" hint and the keys the format knows,
except under base_config (the older simulator's settings, many with no equivalent here), where a
key that is no likely misspelling is reported as ignored; metadata documents, but batch_name.
Values are written as Hydra override values that parse back to them (`override_value`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import reprlib
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sensoryforge.core.params import (
    MAX_MAGNITUDE,
    ConfigError,
    allowed,
    check_value,
    param,
    unknown_key,
)
from sensoryforge.core.schema import POPULATIONS, Config, PipelineConfig, PopulationConfig
from sensoryforge.core.stimuli import REGISTRY

_FORMATS = {"pytorch": "pytorch", "hdf5": "hdf5", "both": "both", "nwb": "nwb"}
MAX_BYTES = 16 * 2**20  # a batch file is a few kB; refuse before reading something huge
MAX_STIMULI = 1_000_000  # in one batch file: more would keep the planner busy for hours


@dataclass
class _Format:
    """The format's own settings, as schema fields (the others are the schema's own fields)."""

    batch_name: str = param("", "", None, "batch id")
    t_pre: float = param(0.0, "ms", ">=0")
    t_ramp: float = param(0.0, "ms", ">=0")
    t_plateau: float = param(0.0, "ms", ">=0")
    t_post: float = param(0.0, "ms", ">=0")
    dt: float = param(1.0, "ms", ">0")
    output_dir: str = param("", "", None, "the sweep folder")
    save_format: str = param("both", "", "in:" + ",".join(_FORMATS))
    save_intermediates: bool = param(False)
    type: str = param("", "", None, "a registered stimulus type, with or without _sweep")
    repetitions: int = param(1, "", ">=1")


# Every key the format knows, per section. Scalars: (rule's class, field, override it sets).
_TIMES = ("t_pre", "t_ramp", "t_plateau", "t_post", "dt")
_SECTIONS = {
    "": ("metadata", "base_config", "batch"),
    "metadata": ("batch_name",),
    "base_config": ("pipeline", "neurons", "temporal"),
    "base_config.pipeline": ("device", "seed", "grid_size", "spacing"),
    "base_config.neurons": (*(f"{p}_neurons" for p in POPULATIONS), "dt"),
    "base_config.temporal": _TIMES,
    "batch": ("output_dir", "save_format", "save_intermediates", "stimuli"),
}
_SCALARS = {
    **{f"base_config.pipeline.{k}": (PipelineConfig, k, f"pipeline.{k}") for k in _SECTIONS["base_config.pipeline"]},
    **{f"base_config.neurons.{p}_neurons": (PopulationConfig, "count", f"neurons.{p}.count") for p in POPULATIONS},
    "base_config.neurons.dt": (_Format, "dt", "pipeline.dt"),  # temporal.dt, later, wins
    **{f"base_config.temporal.{k}": (_Format, k, "pipeline.dt" if k == "dt" else None) for k in _TIMES},
    "batch.save_intermediates": (_Format, "save_intermediates", "pipeline.save_intermediates"),
    "batch.save_format": (_Format, "save_format", None),
    "batch.output_dir": (_Format, "output_dir", None),
    "metadata.batch_name": (_Format, "batch_name", None),
}
_ENTRY = ("type", "parameters", "repetitions", "base_seed")
_LEGACY = ("innervation", "filters", "neuron_params", "noise", "solver", "center")  # no equivalent here

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxstring, _repr.maxother = 2, 4, 4, 40, 40


@dataclass
class BatchFile:
    blocks: list[dict[str, str]]  # one per sweep; base_config's settings repeated in each
    name: str | None = None
    format: str | None = None
    output_dir: str | None = None
    ignored: list[str] = field(default_factory=list)  # sections with no equivalent here


def _show(v: Any, width: int = 60) -> str:
    """A value as a message shows it: one line, short (reprlib never walks all of a big value)."""
    if isinstance(v, bool) or v is None:
        s = {True: "true", False: "false", None: "null"}[v]
    elif isinstance(v, str):
        s = v if v.isprintable() else repr(v)[1:-1]
    else:
        s = _repr.repr(v)
    return s if len(s) <= width else s[: width - 3] + "..."


def _at(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _bad(path: str, v: Any, rule: str) -> ConfigError:
    return ConfigError(f"{path}={_show(v)}: {rule}")


def _is_number(v: Any) -> bool:
    return (not isinstance(v, bool) and isinstance(v, (int, float)) and (isinstance(v, int) or math.isfinite(v))
            and abs(v) <= MAX_MAGNITUDE)


_KINDS = {  # the type part of a field's rule
    "float": ("a finite number", _is_number),
    "int": ("an integer", lambda v: _is_number(v) and isinstance(v, int)),  # 2.0 is refused, as is true
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    # one printable line; no ${...}: OmegaConf would resolve it as an interpolation
    "str": ("one non-empty line of text", lambda v: isinstance(v, str) and v.strip() != "" and v.isprintable() and "${" not in v),
}


def _field(cls: type, name: str, v: Any, path: str) -> Any:
    """Checks v by the rule of the field cls.name: its type (from the annotation), then its check."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))  # "float | None"
    if v is None and "None" in t:
        return v
    what, ok = _KINDS[re.search(r"\b(bool|int|float|str)\b", t).group(1)]
    check = f.metadata.get("check") or ""
    rule = allowed(cls, name) if check.startswith("in:") else f"{what} {allowed(cls, name) if check else ''}".strip()
    try:
        if not ok(v):
            raise ConfigError(rule)
        check_value(cls, name, v, path)
    except ConfigError:
        big = isinstance(v, (int, float)) and not isinstance(v, bool) and not _is_number(v)
        raise _bad(path, v, f"must be {rule}" + (f" (|x| <= {MAX_MAGNITUDE:g})" if big else "")) from None
    return v


def _mapping(v: Any, path: str, known: tuple[str, ...], ignored: list[str] | None = None) -> dict:
    """A section: a mapping (empty if left blank) of known keys. Where `ignored` is given, other
    keys are listed there (relative to base_config) unless they look like a misspelling."""
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise _bad(path, v, f"must be a mapping (key: value lines) of {', '.join(known)}")
    for k in v:
        if not isinstance(k, str):
            raise ConfigError(f"{_at(path, _show(k))}: a key must be text; allowed keys: {', '.join(known)}")
        if k in known:
            continue
        if ignored is None or (k not in _LEGACY and difflib.get_close_matches(k, known)):
            raise unknown_key(path, _show(k), known)  # "did you mean ...?" and what the format knows
        ignored.append(_at(path, k).removeprefix("base_config").lstrip("."))
    return v


def _values(cls: type, name: str, v: Any, path: str) -> list:
    """A parameter's values: one value, or a non-empty flat list of them (swept)."""
    if not isinstance(v, list):
        return [_field(cls, name, v, path)]
    if not v:
        raise _bad(path, v, "an empty list; give at least one value")
    for j, x in enumerate(v):
        if isinstance(x, (list, dict)):
            raise _bad(f"{path}[{j}]", x, "must be a single value (a list sweeps its values; lists do not nest)")
        _field(cls, name, x, f"{path}[{j}]")
    return v


_parser = None


def override_value(v: Any) -> str:
    """v written as a Hydra override value that parses back to v: numbers as Python writes them
    (repr round-trips a float), strings unquoted where Hydra reads them back unchanged, else quoted."""
    global _parser
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    if not isinstance(v, str):
        return repr(v)
    from hydra.core.override_parser.overrides_parser import OverridesParser

    _parser = _parser or OverridesParser.create()
    try:
        o = _parser.parse_override(f"k={v}")
        if not o.is_sweep_override() and o.value() == v and isinstance(o.value(), str):
            return v
    except Exception:  # noqa: BLE001 - any parse failure just means: quote it
        pass
    # in a quoted string, only backslashes before a quote or at the end are escapes (doubled)
    return "'" + re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), v) + "'"


class _Loader(yaml.SafeLoader):
    """yaml's safe loader (plain data, no tags that build objects), refusing a key given twice and
    telling where a value is that yaml's own constructors cannot build (a date 2020-13-45)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for k, _ in node.value:
            if isinstance(k, yaml.ScalarNode) and k.tag != "tag:yaml.org,2002:merge":
                if (k.tag, k.value) in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"key '{_show(k.value)}' given twice", k.start_mark)
                seen.add((k.tag, k.value))
        return super().construct_mapping(node, deep)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except _BUILD_ERRORS as e:
            what = f"{_show(node.value)} is" if isinstance(node, yaml.ScalarNode) else "this is"
            problem = f"{what} not a valid {node.tag.rpartition(':')[2]} ({_show(str(e), 100)})"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from None


_BUILD_ERRORS = (ValueError, TypeError, KeyError, OverflowError)  # what yaml's constructors raise


def _read(path: Path) -> Any:
    try:
        st = path.stat()
        data = path.read_bytes() if stat.S_ISREG(st.st_mode) and st.st_size <= MAX_BYTES else b""
    except (OSError, ValueError) as e:  # ValueError: a NUL in the name
        raise ConfigError(f"cannot read it ({getattr(e, 'strerror', None) or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError("is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError("is not a regular file")
    if st.st_size > MAX_BYTES:
        raise ConfigError(f"{st.st_size} bytes; a batch file is at most {MAX_BYTES} bytes")
    try:
        return yaml.load(data.decode("utf-8-sig"), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = " ".join(str(e.problem or e.context).split())
        if "could not determine a constructor" in what:
            what += " (a batch file holds plain data: tags that build objects are not read)"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"not valid YAML{where}: {_show(what, 300)}") from None
    except (yaml.YAMLError, *_BUILD_ERRORS) as e:  # no position known
        raise ConfigError(f"not valid YAML: {_show(' '.join(str(e).split()), 200)}") from None
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply") from None


def _check_folder(out: str, path: str) -> None:
    """The output folder must be a folder or not exist yet, with no file in its way."""
    p = Path(out)
    try:
        for q in (p, *p.parents):
            if q.exists() and not q.is_dir():
                raise _bad(path, out, "is a file, not a folder" if q == p else f"lies under {q}, a file")
    except OSError as e:
        raise _bad(path, out, f"cannot be a folder ({e.strerror or e})") from None


def load_batch_file(path: Path) -> BatchFile:
    path = Path(path)
    try:
        return _load(path)
    except ConfigError as e:
        msg = str(e) if str(e).isprintable() else " ".join(str(e).split())  # one line, always
        raise ConfigError(f"batch_file={_show(str(path), 4096)}: {msg}") from None


def _load(path: Path) -> BatchFile:
    doc = _read(path)
    if doc is None:
        raise ConfigError("the file is empty; it must hold batch.stimuli (a list of sweeps)")
    if not isinstance(doc, dict):
        raise ConfigError(f"the file holds {_show(doc)}; it must be a mapping of {', '.join(_SECTIONS[''])}")
    ignored: list[str] = []
    sections = {"": _mapping(doc, "", _SECTIONS[""])}
    for sect, known in _SECTIONS.items():  # parents come first
        if sect:
            parent, _, key = sect.rpartition(".")
            # base_config holds the older simulator's settings; metadata the rest documents
            extra = ignored if sect.startswith("base_config") else [] if sect == "metadata" else None
            sections[sect] = _mapping(sections[parent].get(key), sect, known, extra)
    values, common = {}, {}
    for key, (cls, name, target) in _SCALARS.items():
        sect, _, k = key.rpartition(".")
        if k in sections[sect]:
            values[key] = _field(cls, name, sections[sect][k], key)
            if target:
                common[target] = override_value(values[key])
    temporal = {k: values[f"base_config.temporal.{k}"] for k in _TIMES if f"base_config.temporal.{k}" in values}
    if all(k in temporal for k in _TIMES[:4]):
        duration = temporal["t_pre"] + 2 * temporal["t_ramp"] + temporal["t_plateau"] + temporal["t_post"]
        if not 0 < duration <= MAX_MAGNITUDE:
            raise ConfigError(f"base_config.temporal: t_pre + 2 t_ramp + t_plateau + t_post = {duration:g} ms "
                              f"(the duration): must be > 0 and <= {MAX_MAGNITUDE:g}")
        common["pipeline.duration"] = override_value(duration)
    out = values.get("batch.output_dir")
    if out is not None:
        _check_folder(out, "batch.output_dir")

    stimuli = sections["batch"].get("stimuli")
    if not isinstance(stimuli, list) or not stimuli:
        raise _bad("batch.stimuli", stimuli, "must list at least one sweep (- type: ..., parameters: ...)")
    blocks, total = [], 0
    types = ", ".join(f"{t}, {t}_sweep" for t in sorted(REGISTRY))
    for i, s in enumerate(stimuli):
        at = f"batch.stimuli[{i}]"
        s = _mapping(s, at, _ENTRY)
        if "type" not in s:
            raise ConfigError(f"{at}.type: missing; allowed: {types}")
        kind = _field(_Format, "type", s["type"], f"{at}.type").removesuffix("_sweep")
        if kind not in REGISTRY:
            raise _bad(f"{at}.type", s["type"], f"unknown stimulus type; allowed: {types}")
        cls, block = REGISTRY[kind], {**common, "stimulus": kind}
        fields = tuple(f.name for f in dataclasses.fields(cls))
        # the envelope where the type has one (step has no t_ramp)
        block.update({f"stimulus.{k}": override_value(temporal[k]) for k in _TIMES[:3] if k in temporal and k in fields})
        reps = n = _field(_Format, "repetitions", s.get("repetitions", 1), f"{at}.repetitions")
        for p, vals in _mapping(s.get("parameters"), f"{at}.parameters", (*fields, "duration")).items():
            rule, key = (PipelineConfig, "pipeline.duration") if p == "duration" else (cls, f"stimulus.{p}")
            vals = _values(rule, p, vals, f"{at}.parameters.{p}")
            block[key] = ",".join(override_value(x) for x in vals)
            n *= len(vals)
        total += n
        if total > MAX_STIMULI:
            raise ConfigError(f"{at}: {total} stimuli in all (each sweep's lists multiplied, times its "
                              f"repetitions); at most {MAX_STIMULI} in one batch file")
        block["repetition"] = f"range({reps})"
        if "base_seed" in s:
            block["seed"] = override_value(_field(Config, "seed", s["base_seed"], f"{at}.base_seed"))
        blocks.append(block)
    fmt = values.get("batch.save_format")
    return BatchFile(blocks, values.get("metadata.batch_name"), _FORMATS[fmt] if fmt else None, out, ignored)
