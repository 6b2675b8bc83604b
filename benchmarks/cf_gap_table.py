"""Issue 12's CF target from the saved bench_quality tables: every CF router against the
best classifier router of the same table (same seeds, same splits).

Reads ``benchmarks/quality/<data>[-<encoder>].json`` (written by bench_quality.py) and
prints a Markdown table: per dataset and encoder, the best of the classifier routers
(knn with tuned k, linear with tuned alpha, mlc) and each CF router's Vb (mean over the
seeds) with its difference to that classifier. No fitting: run it after the tables.

Usage::

    python benchmarks/cf_gap_table.py [--write]

``--write`` replaces the table between ``<!-- cf_gap_table -->`` markers in
``benchmarks/RESULTS.md`` (bench_quality.py does it after each table it writes).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import replace_section  # noqa: E402  (benchmarks/ is this script's folder)

CLASSIFIERS = ("knn (tuned k)", "linear (tuned)", "mlc")
CF = ("als", "bpr", "lightfm", "textmf", "twotower")
#: the same routers tuned on the validation prompts as the classifier rows are
#: (bench_quality.py --routers "als (tuned),..."), where measured
CF_TUNED = ("als (tuned)", "bpr (tuned)", "textmf (tuned)", "twotower (tuned)")
DATA = ("mmlu-pro", "routerdc", "llmrouter", "routerbench", "routellm-mmlu",
        "synthetic-preference")
ENCODERS = ("tfidf", "minilm", "union")
#: the target: within this much Vb of the best classifier
TOLERANCE = 0.01


def rows():
    for data in DATA:
        for enc in ENCODERS:
            tag = data if enc == "tfidf" else f"{data}-{enc}"
            path = HERE / "quality" / f"{tag}.json"
            if not path.is_file():
                continue
            table = json.loads(path.read_text())["table"]
            best = max((k for k in CLASSIFIERS if k in table),
                       key=lambda k: table[k]["vb_mean"])
            yield data, enc, best, table


def count(labels, tables=None) -> tuple[int, int, list[str]]:
    """(rows within TOLERANCE, rows measured, the rows behind) for these CF labels, over
    ``tables`` (default: the saved tables, read now)."""
    n_in = n_all = 0
    behind = []
    for data, enc, best, table in (rows() if tables is None else tables):
        b = table[best]["vb_mean"]
        for r in labels:
            if r in table:
                n_all += 1
                if table[r]["vb_mean"] >= b - TOLERANCE:
                    n_in += 1
                else:
                    behind.append(f"{data} {enc} {r} {table[r]['vb_mean'] - b:+.3f}")
    return n_in, n_all, behind


def markdown() -> str:
    tables = list(rows())
    cols = [c for c in CF + CF_TUNED if any(c in t for *_, t in tables)]
    out = ["| data | features | best classifier | " + " | ".join(cols) + " |",
           "|---|---|---|" + "---|" * len(cols)]
    for data, enc, best, table in tables:
        b = table[best]["vb_mean"]
        cells = []
        for r in cols:
            if r not in table:
                cells.append("")
                continue
            v = table[r]["vb_mean"]
            ok = v >= b - TOLERANCE
            cells.append(f"{v:.4f} ({v - b:+.4f}){'' if ok else ' ✗'}")
        out.append(f"| {data} | {enc} | {best} {b:.4f} | " + " | ".join(cells) + " |")
    n_in, n_all, _ = count(CF, tables)
    t_in, t_all, _ = count(CF_TUNED, tables)
    out += ["", f"Default settings: {n_in} of {n_all} measured CF rows are within "
                f"{TOLERANCE} Vb of the best classifier of their table (✗: not)."]
    if t_all:
        out += [f"Tuned on the validation prompts: {t_in} of {t_all}."]
    return "\n".join(out)


START, END = "<!-- cf_gap_table -->", "<!-- /cf_gap_table -->"


def write(path: Path = HERE / "RESULTS.md") -> bool:
    """Replace the marked table in RESULTS.md; False when the markers are absent."""
    if START not in path.read_text():
        return False
    replace_section(path, START, END, f"{START}\n{markdown()}\n{END}")
    return True


if __name__ == "__main__":
    if "--write" in sys.argv[1:]:
        if not write():
            raise SystemExit(f"benchmarks/RESULTS.md has no {START} marker")
        print("benchmarks/RESULTS.md: CF table rewritten")
    else:
        print(markdown())
