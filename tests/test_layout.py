"""The house: layers that point one way, no import cycle, short files (an AST walk over every
import of the package, function-local ones included)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import ROOT

PACKAGE = ROOT / "sensoryforge"
MAX_LINES = 600

# lowest first; a module may import its own layer's group and any lower layer, nothing above,
# and not the other group of its own layer
LAYERS = [
    [("sensoryforge", "sensoryforge.core")],
    [("sensoryforge.config",)],
    [("sensoryforge.dataset",)],
    [("sensoryforge.physiology",)],
    [("sensoryforge.job",), ("sensoryforge.sweep",)],
    [("sensoryforge.run", "sensoryforge.cli")],
]


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = modules()


def imports(path: Path) -> set[str]:
    """Every module of the package that `path` imports, anywhere in the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from a.b import c` imports the module a.b.c when there is one, else a.b
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                     for a in node.names]
        else:
            continue
        found.update(n for n in names if n in MODULES)
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def group_of(module: str) -> tuple[int, int]:
    best = None
    for i, layer in enumerate(LAYERS):
        for j, group in enumerate(layer):
            for prefix in group:
                if module == prefix or module.startswith(prefix + "."):
                    if best is None or len(prefix) > best[2]:
                        best = (i, j, len(prefix))
    assert best is not None, f"{module} is in no layer of this test"
    return best[:2]


def test_no_import_cycle():
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(GRAPH[m]):
            if state.get(n) == 1:
                cycle = path[path.index(n):] + [n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m, [m])
    assert len(GRAPH) > 40 and sum(len(v) for v in GRAPH.values()) > 100  # the walk saw the package


def test_imports_point_down_the_layers():
    wrong = []
    for m, deps in GRAPH.items():
        li, gi = group_of(m)
        for d in deps:
            ld, gd = group_of(d)
            if ld > li or (ld == li and gd != gi):
                wrong.append(f"{m} -> {d}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def top_level_imports(path: Path) -> set[str]:
    """The top-level names of everything a file imports (torch, hydra, sensoryforge, ...)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            out.add((node.module or "").split(".")[0])
    return out


def test_the_core_needs_no_hydra_and_the_schema_no_torch():
    for m, path in MODULES.items():
        if m.startswith("sensoryforge.core"):
            assert "hydra" not in top_level_imports(path), m
    stdlib = {"__future__", "dataclasses", "typing", "difflib", "math", "collections"}
    assert top_level_imports(MODULES["sensoryforge.core.schema"]) <= stdlib | {"sensoryforge"}
    assert GRAPH["sensoryforge.core.schema"] == {"sensoryforge.core.params"}
    # params reads OmegaConf nodes too (typed config nodes), but needs nothing else
    assert top_level_imports(MODULES["sensoryforge.core.params"]) <= stdlib | {"omegaconf"}


def test_the_sweeper_reaches_the_dataset_writers_through_one_call():
    # atomic writes, job folders (and the segments of those cut short), their progress ledgers
    # and checkpoint.json
    allowed = {"sensoryforge.dataset.files", "sensoryforge.dataset.jobs", "sensoryforge.dataset.partial",
               "sensoryforge.dataset.progress"}
    for m, deps in GRAPH.items():
        if m.startswith("sensoryforge.physiology"):  # the battery writes its reports atomically, no more
            assert {d for d in deps if d.startswith("sensoryforge.dataset")} <= {"sensoryforge.dataset.files"}, m
        if not m.startswith("sensoryforge.sweep"):
            continue
        dataset = {d for d in deps if d.startswith("sensoryforge.dataset")}
        if m == "sensoryforge.sweep.sweeper":
            assert dataset - allowed == {"sensoryforge.dataset.aggregate"}, dataset
        else:
            assert dataset <= allowed, (m, dataset)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_file_is_over_600_lines(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name]}: {n} lines"
