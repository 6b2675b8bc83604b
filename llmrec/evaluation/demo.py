"""``llmrec demo``: the whole pipeline on synthetic data, offline, in about a minute."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.synthetic import make_synthetic
from . import protocols as P

__all__ = ["run_demo", "DemoResult", "DEMO_ROUTERS", "EXAMPLE_PROMPTS"]


class DemoResult(dict):
    """``{"table": DataFrame, "top3": {prompt: [[llm, score], ...]}, "files": {...}}``."""

    def to_string(self) -> str:  # what ``llmrec demo`` echoes after the printed report
        return "" if self.get("printed") else _format_table(self["table"])

#: the routers the demo compares (those not installed are skipped with a note)
DEMO_ROUTERS = ("best-single", "knn", "als", "twotower")
EXAMPLE_PROMPTS = (
    "Solve the quadratic equation and find the root of the polynomial",
    "Which court ruling on contract liability applies to the defendant?",
    "Write a python function with a loop over the array and return the list",
)


def _say(quiet: bool, *msg):
    if not quiet:
        print(*msg, flush=True)


def run_demo(out_dir="demo_out", seed: int = 0, quiet: bool = False, *, out=None,
             n_prompts: int = 1000, n_llms: int = 10, show_progress: bool | None = None
             ) -> "DemoResult":
    """Fit routers on synthetic records, compare them, show top-3 LLMs, plot scaling.

    Steps: ``make_synthetic(n_prompts, n_llms, seed=seed)``; a cold-prompt split
    (80/10/10); best-single, knn, ALS and two-tower (whichever are installed) plus
    the oracle and random bounds; a table of mu, Vb and Hit@3 with 95% bootstrap CIs;
    the top-3 LLMs of three example prompts by the best learned router; the scaling
    curve (mu vs pool size) as ``scaling.png``; everything in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (``out`` is an alias, as ``llmrec demo --out``).
    seed : int
    quiet : bool
        Print nothing.

    Returns
    -------
    DemoResult
        ``table`` (one row per router: mu, Vb, Hit@3 and their CI bounds), ``top3``,
        ``files`` (paths written), ``seconds``.
    """
    from ..encoders import TfidfEncoder
    from ..routers import available_routers, make_router
    t0 = time.perf_counter()
    out_dir = Path(out if out is not None else out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = (not quiet) if show_progress is None else bool(show_progress)
    known = set(available_routers())
    routers = []
    for r in DEMO_ROUTERS:
        if r in known:
            routers.append(r)
        else:
            _say(quiet, f"note: router {r!r} is not available in this llmrec; skipped")
    rec = make_synthetic(n_prompts, n_llms, n_topics=6, seed=seed)
    _say(quiet, f"synthetic records: {rec.n_prompts} prompts x {rec.n_llms} LLMs "
                f"(seed {seed})")
    # a light TF-IDF (2^14 hashed features) keeps the demo fast on a small CPU
    enc = TfidfEncoder(dim=64, n_features=2 ** 14, random_state=seed)
    res = P.cold_prompt_protocol(rec, routers + ["oracle", "random"], encoder=enc, seed=seed,
                                 n_boot=500, show_progress=progress)
    t = res.tidy.set_index("router")
    cols = ["mu", "mu_low", "mu_high", "vb", "vb_low", "vb_high", "hit@3", "hit@3_low",
            "hit@3_high"]
    table = t[[c for c in cols if c in t]].copy()
    _say(quiet, f"\nCold-prompt test set: {res.details['n_test']} unseen prompts "
                "(95% bootstrap CIs over prompts)")
    _say(quiet, _format_table(table))

    learned = [r for r in routers if r != "best-single" and r in t.index
               and np.isfinite(t.loc[r, "mu"])]
    top3 = {}
    if learned:
        best = max(learned, key=lambda r: t.loc[r, "mu"])
        router = make_router(best)
        if "random_state" in router.get_params():
            router.set_params(random_state=seed)
        router.fit(rec, encoder=enc, show_progress=False)
        names, scores = router.recommend(list(EXAMPLE_PROMPTS), k=3)
        _say(quiet, f"\nTop-3 LLMs by {best} (fitted on all {rec.n_prompts} prompts):")
        for p, ns, ss in zip(EXAMPLE_PROMPTS, names, scores):
            top3[p] = [[str(n), float(s)] for n, s in zip(ns, ss)]
            _say(quiet, f"  {p[:60]}\n    " + ", ".join(f"{n} ({s:.3f})"
                                                        for n, s in zip(ns, ss)))
    sc_routers = list(routers)  # every compared router (oracle and random are added)
    sizes = sorted({s for s in (2, 3, 5, 7) if s < rec.n_llms} | {rec.n_llms})
    sc = P.scaling_curve(rec, sc_routers, sizes=sizes, n_repeats=2, encoder=enc, seed=seed,
                         show_progress=progress)
    from .plots import plot_scaling
    png = plot_scaling(sc.tidy, out_dir / "scaling.png", "mu")
    _say(quiet, f"\nScaling curve (mu vs number of candidate LLMs) written to {png}")
    table.to_csv(out_dir / "comparison.csv")
    (out_dir / "top3.json").write_text(json.dumps(top3, indent=2) + "\n")
    secs = time.perf_counter() - t0
    _say(quiet, f"done in {secs:.1f} s; outputs in {out_dir}/")
    files = {"scaling": str(png), "comparison": str(out_dir / "comparison.csv"),
             "top3": str(out_dir / "top3.json")}
    return DemoResult(table=table, top3=top3, files=files, seconds=secs, printed=not quiet)


def _format_table(table: pd.DataFrame) -> str:
    lines = [f"{'router':<12} {'mu [95% CI]':>24} {'Vb [95% CI]':>24} {'Hit@3 [95% CI]':>24}"]
    for r, row in table.iterrows():
        cells = []
        for m in ("mu", "vb", "hit@3"):
            v, lo, hi = row.get(m), row.get(f"{m}_low"), row.get(f"{m}_high")
            cells.append(f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) else f"{v:.3f}")
        lines.append(f"{r:<12} " + " ".join(f"{c:>24}" for c in cells))
    return "\n".join(lines)
