"""TOML configurations for `lmaas-jax solve`, `sweep` and `run`: one schema, checked before any work.

Every key has a type, a range and a default. [`lmaas_jax.load_config`][] reads a file and returns
the full configuration (defaults filled in); anything wrong (an unreadable file, bad TOML, an unknown
section or key, a wrong type, a value out of range) raises [`lmaas_jax.ConfigError`][] naming the
key and the value, before a single market is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the value."""


@dataclasses.dataclass(frozen=True)
class Key:
    """One configuration key: its type, allowed range, default and meaning."""

    kind: type
    default: Any
    help: str
    lo: float | int | None = None
    hi: float | int | None = None
    many: bool = False  # a list of values (a single value is a one-element list)
    choices: tuple = ()
    optional: bool = False  # may be absent (None)

    def check(self, name: str, value: Any) -> Any:
        if value is None and self.optional:
            return None
        if self.many:
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ConfigError(f"{name} = []: give at least one value.")
            return tuple(self._one(name, v) for v in values)
        if isinstance(value, list):
            raise ConfigError(f"{name} = {value!r}: expected a single {self.kind.__name__}, not a list.")
        return self._one(name, value)

    def _one(self, name: str, value: Any) -> Any:
        kind = self.kind
        ok = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise ConfigError(f"{name} = {value!r}: expected {kind.__name__}, got {type(value).__name__}.")
        if kind is float and not math.isfinite(value):
            raise ConfigError(f"{name} = {value!r}: must be finite.")
        if self.lo is not None and value < self.lo or self.hi is not None and value > self.hi:
            lo = "-inf" if self.lo is None else self.lo
            hi = "inf" if self.hi is None else self.hi
            raise ConfigError(f"{name} = {value!r}: must lie in [{lo}, {hi}].")
        if self.choices and value not in self.choices:
            raise ConfigError(f"{name} = {value!r}: must be one of {', '.join(map(str, self.choices))}.")
        return value


def solver_schema() -> dict[str, Key]:
    """The `[solver]` section, built from IMP's stage settings Modules: a key `STAGE.FIELD` per setting
    (`[solver.polish] sweeps = 3`, or `polish.sweeps = 3` under `[solver]`), with the setting's
    type, range and help. Every stage key is optional: unset, it takes the value of
    `GradientIMP.for_size` for the market priced (the class default, shown, on small markets)."""
    from ..lmaas.pricing._ascent import Ascent
    from ..lmaas.pricing._lookahead import LookAhead
    from ..lmaas.pricing._moves import Moves
    from ..lmaas.pricing._polish import Polish

    keys = {
        "seed": Key(int, 1, "IMP's PRNG seed", lo=0, hi=2**32 - 1),
        "ascent.learning_rate": Key(
            float,
            None,
            "Adam's learning rate (prices scaled to [0, 1]) [default 0.05]",
            lo=1e-9,
            optional=True,
        ),
        "polish.enabled": Key(bool, True, "run the polish and the stages after it (false: gradient only)"),
    }
    for stage, cls in (("ascent", Ascent), ("polish", Polish), ("moves", Moves), ("lookahead", LookAhead)):
        for f in dataclasses.fields(cls):
            meta = f.metadata
            if "help" in meta:
                help = f"{meta['help']} [default {f.default!r}; by market size]"
                kind, lo, hi, choices = type(f.default), meta["lo"], meta["hi"], meta["choices"]
                keys[f"{stage}.{f.name}"] = Key(kind, None, help, lo, hi, choices=choices, optional=True)
    return keys


_MARKET = {
    "n_models": Key(int, 4, "models offered", lo=1, hi=16),
    "n_customers": Key(int, 100, "customers", lo=1),
    "gamma": Key(int, 2, "uncertainty budget Gamma", lo=0, hi=3),
    "deviation": Key(float, 0.2, "adverse deviation, fraction of nominal", lo=0.0, hi=1.0),
    "capability_gap": Key(float, 0.4, "accuracy gap between largest and smallest model", lo=0.0, hi=0.9),
    "budget_share": Key(float, 0.5, "probability that a customer has a finite budget", lo=0.0, hi=1.0),
    "seed": Key(int, 0, "market seed", lo=0, hi=2**32 - 1),
    "dtype": Key(str, "float32", "float dtype", choices=("float32", "float64")),
}

