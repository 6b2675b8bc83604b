"""Issue 12's target table, built from the saved bench_quality tables (no fitting).

Reads ``benchmarks/quality/<data>[-<encoder>].json`` (written by bench_quality.py) and
prints one Markdown row per target of issue 12 with `auto`'s figure per feature set
(mean ± std over the table's seeds) and whether the target is met. The targets are
stated for "MiniLM or the new union features", so a target counts as met when one of
the MiniLM, union, union-ft or `auto (cv)` union cells meets it; the TF-IDF column is
shown for reference. "Never below" targets are judged on every seed, not on the mean.

``--write`` replaces the table between ``<!-- targets:issue12 -->`` markers in
``benchmarks/RESULTS.md``; bench_quality.py does this after each table it writes, and
tests/test_bench_quality_update.py checks that RESULTS.md holds what this script prints.

Usage::

    python benchmarks/targets_table.py [--write]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import cf_gap_table  # noqa: E402  (benchmarks/ is this script's folder)
from _results import replace_section  # noqa: E402

#: (column header, table file suffix, router row)
COLUMNS = (("TF-IDF", "", "auto"), ("MiniLM", "-minilm", "auto"), ("union", "-union", "auto"),
           ("union-ft", "-union-ft", "auto"), ("`auto (cv)`, union", "-union", "auto (cv)"))
START, END = "<!-- targets:issue12 -->", "<!-- /targets:issue12 -->"


def _table(data: str, suffix: str) -> dict | None:
    path = HERE / "quality" / f"{data}{suffix}.json"
    return json.loads(path.read_text())["table"] if path.is_file() else None


def _fmt(mean, std, digits=4):
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return None
    s = f"{mean:.{digits}f}"
    return s if std is None or std == 0 else f"{s} ± {std:.{digits}f}"


def _cells(data: str, key: str, digits: int = 4):
    """Per column: (text, row of the router) or None where the table or value is absent."""
    out = []
    for _, suffix, router in COLUMNS:
        t = _table(data, suffix)
        row = t.get(router) if t else None
        m = row.get(f"{key}_mean") if row else None
        out.append((_fmt(m, row.get(f"{key}_std"), digits), row) if m is not None else None)
    return out


def _row(label: str, cells, ok, note: str = "") -> str:
    txt = [c[0] if c else "" for c in cells]
    judged = [ok(c[1]) for c in cells[1:] if c]  # TF-IDF is shown, not judged
    met = "yes" if any(judged) else "no"
    return f"| {label} | " + " | ".join(txt) + f" | {met}{note} |"


def cf_summary(tuned: bool = False) -> tuple[int, int, list[str]]:
    return cf_gap_table.count(cf_gap_table.CF_TUNED if tuned else cf_gap_table.CF)


def markdown() -> str:
    head = "| target | " + " | ".join(c[0] for c in COLUMNS) + " | met? |"
    rows = [head, "|---" * (len(COLUMNS) + 2) + "|"]
    mp = _table("mmlu-pro", "-union") or _table("mmlu-pro", "") or {}
    bpg = mp.get("best-per-group", {}).get("vb_mean", float("nan"))
    rows.append(_row(f"MMLU-Pro `auto` Vb ≥ 1.03, p < 0.05, above best-per-group ({bpg:.4f})",
                     _cells("mmlu-pro", "vb"),
                     lambda r: r["vb_mean"] >= 1.03 and r.get("p_vs_best_single", 1) < 0.05
                     and r["vb_mean"] > bpg))
    rows.append(_row("RouterDC `auto` Vb ≥ 1.08", _cells("routerdc", "vb"),
                     lambda r: r["vb_mean"] >= 1.08))
    rows.append(_row("LLMRouter `auto` Vb ≥ 1.07", _cells("llmrouter", "vb"),
                     lambda r: r["vb_mean"] >= 1.07))
    for data, name in (("routerbench", "RouterBench"), ("routellm-mmlu", "RouteLLM")):
        cells = _cells(data, "vb")
        lows = [min(c[1]["vb"]) for c in cells[1:] if c]
        rows.append(_row(f"{name} `auto` never below 0.995 (lowest seed: "
                         f"{min(lows):.4f})" if lows else f"{name} `auto` never below 0.995",
                         cells, lambda r: min(r["vb"]) >= 0.995))
    rb = _table("routerbench", "-union") or {}
    others = {k: v["iso_mean"] for k, v in rb.items()
              if not k.startswith("auto") and k != "best-single" and v.get("iso_mean") is not None
              and not math.isnan(v["iso_mean"])}
    note = ""
    if others:
        k = min(others, key=others.get)
        note = f" (best router with union: {k}, {_fmt(others[k], rb[k].get('iso_std'), 3)})"
    rows.append(_row("RouterBench iso-quality cost ≤ 0.5", _cells("routerbench", "iso", 3),
                     lambda r: r["iso_mean"] <= 0.5, note))
    rows.append(_row("RouteLLM APGR ≥ 0.75", _cells("routellm-mmlu", "apgr", 3),
                     lambda r: r["apgr_mean"] >= 0.75))
    rows.append(_row("`auto` fit + score seconds on MMLU-Pro ≤ 600 (after encoding)",
                     _cells("mmlu-pro", "secs", 0), lambda r: r["secs_mean"] <= 600))
    n_in, n_all, behind = cf_summary()
    rows += ["", f"Every CF router within 0.01 Vb of the best classifier of its table "
                 f"(`python benchmarks/cf_gap_table.py`), default settings: {n_in} of {n_all} "
                 "rows" + ("." if not behind else "; behind: " + ", ".join(behind) + ".")]
    t_in, t_all, t_behind = cf_summary(tuned=True)
    if t_all:
        rows += ["", f"The CF routers tuned on the validation prompts as the classifier rows "
                     f"are (`<router> (tuned)` rows): {t_in} of {t_all} rows"
                     + ("." if not t_behind else "; behind: " + ", ".join(t_behind) + ".")]
    return "\n".join(rows)


def write(path: Path = HERE / "RESULTS.md") -> bool:
    """Replace the marked table in RESULTS.md; False when the markers are absent."""
    if START not in path.read_text():
        return False
    replace_section(path, START, END, f"{START}\n{markdown()}\n{END}")
    cf_gap_table.write(path)  # its table sits in the same file
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true",
                    help="replace the marked table in benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.write:
        if not write():
            raise SystemExit(f"benchmarks/RESULTS.md has no {START} marker")
        print("benchmarks/RESULTS.md: target table rewritten")
    else:
        print(markdown())


if __name__ == "__main__":
    main()
