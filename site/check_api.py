"""Check that a built docs site documents every public name of every public module.

Usage: python docs/check_api.py SITE_DIR (after `mkdocs build -d SITE_DIR`). Exits 1 naming what
is missing. Public: what `import lmaas_jax as lj; lj.<name>` (and each subpackage) exposes without
a leading underscore, plus the lazily loaded names.
"""

import importlib
import pathlib
import re
import sys
import types

MODULES = {
    "lmaas_jax": "api/core",
    "lmaas_jax.reference": "api/reference",
    "lmaas_jax.datasets": "api/datasets",
    "lmaas_jax.ttc": "api/ttc",
    "lmaas_jax.token_auction": "api/token_auction",
    "lmaas_jax.token_cap": "api/token_cap",
    "lmaas_jax.experiments": "api/product",
}
LAZY = {"lmaas_jax": ("sweep", "SweepGrid", "sweep_market")}  # documented on api/product


def public_names(module) -> list[str]:
    names = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    return [n for n in names if not isinstance(getattr(module, n), types.ModuleType)]


def main(site: str) -> int:
    root = pathlib.Path(site)
    anchors = set()
    for page in root.rglob("index.html"):
        anchors |= set(re.findall(r'id="([A-Za-z0-9_.]+)"', page.read_text(encoding="utf-8")))
    missing = []
    for name in MODULES:
        module = importlib.import_module(name)
        wanted = public_names(module) + list(LAZY.get(name, ()))
        missing += [f"{name}.{n}" for n in wanted if f"{name}.{n}" not in anchors]
    if missing:
        print("Not in the API reference:", ", ".join(missing))
        return 1
    print(f"API reference complete: {len(MODULES)} modules, every public name documented.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
