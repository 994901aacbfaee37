"""`lmaas-jax token-cap`: the optimal cap menu's figure and the revenue comparison of the spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ... import token_cap as tc
from .._output import markdown_table, plt, save_figure, write_table


def token_cap_report(out: str | Path, lo: float = 0.5, hi: float = 2.0, rate: float = 1.0) -> pd.DataFrame:
    """Solve the check instance (r ~ U[lo, hi], tau ~ Exp(rate)) and its benchmarks; write a figure.

    Rows: the optimal cap menu with the aligned (exponential) model; the best single posted price
    when every question resolves after exactly 1 / rate (constant delay); optimised caps for a
    Brownian-learning model with the same mean resolution time (drift rate, level 1, sigma 1).
    Writes `token_cap.csv`, `token_cap.parquet` and `token_cap.png` (caps and marginal price per type)
    to `out`, and returns the table.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    types = tc.Uniform(lo, hi)
    laws = {"exp": tc.Exponential(rate), "diffusion": tc.Diffusion(drift=rate, level=1.0)}
    menu = tc.solve(types, laws["exp"])
    diffusion = tc.solve(types, laws["diffusion"])
    posted = tc.posted_price_constant_delay(types, 1.0 / rate).revenue
    rows = []
    for name, m, law in (
        ("token caps, aligned model (Exp)", menu, laws["exp"]),
        ("token caps, Brownian learning", diffusion, laws["diffusion"]),
    ):
        check = tc.audit(m, types, law)  # values integrated independently of the solver
        ic, ir = check.ic_violation, check.ir_violation
        rows.append(
            dict(
                mechanism=name,
                revenue=float(m.revenue),
                virtual_surplus=float(m.virtual_surplus),
                welfare=float(m.welfare),
                ic_violation=float(ic),
                ir_violation=float(ir),
            )
        )
    rows.append(dict(mechanism="posted price, constant delay", revenue=float(posted)))
    table = pd.DataFrame(rows)
    table.attrs.update(lo=lo, hi=hi, rate=rate)  # the instance, for [`token_cap_section`][]
    write_table(table, out, "token_cap")

    r, caps, mp = (np.asarray(x) for x in (menu.types, menu.caps, menu.marginal_price))
    shown = caps < 0.5 * float(menu.times[-1])
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(r[shown], caps[shown], label="optimal cap T(r)")
    a.plot(r[shown], 1.0 / (r[shown] - lo), "k:", label="g/G = 1/(r - lo)")
    a.set_xlabel("impatience r (discount rate per unit of conversation time)")
    a.set_ylabel("cap T (conversation time; tokens = chi T)")
    a.set_title("caps per type (patient users buy larger caps)")
    a.legend(fontsize=8)
    b.plot(caps[shown], mp[shown])
    b.set_xlabel("cap T (conversation time)")
    b.set_ylabel("marginal price dP/dT = e^{-rT} f(T)")
    b.set_yscale("log")
    b.set_title("price schedule: volume discounts")
    fig.suptitle(
        f"Token caps, r ~ U[{lo}, {hi}], tau ~ Exp({rate}): revenue {menu.revenue:.3f} "
        f"vs posted price {posted:.3f}"
    )
    save_figure(fig, out / "token_cap.png")
    return table


def token_cap_section(table: pd.DataFrame) -> str:
    """The report's token-cap section (markdown) from [`token_cap_report`][]'s table."""
    lo, hi, rate = (table.attrs[k] for k in ("lo", "hi", "rate"))
    rev = dict(zip(table["mechanism"], table["revenue"], strict=True))
    caps = rev["token caps, aligned model (Exp)"]
    posted = rev["posted price, constant delay"]
    lines = [
        "## Token caps: the revenue-optimal screening menu",
        "",
        f"Users' impatience r ~ U[{lo}, {hi}], questions resolving at tau ~ Exp({rate}) with the aligned "
        "model (`docs/models/token-caps.md`). IC and IR violations are audited with values integrated "
        "independently of the solver.",
        "",
        f"- A menu of token caps earns {caps:.3f} against {posted:.3f} for the best single posted price "
        f"with a constant-delay model ({caps / posted:.2f}x), and "
        f"{rev['token caps, Brownian learning']:.3f} with a Brownian-learning model of the same mean "
        "resolution time (less dispersed, hence worth less to impatient users).",
        "",
        "![token caps](token_cap.png)",
        "",
        markdown_table(table, digits=4),
        "",
    ]
    return "\n".join(lines)
