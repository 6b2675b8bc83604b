"""Write the bandit section of benchmarks/RESULTS.md from benchmarks/bandits/*/results.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main():
    parts = ["<!-- bench_bandits -->", "## Bandit feedback: replay, Vowpal Wabbit, off-policy "
             "evaluation (`bench_bandits.py`, issue 15)", "",
             "Machine: 2-core shared box, other jobs running (load average 12-15). "
             "Means ± standard deviation over seeds; each seed is its own random split "
             "(80% stream, 20% held out) and stream order. Full outputs: "
             "`benchmarks/bandits/<job>/results.json`, `table.md`, regret plots.", ""]
    for d in sorted((HERE / "bandits").glob("*/results.json")):
        res = json.loads(d.read_text())
        st = res["settings"]
        parts += [f"### {d.parent.name}", "",
                  f"Command: `{st['command']}` with `LLMREC_SHARED_DATA=/work/shared/data "
                  f"LLMREC_CACHE=/work/cache OMP_NUM_THREADS=1 nice -n 10`; {st['date']}; "
                  f"{st['wall_s']:.0f} s; features: {st['encoder']}.", ""]
        parts += res["table"] + [""]
        for png in ("regret_single.png", "regret_oracle.png"):
            if (d.parent / png).exists():
                parts.append(f"![{png}](bandits/{d.parent.name}/{png})")
        parts.append("")
    parts.append("<!-- /bench_bandits -->")
    body = "\n".join(parts)
    path = HERE / "RESULTS.md"
    text = path.read_text()
    pat = re.compile(r"<!-- bench_bandits -->.*?<!-- /bench_bandits -->", re.S)
    if pat.search(text):
        text = pat.sub(lambda m: body, text)
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
