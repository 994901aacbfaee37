"""The package layout: the games as siblings, the LMaaS core in layers, old import paths still working,
and the JAX cores free of the reference solvers' and the product layer's dependencies."""

import importlib
import subprocess
import sys

import pytest

import lmaas_jax as lj

# Names users imported before the LMaaS core moved into `lmaas_jax/lmaas/` (scenarios -> robust ->
# pricing), the reference solvers beside it, and the report modules into their games.
OLD_PATHS = {
    "lmaas_jax": {
        "Market": "lmaas_jax.lmaas.scenarios",
        "ValueMarket": "lmaas_jax.lmaas.scenarios",
        "random_market": "lmaas_jax.lmaas.scenarios",
        "rsr": "lmaas_jax.lmaas.robust",
        "robust_terms": "lmaas_jax.lmaas.robust",
        "relaxed_rsr": "lmaas_jax.lmaas.robust",
        "plan": "lmaas_jax.lmaas.robust",
        "imp": "lmaas_jax.lmaas.pricing",
        "GradientIMP": "lmaas_jax.lmaas.pricing",
        "classic_imp": "lmaas_jax.lmaas.pricing",
        "seller_profit": "lmaas_jax.lmaas.pricing",
        "equilibrium_prices": "lmaas_jax.lmaas.pricing",
        "sensitivities": "lmaas_jax.lmaas.pricing",
        "PricingSolution": "lmaas_jax.lmaas.pricing",
        "sweep": "lmaas_jax.product._sweep",
        "SweepGrid": "lmaas_jax.product._sweep",
        "load_config": "lmaas_jax.product._config",
    },
    "lmaas_jax.reference": {
        "milp_pricing": "lmaas_jax.lmaas.reference",
        "ccg_rsr": "lmaas_jax.lmaas.reference",
        "CCGResult": "lmaas_jax.lmaas.reference",
        "brute_force_line": "lmaas_jax.lmaas.reference",
    },
    "lmaas_jax.experiments": {
        "run_experiments": "lmaas_jax.product._run",
        "e1_robustness": "lmaas_jax.lmaas.experiments._tables",
        "ttc_report": "lmaas_jax.ttc._report",
        "ttc_section": "lmaas_jax.ttc._report",
        "token_cap_report": "lmaas_jax.token_cap._report",
        "token_auction_report": "lmaas_jax.token_auction._report",
    },
}


@pytest.mark.parametrize(
    "old,name,new", [(old, name, new) for old, names in OLD_PATHS.items() for name, new in names.items()]
)
def test_old_import_paths_name_the_moved_objects(old, name, new):
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)


def test_every_layer_reexports_into_the_game_and_the_top_level():
    for layer in ("scenarios", "robust", "pricing"):
        module = importlib.import_module(f"lmaas_jax.lmaas.{layer}")
        public = [n for n, v in vars(module).items() if not (n.startswith("_") or isinstance(v, type(sys)))]
        assert len(public) >= 6, (layer, public)
        for name in public:
            assert getattr(lj.lmaas, name) is getattr(module, name) is getattr(lj, name), name
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
