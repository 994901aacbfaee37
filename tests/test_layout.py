"""The package layout: the import graph runs down the floors and has no circle, every public name has
one public path, and the JAX cores import neither the reference solvers' nor the product layer's
dependencies."""

import ast
import importlib
import pathlib
import subprocess
import sys
import types

import pytest

import lmaas_jax as lj

PACKAGE = pathlib.Path(lj.__file__).parent

# Floors, lowest first: a module imports only from floors below its own, or from its own package
# (one folder). The games sit side by side on one floor and never import each other; the product
# layer (config, sweeps, CLI, reports) sits on them all; the public namespaces on top.
FLOORS = {
    "lmaas_jax._checks": 0,
    "lmaas_jax._version": 0,
    "lmaas_jax.lmaas.scenarios": 1,
    "lmaas_jax.lmaas.robust": 2,
    "lmaas_jax.lmaas.pricing": 3,
    "lmaas_jax.ttc": 3,
    "lmaas_jax.token_auction": 3,
    "lmaas_jax.token_cap": 3,
    "lmaas_jax.lmaas.competition": 4,  # several sellers, each pricing by the pricing layer
    "lmaas_jax.lmaas.reference": 5,
    "lmaas_jax.datasets": 5,
    "lmaas_jax.lmaas": 5,
    "lmaas_jax.product": 6,  # its configuration, sweeps and output
    "lmaas_jax.product.experiments": 7,
    "lmaas_jax.product._run": 8,
    "lmaas_jax.product._cli": 9,
    "lmaas_jax.reference": 10,
    "lmaas_jax.experiments": 10,
    "lmaas_jax.__main__": 10,
    "lmaas_jax": 11,
}


def _module_name(path: pathlib.Path) -> str:
    parts = ("lmaas_jax", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _floor(module: str) -> tuple[int, str]:
    """The floor of `module` and the package it belongs to (the longest prefix in FLOORS)."""
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best], best


def import_graph() -> dict[str, set[str]]:
    """Every module of the package and the package modules it imports (at any depth of its code)."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if not target.startswith("lmaas_jax"):
                    continue
                # `from . import x` / `from .pkg import _mod`: the names may be modules themselves.
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    edges.add(
                        sub
                        if (PACKAGE.parent / sub.replace(".", "/")).exists()
                        or (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                        else target
                    )
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name.startswith("lmaas_jax")}
        graph[name] = edges - {name}
    return graph


def test_no_import_runs_back_up_a_floor():
    upward = []
    for module, targets in import_graph().items():
        floor, own = _floor(module)
        for target in targets:
            to, other = _floor(target)
            if to > floor or (to == floor and other != own):
                upward.append(f"{module} (floor {floor}) imports {target} (floor {to})")
    assert not upward, "\n".join(upward)


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                raise AssertionError("import circle: " + " -> ".join([*path, node, nxt]))
            if nxt not in state:
                visit(nxt, [*path, node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


PUBLIC_MODULES = [
    "lmaas_jax",
    "lmaas_jax.reference",
    "lmaas_jax.datasets",
    "lmaas_jax.ttc",
    "lmaas_jax.token_auction",
    "lmaas_jax.token_cap",
    "lmaas_jax.experiments",
]


def _public(module):
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return {n: getattr(module, n) for n in names if not isinstance(getattr(module, n), types.ModuleType)}


def test_every_public_name_has_one_public_path():
    # Each public object is reachable by one public module only; the packages in between
    # (`lmaas_jax.lmaas`, its layers) export nothing.
    seen = {}
    for name in PUBLIC_MODULES:
        for attr, obj in _public(importlib.import_module(name)).items():
            if isinstance(obj, type | types.FunctionType) or callable(obj):
                seen.setdefault(id(obj), []).append(f"{name}.{attr}")
    twice = [paths for paths in seen.values() if len(paths) > 1]
    assert not twice, twice
    for layer in (
        "lmaas_jax.lmaas",
        *(f"lmaas_jax.lmaas.{x}" for x in ("scenarios", "robust", "pricing", "competition")),
    ):
        assert not _public(importlib.import_module(layer)), layer
    with pytest.raises(AttributeError, match="no attribute 'missing'"):
        lj.missing  # noqa: B018


def test_the_jax_cores_import_neither_scipy_nor_the_product_layer():
    # A fresh interpreter: importing the package and the four games' solvers loads no scipy (the
    # reference solvers' HiGHS), pandas or matplotlib (the product layer's reports).
    code = (
        "import sys, lmaas_jax, lmaas_jax.ttc, lmaas_jax.token_auction, lmaas_jax.token_cap\n"
        "heavy = ('scipy', 'pandas', 'matplotlib', 'lmaas_jax.product._sweep')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"the JAX cores imported {out.stdout.strip()}"
