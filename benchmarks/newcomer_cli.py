"""What a newcomer gets from the command line with default settings (issue 12's opening
measurement), on the real records: ``llmrec split``, ``llmrec fit`` with no options but
the router, ``llmrec evaluate``, over several seeds.

For each dataset and seed it runs, as subprocesses, exactly what the README shows::

    llmrec split --data D --seed S --out W/D-S
    llmrec fit --data W/D-S/train --router R --out W/D-S/R      # R = best-single, knn, linear, auto
    llmrec evaluate --model W/D-S/R --data W/D-S/test --json --exclude-train

(`--exclude-train` drops the few test prompts whose text also occurs among the
training prompts: duplicates under another prompt id.) No `--val`, no `--tune`, no
`--param`, the default TF-IDF encoder: the settings a newcomer gets. `auto` is the
default router of `llmrec fit`; knn and linear were the defaults the issue measured
(knn Vb 0.80, linear 0.92 against the best LLM of the training prompts, on a 2,000-prompt
MMLU-Pro sample). Reported per router: mu / the mu of `best-single` (the LLM with the
best training mean: "just call my best model"), mean ± std over the seeds, and how many
seeds are below 1; and the fit seconds.

Usage (from the repository root)::

    OMP_NUM_THREADS=2 python benchmarks/newcomer_cli.py [--data mmlu-pro,routerdc,...]
        [--seeds 0,1,2,3,4] [--no-write]

Writes ``benchmarks/quality/newcomer-cli.json`` and the table between
``<!-- newcomer_cli -->`` markers in ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _results import replace_section  # noqa: E402  (benchmarks/ is this script's folder)

START, END = "<!-- newcomer_cli -->", "<!-- /newcomer_cli -->"
DATA = ("mmlu-pro", "routerdc", "llmrouter", "routerbench", "routellm-mmlu")
ROUTERS = ("best-single", "knn", "linear", "auto")


def llmrec(*args: str) -> str:
    """Run the command line as a user does; stop with its own message when it fails."""
    p = subprocess.run([sys.executable, "-m", "llmrec", "-q", *args], capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise SystemExit(f"llmrec {' '.join(args)} failed (rc {p.returncode}):\n"
                         f"{p.stderr.strip()}")
    return p.stdout


def run(data: list[str], seeds: list[int], work: Path) -> dict:
    out = {}
    for d in data:
        per = {r: {"mu": [], "fit_s": []} for r in ROUTERS}
        for s in seeds:
            sd = work / f"{d}-{s}"
            llmrec("split", "--data", d, "--seed", str(s), "--out", str(sd))
            for r in ROUTERS:
                t0 = time.perf_counter()
                llmrec("fit", "--data", str(sd / "train"), "--router", r, "--out", str(sd / r))
                per[r]["fit_s"].append(time.perf_counter() - t0)
                res = json.loads(llmrec("evaluate", "--model", str(sd / r), "--data",
                                        str(sd / "test"), "--json", "--exclude-train"))
                per[r]["mu"].append(float(res["mu"]))
                print(f"[{d} seed {s}] {r}: mu {res['mu']:.4f} "
                      f"({per[r]['fit_s'][-1]:.0f} s fit)", flush=True)
        base = np.array(per["best-single"]["mu"])
        out[d] = {}
        for r in ROUTERS:
            ratio = np.array(per[r]["mu"]) / base
            out[d][r] = {"vs_best_single": ratio.tolist(),
                         "mean": float(ratio.mean()),
                         "std": float(ratio.std(ddof=1)) if len(ratio) > 1 else 0.0,
                         "seeds_below_1": int((ratio < 1 - 1e-12).sum()),
                         "fit_s_mean": float(np.mean(per[r]["fit_s"]))}
    return out


def markdown(res: dict, seeds: list[int], cmd: str, minutes: float) -> str:
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["## A newcomer's defaults through the CLI (`newcomer_cli.py`, issue 12)", "",
             f"Command: `{cmd}`; seeds {seeds} (`llmrec split --seed S`, cold-prompt "
             "80/10/10), `llmrec fit --router R` with no other option (TF-IDF), "
             "`llmrec evaluate --exclude-train` on the test prompts; "
             f"{minutes:.0f} min on {platform.machine()} with 2 cores, shared; {when}.", "",
             "Cell: router mu / best-single mu (the LLM with the best training mean), mean ± "
             "std over seeds, [seeds below 1]; fit s is the mean `llmrec fit` wall time "
             "(process start, reading, encoding, fitting, saving).", "",
             "| data | " + " | ".join(ROUTERS[1:]) + " | auto fit s |",
             "|---" * (len(ROUTERS) + 1) + "|"]
    for d, rows in res.items():
        cells = [f"{rows[r]['mean']:.4f} ± {rows[r]['std']:.4f} [{rows[r]['seeds_below_1']}]"
                 for r in ROUTERS[1:]]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {rows['auto']['fit_s_mean']:.0f} |")
    return "\n".join(lines)


def write_results(md: str) -> None:
    replace_section(HERE / "RESULTS.md", START, END, f"{START}\n{md}\n{END}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=",".join(DATA))
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    data = [d for d in args.data.split(",") if d]
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmrec-newcomer-") as tmp:
        res = run(data, seeds, Path(tmp))
    cmd = "python benchmarks/newcomer_cli.py " + shlex.join(argv if argv is not None
                                                            else sys.argv[1:])
    md = markdown(res, seeds, cmd.strip(), (time.perf_counter() - t0) / 60)
    print(md)
    if not args.no_write:
        (HERE / "quality" / "newcomer-cli.json").write_text(
            json.dumps({"seeds": seeds, "results": res}, indent=1))
        write_results(md)


if __name__ == "__main__":
    main()