SCHEMA: dict[str, dict[str, Key]] = {
    "market": _MARKET,
    "solver": solver_schema(),
    "sweep": {
        **{
            k: dataclasses.replace(_MARKET[k], many=True, default=(_MARKET[k].default,))
            for k in ("n_models", "n_customers", "gamma", "deviation", "capability_gap", "budget_share")
        },
        "seeds": Key(int, 4, "market seeds per grid point (0, 1, ...)", lo=1, hi=2**32),
        "chunk_size": Key(int, 64, "markets per batch, written as one file", lo=1),
        "dtype": _MARKET["dtype"],
        "out": Key(str, "lmaas-out/sweep", "output folder (chunks, then results.parquet)"),
        "sensitivities": Key(
            bool, False, "also record d profit, d customers' worst case per model attribute"
        ),
    },
    "run": {
        "out": Key(str, "lmaas-out", "output folder for report.md, figures and tables"),
        "scale": Key(int, 1, "multiplies seeds, market counts and E5's batches (raise on a GPU)", lo=1),
        "n_models": Key(int, 4, "models in E1, E3 and E4 markets", lo=1, hi=16),
        "n_customers": Key(int, 60, "customers in E1, E3 and E4 markets", lo=1),
        "seeds": Key(int, 4, "markets per grid point in E1 and E3", lo=1),
        "gammas": Key(int, (0, 1, 2, 3), "E1/E3 Gamma values", lo=0, hi=3, many=True),
        "deviations": Key(float, (0.05, 0.1, 0.2, 0.3, 0.4), "E1/E3 deviations", lo=0.0, hi=1.0, many=True),
        "capability_gaps": Key(float, (0.1, 0.25, 0.4, 0.55, 0.7), "E3 gaps", lo=0.0, hi=0.9, many=True),
        "e2_sizes": Key(str, ("2x20", "3x30", "4x40"), "E2 market sizes MxN (budget-free)", many=True),
        "e2_markets": Key(int, 4, "E2 markets per size", lo=1),
        "e4_customers": Key(int, 4, "E4 customers traced by C&CG", lo=1),
        "e5_size": Key(str, "4x40", "E5 market size MxN (budget-free, so HiGHS applies)"),
        "e5_batches": Key(int, (1, 4, 16, 64), "E5 batch sizes", lo=1, many=True),
        "e5_milp_markets": Key(int, 2, "E5 markets timed with HiGHS", lo=1),
        "e7_markets": Key(int, 3, "E7 markets (monopoly, duopoly, one seller per model on each)", lo=1),
        "ttc_sweep_points": Key(int, 100, "beta values in the test-time compute inefficiency curve", lo=2),
        "dtype": _MARKET["dtype"],
    },
}


def defaults(*sections: str) -> dict[str, dict[str, Any]]:
    """The default configuration of the given sections."""
    return {s: {k: key.default for k, key in SCHEMA[s].items()} for s in sections}


def check_config(raw: Mapping[str, Any], sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Validate a configuration mapping against the schema of `sections`, filling in defaults."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"a configuration must be a table of sections; got {type(raw).__name__}.")
    unknown = [s for s in raw if s not in sections]
    if unknown:
        raise ConfigError(f"unknown section [{unknown[0]}]; this command reads [{'], ['.join(sections)}].")
    out = defaults(*sections)
    for section, values in raw.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"{section} = {values!r}: expected a [{section}] table.")
        for key, value in _dotted(values).items():
            if key not in SCHEMA[section]:
                valid = ", ".join(SCHEMA[section])
                raise ConfigError(f"unknown key {section}.{key} = {value!r}; valid keys: {valid}.")
            out[section][key] = SCHEMA[section][key].check(f"{section}.{key}", value)
    for section in sections:
        _cross_check(section, out[section])
    return out


