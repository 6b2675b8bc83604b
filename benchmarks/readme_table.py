"""Print the README's benchmark table from benchmarks/realdata/<job>/results.json.

Usage: python benchmarks/readme_table.py mmlu-cold routerdc
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(jobs):
    data = {j: json.loads((HERE / "realdata" / j / "results.json").read_text()) for j in jobs}
    routers = [r["router"] for r in data[jobs[0]]["results"]]
    head = "| router | " + " | ".join(
        f"{j}: mu [95% CI] | Vb | Hit@3" for j in jobs) + " |"
    print(head)
    print("|---|" + "---|---|---|" * len(jobs))
    for name in routers:
        cells = []
        for j in jobs:
            row = next((r for r in data[j]["results"] if r["router"] == name), None)
            if row is None or row.get("mu") is None:
                cells += ["-", "-", "-"]
                continue
            ci = (f" [{row['mu_low']:.3f}, {row['mu_high']:.3f}]"
                  if row.get("mu_low") is not None else "")
            hit = f"{row['hit@3']:.3f}" if row.get("hit@3") is not None else "-"
            cells += [f"{row['mu']:.3f}{ci}", f"{row['vb']:.3f}", hit]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:] or ["mmlu-cold", "routerdc"])
