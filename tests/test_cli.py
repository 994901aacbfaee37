"""The `lmaas-jax` command: every subcommand on a tiny config, and bad configs named key by key."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lmaas_jax.product._cli import main

TINY_RUN = """
[run]
out = "{out}"
n_models = 2
n_customers = 8
seeds = 2
gammas = [0, 2]
deviations = [0.1, 0.3]
capability_gaps = [0.2, 0.4]
e2_sizes = ["2x8"]
e2_markets = 2
e4_customers = 2
e5_size = "2x8"
e5_batches = [2]
e5_milp_markets = 1
e7_markets = 1
ttc_sweep_points = 4

[solver.ascent]
steps = 20
restarts = 4
"""


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.slow  # the whole main command (every experiment and game compiled): about 2 minutes
def test_run_writes_report_figures_and_tables(tmp_path):
    out = tmp_path / "out"
    cfg = tmp_path / "run.toml"
    cfg.write_text(TINY_RUN.format(out=out))
    result = invoke("run", "--config", cfg, "--no-progress")
    assert result.exit_code == 0, result.output
    report = (out / "report.md").read_text()
    for k in range(1, 8):
        png = (out / f"e{k}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert f"](e{k}.png)" in report
    # One report for the four games: the three sibling games' sections, figures and tables.
    for section, png in (
        ("## Test-time compute", "ttc_inefficiency.png"),
        ("## Token auctions", "token_auction.png"),
        ("## Token caps", "token_cap.png"),
    ):
        assert section in report and f"]({png})" in report
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    caps = pd.read_parquet(out / "token_cap.parquet")
    assert f"earns {caps['revenue'].iloc[0]:.3f}" in report
    ttc_table = pd.read_parquet(out / "ttc_table.parquet")
    assert len(ttc_table) == 9 * 3 and np.all(ttc_table["auction_welfare"] >= ttc_table["market_welfare"])
    summary = json.loads((out / "summary.json").read_text())["e1"]["nominal"]
    assert f"maximum {summary['max']:.2f}%" in report and "43.96%" in report
    # The headline is in dollars per market (a percentage over a base near 0 says little).
    assert f"RSR adds up to {summary['abs_max']:,.0f} $ of worst-case profit per market" in report
    e1 = pd.read_parquet(out / "e1_robustness.parquet")
    markets = pd.read_parquet(out / "markets_gamma_deviation.parquet")
    pd.testing.assert_frame_equal(e1, pd.read_csv(out / "e1_robustness.csv"), check_dtype=False)
    # With Gamma = 0 the scenario set is the nominal scenario: robust and nominal plans coincide.
    np.testing.assert_allclose(e1[e1["gamma"] == 0]["gain_worst_nominal"], 0.0, atol=1e-9)
    np.testing.assert_allclose(
        e1["gain_abs_nominal"], (e1["customer_worst_rsr"] - e1["customer_worst_nominal"]) / e1["markets"]
    )
    # The two naive rules plan alike exactly where the most accurate model is also the cheapest.
    same = e1["rules_coincide"] == e1["markets"]
    np.testing.assert_allclose(e1[same]["customer_worst_most_accurate"], e1[same]["customer_worst_cheapest"])
    # E3: an unsold model has no price; a price counted at the box top is at the top.
    e3 = pd.read_parquet(out / "e3_by_gamma.parquet")
    assert np.all(e3["price_1"].isna() == (e3["sold_1"] == 0)) and np.all(e3["ceiling_1"] <= e3["sold_1"])
    assert np.all(e3["price_min_1"] <= e3["price_max_1"] + 1e-9) and np.all(
        e3["price_max_1"] <= e3["box_top_1"] * (1 + 1e-6)
    )
    assert summary["max"] >= summary["median"] > 0.0
    e2 = pd.read_parquet(out / "e2_seller.parquet")
    assert e2["milp_optimal"].all()
    assert np.all(e2["fraction"] <= 1.0 + 1e-6) and np.all(e2["fraction"] > 0.9)  # the MILP is an upper bound
    ccg = pd.read_parquet(out / "e4_ccg_bounds.parquet")
    last = ccg.groupby("customer").last()
    np.testing.assert_allclose(last["lower"], last["upper"], rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(last["lower"], last["rsr_value"], rtol=1e-4, atol=1e-3)
    e5 = pd.read_parquet(out / "e5_scale.parquet")
    assert set(e5["method"]) == {"gradient IMP", "HiGHS MILP"} and np.all(e5["markets_per_s"] > 0)
    e7 = pd.read_parquet(out / "e7_competition.parquet")
    assert len(e7) == 3 * 2 and set(e7["game"]) == {"exact", "relaxed (t = 0.3 x scale)"}
    mono = e7[(e7["structure"] == "monopoly") & (e7["game"] == "exact")].iloc[0]
    assert mono["equilibrium"] and mono["sellers"] == 1  # one seller: its own best response
    np.testing.assert_allclose(e7["welfare"], e7["profit"] + e7["surplus"], rtol=1e-6)
    assert "## E7 Competition" in report
    e6 = pd.read_parquet(out / "e6_sensitivities.parquet")
    assert len(e6) == 2 * 2 * 4  # the 2 seeds at the base point x 2 models x 4 attributes
    # Serving cost reaches the customers only through the prices, and no pin depends on it.
    np.testing.assert_array_equal(e6[e6["attribute"] == "serving_cost"]["customers"], 0.0)
    # Closed form: d profit / d serving cost of model j is minus its hours, so the seller's +1% effects
    # sum to -(hours-weighted serving cost) / 100 <= 0, and are 0 exactly for a model nobody rents.
    cost = e6[e6["attribute"] == "serving_cost"]
    assert np.all(cost["seller"] <= 0) and np.all(cost[~cost["sold"]]["seller"] == 0)

    # The same run again (as after an interruption) resumes: the same tables, E2 and E5 not re-run.
    (out / "e5_scale.parquet").unlink()  # as if killed during E5
    result = invoke("run", "--config", cfg, "--no-progress")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_parquet(out / "e2_seller.parquet"), e2)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "markets_gamma_deviation.parquet"), markets)
    assert "E2 resumed" in (out / "report.md").read_text() and (out / "e5_scale.parquet").exists()
    # Other settings, or a folder that is not a run's, are refused before any work, by name.
    cfg.write_text(TINY_RUN.format(out=out).replace("seeds = 2", "seeds = 3"))
    result = invoke("run", "--config", cfg, "--no-progress")
    assert result.exit_code == 1 and "run.seeds: 2 -> 3" in result.output, result.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    result = invoke("run", "--config", cfg, "--out", tmp_path / "other", "--no-progress")
    assert result.exit_code == 1 and "is not empty (it holds 'notes.txt'" in result.output, result.output


def test_solve_prints_and_compares_with_the_milp(tmp_path):
    cfg = tmp_path / "solve.toml"
    cfg.write_text(
        "[market]\nn_models = 2\nn_customers = 12\nbudget_share = 0.0\n[solver.ascent]\nsteps = 20\n"
    )
    result = invoke("solve", cfg, "--compare", "--json", tmp_path / "out.json")
    assert result.exit_code == 0, result.output
    assert "gradient IMP" in result.output and "HiGHS MILP (exact)" in result.output
    results = json.loads((tmp_path / "out.json").read_text())["results"]
    exact = results["HiGHS MILP (exact)"]["seller_profit"]
    for name, r in results.items():
        assert r["seller_profit"] <= exact * (1 + 1e-6), name
        assert abs(sum(r["shares"]) - 1.0) < 1e-9
    assert results["gradient IMP"]["seller_profit"] >= 0.99 * exact


def test_sweep_writes_parquet(tmp_path):
    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        f'[sweep]\nn_models = 1\nn_customers = 6\ngamma = [0, 1]\nseeds = 2\nout = "{tmp_path / "s"}"\n'
        "[solver]\nascent.steps = 10\nascent.restarts = 2\npolish.enabled = false\n"
    )
    result = invoke("sweep", cfg, "--no-progress")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(tmp_path / "s" / "results.parquet")
    assert len(table) == 4 and sorted(table["gamma"]) == [0, 0, 1, 1]


def test_token_cap_writes_the_comparison(tmp_path):
    result = invoke("token-cap", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "token_cap.csv").set_index("mechanism")
    assert abs(table["revenue"].iloc[0] - 0.342) < 0.005 * 0.342  # the spec's check instance
    np.testing.assert_allclose(
        table.loc["posted price, constant delay", "revenue"], np.exp(-1.5) / 1.5, rtol=1e-5
    )
    assert (tmp_path / "token_cap.png").read_bytes()[:4] == b"\x89PNG"
    assert invoke("token-cap", "--lo", 2, "--hi", 1).exit_code != 0


def test_token_auction_writes_texts_payments_and_monotonicity(tmp_path):
    result = invoke("token-auction", "--out", tmp_path, "--draws", 20000)
    assert result.exit_code == 0, result.output
    texts = pd.read_csv(tmp_path / "token_auction_texts.csv")
    assert list(texts["coffee_bid"]) == [0.1, 0.5, 1.0, 2.0, 10.0]
    assert texts["coffee_share"].iloc[-1] > texts["coffee_share"].iloc[0]  # a higher bid wins more text
    pay = pd.read_parquet(tmp_path / "token_auction_payments.parquet")
    np.testing.assert_allclose(pay["myerson"], pay["closed_form"], rtol=1e-8)
    assert np.all(np.abs(pay["monte_carlo"] - pay["closed_form"]) <= 5 * pay["monte_carlo_se"])
    assert np.all(pay["largest_payment"] <= pay["bid"] * (1 + 1e-12))
    mono = pd.read_parquet(tmp_path / "token_auction_monotonicity.parquet")
    np.testing.assert_allclose(mono["linear"], 0.3, atol=1e-12)  # the counterexample's middle token
    assert mono["log_linear"].max() > 0.37  # rises away from p_i = 0.3 and comes back
    assert (tmp_path / "token_auction.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("command", ["run", "solve", "sweep"])
def test_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "CONFIG keys" in result.output and "[solver]" in result.output


BAD = [
    # (command, TOML text, words the message must contain)
    ("solve", "[market]\nn_customerz = 5\n", ["market.n_customerz", "5", "valid keys"]),
    ("solve", '[market]\nn_customers = "ten"\n', ["market.n_customers", "'ten'", "expected int"]),
    ("solve", "[market]\nn_customers = -3\n", ["market.n_customers", "-3"]),
    ("solve", "[market]\ngamma = 4\n", ["market.gamma", "4", "[0, 3]"]),
    ("solve", "[solver.ascent]\nsteps = 1.5\n", ["solver.ascent.steps", "1.5"]),
    ("solve", "[markets]\nseed = 1\n", ["[markets]"]),
    ("solve", "[market\nseed = 1\n", ["not valid TOML"]),
    ("sweep", "[sweep]\ngamma = [1, 5]\n", ["sweep.gamma", "5", "[0, 3]"]),
    ("sweep", "[sweep]\ndeviation = [-0.2]\n", ["sweep.deviation", "-0.2"]),
    ("sweep", "[sweep]\nseeds = true\n", ["sweep.seeds", "True", "expected int"]),
    ("run", "[run]\ne2_sizes = ['4by40']\n", ["run.e2_sizes", "'4by40'"]),
    ("run", "[run]\nscale = 0\n", ["run.scale", "0"]),
    (
        "run",
        "[solver.ascent]\ninitial_temperature = 0.001\nfinal_temperature = 0.1\n",
        ["solver.ascent.final_temperature", "0.1"],
    ),
]


@pytest.mark.parametrize("command, text, words", BAD)
def test_bad_config_exits_naming_key_and_value(tmp_path, command, text, words):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    args = ["run", "--config", cfg] if command == "run" else [command, cfg]
    result = invoke(*args)
    assert result.exit_code != 0
    for w in words:
        assert w in result.output, (w, result.output)
    assert not (tmp_path / "lmaas-out").exists()


@pytest.mark.parametrize("command", ["solve", "sweep"])
def test_unreadable_config(tmp_path, command):
    result = invoke(command, tmp_path / "missing.toml")
    assert result.exit_code != 0 and "missing.toml" in result.output


def test_binary_config_and_unwritable_outputs_are_named_before_any_work(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)))
    result = invoke("solve", binary)
    assert result.exit_code == 1 and "is not text" in result.output, result.output
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = tmp_path / "ok.toml"
    cfg.write_text("[market]\nn_customers = 4\n")
    # A folder cannot be made inside a file: refused before the solve or the sweep starts.
    result = invoke("solve", cfg, "--json", blocker / "sub" / "out.json")
    assert result.exit_code == 1 and "--json" in result.output and "cannot be written" in result.output
    cfg.write_text("[sweep]\nn_customers = 4\n")
    result = invoke("sweep", cfg, "--out", blocker / "sweep")
    assert result.exit_code == 1 and "--out" in result.output and "cannot be written" in result.output
    result = invoke("run", "--out", blocker, "--no-progress")
    assert result.exit_code != 0 and "is a file" in result.output, result.output


def test_a_full_disk_mid_sweep_is_named_and_the_resume_finishes(tmp_path, monkeypatch):
    import errno

    from lmaas_jax.product import _sweep

    cfg = tmp_path / "sweep.toml"
    cfg.write_text(
        "[sweep]\nn_models = 1\nn_customers = 6\ngamma = [0, 1]\nseeds = 2\nchunk_size = 2\n"
        f'out = "{tmp_path / "s"}"\n'
        "[solver]\nascent.steps = 10\nascent.restarts = 2\npolish.enabled = false\n"
    )
    real, calls = _sweep.write_atomic, []

    def fills_up(table, path):  # the second chunk finds the disk full
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(table, path)

    monkeypatch.setattr(_sweep, "write_atomic", fills_up)
    result = invoke("sweep", cfg, "--no-progress")
    assert result.exit_code == 1 and "No space left on device" in result.output
    assert "Traceback" not in result.output and "run the same command again" in result.output
    monkeypatch.setattr(_sweep, "write_atomic", real)
    result = invoke("sweep", cfg, "--no-progress")
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(tmp_path / "s" / "results.parquet")) == 4


def test_the_command_keeps_what_it_compiles(tmp_path):
    # In a fresh interpreter (the compilation cache's folder is fixed at a process's first compile):
    # the command's cache set-up makes JAX write every compiled program to the folder, so the same
    # command run again reads them back.
    code = (
        "import sys, jax\n"
        "from lmaas_jax.product._cli import use_compilation_cache\n"
        "use_compilation_cache(sys.argv[1])\n"
        "jax.block_until_ready(jax.jit(lambda x: x * 2.0 + 1.0)(3.0))\n"
    )
    folder = tmp_path / "cache"
    subprocess.run([sys.executable, "-c", code, str(folder)], check=True, capture_output=True)
    assert any(folder.glob("*-cache")), "nothing was written to the compilation cache"
    # Bounded, so JAX locks the folder around each entry: processes sharing it never read one
    # half-written (unbounded, JAX writes in place without the lock, and a reader can crash).
    assert (folder / ".lockfile").exists()
    # A folder an unbounded cache wrote (an earlier version of the command) stays writable: its
    # entries get the last-use files a bounded cache needs (without them JAX writes nothing new).
    old = tmp_path / "old"
    unbounded = code.replace(
        "use_compilation_cache(sys.argv[1])\n",
        "jax.config.update('jax_compilation_cache_dir', sys.argv[1])\n"
        "jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)\n",
    )
    subprocess.run([sys.executable, "-c", unbounded, str(old)], check=True, capture_output=True)
    assert any(old.glob("*-cache")) and not any(old.glob("*-atime"))
    other = code.replace("x * 2.0 + 1.0", "x * 3.0 - 1.0")
    done = subprocess.run([sys.executable, "-c", other, str(old)], check=True, capture_output=True, text=True)
    assert "Error writing persistent compilation cache" not in done.stderr, done.stderr
    entries = {p.name.removesuffix("-cache") for p in old.glob("*-cache")}
    assert entries == {p.name.removesuffix("-atime") for p in old.glob("*-atime")}
    help_text = invoke("--help").output
    assert "--cache-dir" in help_text and "--no-cache" in help_text


@pytest.mark.parametrize(
    "name, sections",
    [
        ("solve-default.toml", ("market", "solver")),
        ("solve-budget-free.toml", ("market", "solver")),
        ("sweep-gamma-deviation.toml", ("sweep", "solver")),
        ("run-gpu.toml", ("run", "solver")),
    ],
)
def test_the_example_configurations_load(name, sections):
    from lmaas_jax.product._config import gradient_imp, load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "examples" / name, sections)
    settings = gradient_imp(cfg["solver"])(4, 60)  # the size rule, with the file's keys in place
    for key, value in cfg["solver"].items():
        if "." in key and key != "polish.enabled" and value is not None:
            stage, field = key.split(".")
            assert getattr(getattr(settings, stage), field) == value, key


def test_the_solver_schema_is_the_stage_settings():
    # One source: every setting of every stage Module is a [solver] key with its range and help, and
    # a value the Module would refuse is refused by the configuration, naming the key.
    import dataclasses

    import lmaas_jax as lj
    from lmaas_jax.product._config import SCHEMA, ConfigError, check_config

    for stage, cls in (
        ("ascent", lj.Ascent),
        ("polish", lj.Polish),
        ("moves", lj.Moves),
        ("lookahead", lj.LookAhead),
    ):
        for f in dataclasses.fields(cls):
            if "help" not in f.metadata:
                continue
            key = SCHEMA["solver"][f"{stage}.{f.name}"]
            assert (key.kind, key.lo, key.hi) == (type(f.default), f.metadata["lo"], f.metadata["hi"])
            assert f.metadata["help"] in key.help
    with pytest.raises(ConfigError, match=r"solver.moves.starts = 0: must lie in \[1, inf\]"):
        check_config({"solver": {"moves": {"starts": 0}}}, ("solver",))
    with pytest.raises(ConfigError, match="unknown key solver.moves.start "):
        check_config({"solver": {"moves.start": 3}}, ("solver",))


def test_the_default_cache_folder_is_one_per_pair_of_versions(monkeypatch, tmp_path):
    import jax

    import lmaas_jax as lj
    from lmaas_jax.product._cli import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = default_cache_dir()
    assert folder.parent == tmp_path / "lmaas_jax"
    assert folder.name == f"jax-{jax.__version__}-{lj.__version__}"