def _dotted(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested tables as dotted keys: `{"polish": {"sweeps": 3}}` -> `{"polish.sweeps": 3}`."""
    out = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out |= _dotted(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cross_check(section: str, values: dict[str, Any]) -> None:
    if section == "solver":
        from ..lmaas.pricing._ascent import Ascent

        t0, t1 = values["ascent.initial_temperature"], values["ascent.final_temperature"]
        t0 = Ascent().initial_temperature if t0 is None else t0
        t1 = Ascent().final_temperature if t1 is None else t1
        if t1 > t0:
            raise ConfigError(
                f"solver.ascent.final_temperature = {t1!r}: must not exceed "
                f"solver.ascent.initial_temperature = {t0!r}."
            )
    if section == "run":
        values["e2_sizes"] = tuple(parse_size("run.e2_sizes", s) for s in values["e2_sizes"])
        values["e5_size"] = parse_size("run.e5_size", values["e5_size"])


def parse_size(name: str, text: str) -> tuple[int, int]:
    """ "MxN" -> (M, N), both >= 1."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise ConfigError(f"{name} = {text!r}: expected 'MxN' with M, N >= 1 integers, e.g. '4x40'.")
    return int(parts[0]), int(parts[1])


def load_config(path: str | Path, sections: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Read a TOML file and validate it (see [`lmaas_jax.ConfigError`][]).

    **Arguments:**

    - `path`: the TOML file.
    - `sections`: the sections the caller reads, e.g. `("market", "solver")` for `solve`.

    **Returns:**

    `{section: {key: value}}` with every key of every section, defaults filled in.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config file {str(path)!r}: {e.strerror or e}.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(path)!r} is not text (TOML is UTF-8 text).") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}.") from None
    return check_config(raw, sections)


def check_writable(name: str, folder: str | Path) -> Path:
    """Create `folder` if needed and make sure a file can be written in it, before any long work."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{name} = {str(folder)!r} is a file, not a folder.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"{name} = {str(folder)!r} cannot be written: {err.strerror or err}.") from None
    return folder


def _toml(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def describe(sections: tuple[str, ...]) -> str:
    """Every key of `sections` with its default and meaning, as TOML comments (for `--help`)."""
    lines = []
    for section in sections:
        lines.append(f"[{section}]")
        for name, key in SCHEMA[section].items():
            lines.append(f"  {name} = {_toml(key.default)}  # {key.help}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class SolverChoice:
    """IMP's settings from a validated `[solver]` section: for a market of M models and N customers,
    `GradientIMP.for_size(M, N)` with the section's keys that are set in place of its values.
    Hashable, so equal choices share compiled programs."""

    overrides: tuple[tuple[str, Any], ...]
    polish: bool = True

    def __call__(self, n_models: int, n_customers: int):
        import optax

        from ..lmaas.pricing._imp import GradientIMP

        solver = GradientIMP.for_size(n_models, n_customers)
        stages = {}
        for name, value in self.overrides:
            stage, field = name.split(".")
            if name == "ascent.learning_rate":
                stage, field, value = "ascent", "optimiser_kwargs", {"learning_rate": value}
                stages.setdefault(stage, {})["optimiser"] = optax.adam
            stages.setdefault(stage, {})[field] = value
        for stage, fields in stages.items():
            solver = dataclasses.replace(
                solver, **{stage: dataclasses.replace(getattr(solver, stage), **fields)}
            )
        return solver if self.polish else dataclasses.replace(solver, polish=None)


def gradient_imp(solver: Mapping[str, Any]) -> SolverChoice:
    """The [`lmaas_jax.GradientIMP`][] settings of a validated `[solver]` section, per market size."""
    overrides = tuple(
        (k, v) for k, v in solver.items() if "." in k and k != "polish.enabled" and v is not None
    )
    return SolverChoice(overrides, polish=solver["polish.enabled"])
