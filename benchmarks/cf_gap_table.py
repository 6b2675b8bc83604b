"""Issue 12's CF target from the saved bench_quality tables: every CF router against the
best classifier router of the same table (same seeds, same splits).

Reads ``benchmarks/quality/<data>[-<encoder>].json`` (written by bench_quality.py) and
prints a Markdown table: per dataset and encoder, the best of the classifier routers
(knn with tuned k, linear with tuned alpha, mlc) and each CF router's Vb (mean over the
seeds) with its difference to that classifier. No fitting: run it after the tables.

Usage::

    python benchmarks/cf_gap_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
CLASSIFIERS = ("knn (tuned k)", "linear (tuned)", "mlc")
CF = ("als", "bpr", "lightfm", "textmf", "twotower")
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


def markdown() -> str:
    out = ["| data | features | best classifier | " + " | ".join(CF) + " |",
           "|---|---|---|" + "---|" * len(CF)]
    n_in = n_all = 0
    for data, enc, best, table in rows():
        b = table[best]["vb_mean"]
        cells = []
        for r in CF:
            if r not in table:
                cells.append("")
                continue
            v = table[r]["vb_mean"]
            ok = v >= b - TOLERANCE
            n_in += ok
            n_all += 1
            cells.append(f"{v:.4f} ({v - b:+.4f}){'' if ok else ' ✗'}")
        out.append(f"| {data} | {enc} | {best} {b:.4f} | " + " | ".join(cells) + " |")
    out += ["", f"{n_in} of {n_all} measured CF rows are within {TOLERANCE} Vb of the best "
                "classifier of their table (✗: not)."]
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown())
