"""The package's import graph: one-way (no cycles, notebooks numbered in import order), no private names across modules,
and no production module that imports the outside world (`synth`, `simulate`)."""
import ast
import json
import re

import pytest

from conftest import REPO

SRC = REPO / "src" / "campaign_lab"
OUTSIDE = {"synth", "simulate", "world"}   # the synthetic chain, the policy simulator and the world that answers through files: the outside world of the demo


def imports(path) -> list[tuple[str, list[str]]]:
    "(campaign_lab module, names) for every import in a file, at any depth (function-level imports count)."
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ""
            if node.level == 1: mod = f"campaign_lab.{mod}" if mod else "campaign_lab"
            if mod.startswith("campaign_lab.") or mod == "campaign_lab":
                names = [a.name for a in node.names]
                if mod == "campaign_lab": out += [(f"campaign_lab.{n}", []) for n in names]
                else: out.append((mod, names))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names if a.name.startswith("campaign_lab.")]
    return [(m.split(".")[1], names) for m, names in out]


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, list[str]]]]:
    return {p.stem: imports(p) for p in SRC.glob("*.py") if p.stem not in ("__init__", "_modidx")}


def test_no_import_cycles(graph):
    edges = {m: {t for t, _ in deps if t != m} for m, deps in graph.items()}
    state: dict[str, int] = {}
    def visit(m, path):
        if state.get(m) == 1: raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) == 2: return
        state[m] = 1
        for t in sorted(edges.get(m, ())): visit(t, path + [m])
        state[m] = 2
    for m in sorted(edges): visit(m, [])


def test_no_private_names_across_modules(graph):
    crossing = [(m, t, n) for m, deps in graph.items() for t, names in deps if t != m for n in names if n.startswith("_")]
    assert crossing == [], crossing


def test_production_never_imports_the_outside_world(graph):
    leaks = [(m, t) for m, deps in graph.items() if m not in OUTSIDE for t, _ in deps if t in OUTSIDE]
    assert leaks == [], f"production modules import the synthetic world: {leaks}"


def test_engines_are_named_not_imported():
    "The engine registry names its modules as strings; polars runs never import pyspark through it."
    from campaign_lab.waves import ENGINES
    assert ENGINES == {"polars": "campaign_lab.waves:PolarsEngine", "spark": "campaign_lab.spark:SparkEngine"}


def test_notebooks_are_numbered_in_import_order(graph):
    "A library notebook imports only modules whose notebooks have lower numbers."
    number = {}
    for nb in (REPO / "nbs").glob("[0-9][0-9]_*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        exp = next((m.group(1) for c in cells for m in [re.search(r"#\|\s*default_exp\s+(\w+)", "".join(c["source"]))] if m), None)
        if exp: number[exp] = int(nb.name[:2])
    assert set(graph) <= set(number), set(graph) - set(number)
    wrong = [(m, t) for m, deps in graph.items() for t, _ in deps if t != m and number[t] >= number[m]]
    assert wrong == [], f"imports of a module from a notebook numbered the same or higher: {wrong}"


def test_each_exported_cell_defines_one_public_function():
    "Library notebooks teach one function at a time: an exported cell holds at most one public function (helpers are private)."
    crowded = []
    for nb in sorted((REPO / "nbs").glob("[0-9][0-9]_*.ipynb")):
        for i, c in enumerate(json.loads(nb.read_text())["cells"]):
            src = "".join(c["source"])
            if c["cell_type"] == "code" and src.startswith("#| export"):
                public = re.findall(r"^def ([A-Za-z]\w*)", src, re.M)
                if len(public) > 1: crowded.append((nb.name, i, public))
    assert crowded == [], crowded
