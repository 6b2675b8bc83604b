"""Hostile requests against ``llmrec serve`` with routers fitted on MMLU-Pro (issue 13).

The setting of the original finding: kNN and MLP routers on MMLU-Pro with TF-IDF
features, served by a real ``llmrec serve`` on 127.0.0.1. Two measurements per router:

* the finding's replay: ``--rounds`` rounds of 20 concurrent good requests plus one
  request whose prompt holds a lone surrogate (``"\\ud800"`` as a JSON escape); counts
  the good requests that did not get 200 (before the fix: 44-62 of 200);
* a load test with bad requests mixed in (``tests/fault_harness.bad_mix_load``).

The section between ``<!-- bench_hostile_realdata -->`` markers in
``benchmarks/RESULTS.md`` is rewritten.

    LLMREC_SHARED_DATA=../shared/data python benchmarks/bench_hostile_realdata.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _results import replace_section  # benchmarks/ is this script's folder

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
START, END = "<!-- bench_hostile_realdata -->", "<!-- /bench_hostile_realdata -->"
SURROGATE = '{"prompts": ["What is the derivative of x^2? \\ud800"], "k": 3}'


def replay(url: str, rounds: int) -> dict:
    import httpx
    good_failed = bad_codes = 0
    with httpx.Client(base_url=url, timeout=60) as c:
        def good(i):
            try:
                return c.post("/v1/recommend", json={"prompts": [f"Explain topic {i} in law"],
                                                      "k": 3}).status_code
            except httpx.HTTPError:  # no answer within 60 s counts as a failure
                return 599

        def bad(_):
            try:
                return c.post("/v1/recommend", content=SURROGATE,
                              headers={"content-type": "application/json"}).status_code
            except httpx.HTTPError:
                return 599

        for _r in range(rounds):
            with ThreadPoolExecutor(21) as ex:
                goods = [ex.submit(good, i) for i in range(20)]
                b = ex.submit(bad, 0)
            good_failed += sum(f.result() != 200 for f in goods)
            bad_codes += int(b.result() >= 500)
    return {"good": 20 * rounds, "good_failed": good_failed, "bad": rounds,
            "bad_5xx": bad_codes}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--routers", default="knn,mlp")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--load-requests", type=int, default=2000)
    ap.add_argument("--load-threads", type=int, default=16)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    from llmrec.datasets import load
    from llmrec.routers import make_router
    from tests import fault_harness as fh

    rec = load("mmlu-pro")
    work = Path(tempfile.mkdtemp(prefix="bench_hostile"))
    rows = {}
    for name in args.routers.split(","):
        t0 = time.time()
        make_router(name).fit(rec, encoder="tfidf").save(work / name)
        fit_s = time.time() - t0
        with fh.llmrec_serve(work / name, work / f"{name}-fb.jsonl") as (_p, url):
            rep = replay(url, args.rounds)
            load_ = fh.bad_mix_load(url, rec.llm_names[0], args.load_requests,
                                    args.load_threads, 0.25, args.seed)
        rows[name] = {"fit_s": round(fit_s), "replay": rep, "load": load_}
        print(name, rows[name], flush=True)
    cmd = "OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_hostile_realdata.py " + \
        " ".join(argv if argv is not None else sys.argv[1:])
    if not args.no_write:
        write(rows, cmd.strip(), rec)
    print(json.dumps(rows, indent=2))
    bad = sum(r["replay"]["good_failed"] + r["load"]["good_failed"] for r in rows.values())
    return 0 if bad == 0 else 1


def write(rows: dict, cmd: str, rec) -> None:
    lines = [START, "## Hostile requests, MMLU-Pro routers (`bench_hostile_realdata.py`)", "",
             f"Command: `{cmd}`  ",
             f"Machine: 2-core shared box, other jobs running ({platform.python_version()}); "
             f"date {time.strftime('%Y-%m-%d', time.gmtime())}; data {rec.name} "
             f"({rec.n_prompts} prompts x {rec.n_llms} LLMs), TF-IDF features, real "
             "`llmrec serve` on 127.0.0.1.", "",
             "| router | lone-surrogate replay: good failed / good (bad 5xx) | bad-mix load: "
             "good failed / good | bad 4xx / bad (5xx) | good p50 / p99 ms |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        rp, ld = r["replay"], r["load"]
        lines.append(f"| {name} | {rp['good_failed']} / {rp['good']} ({rp['bad_5xx']}) | "
                     f"{ld['good_failed']} / {ld['good']} | {ld['bad_4xx']} / {ld['bad']} "
                     f"({ld['bad_5xx']}) | {ld.get('p50_ms')} / {ld.get('p99_ms')} |")
    lines += ["", "Before the fix the replay gave 44-62 of 200 good requests a 500 (issue 13).",
              END]
    replace_section(HERE / "RESULTS.md", START, END, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
