"""Quality of every router on the real records in ../shared/data, through `run_bench`.

Runs, each into ``benchmarks/realdata/<job>/`` (results.json, results.md, PNGs):

* ``mmlu-routereval``: MMLU-Pro (12,032 x 29), RouterEval protocol, pool sizes
  3, 5, 10 and all 29, groups all_strong / all_weak / strong_to_weak, bootstrap CIs.
* ``mmlu-cold``: MMLU-Pro cold-prompt split (80/10/10, seed 42): mu, Vb, Hit@3.
* ``mmlu-scaling``: the model-level scaling curve (pool sizes 2..29).
* ``mmlu-cold-llm``: three LLMs held out of MMLU-Pro, added from 50 probe prompts each
  (``add_llm``): AUC of their predicted scores, mu with and without them.
* ``routerdc``: RouterDC split2_model7 with its own train/test files (val = 10% of train).
* ``routerbench``: RouterBench subsets with per-record costs (quality-cost curve, AIQ).
* ``llmrouter``: LLMRouter with per-LLM prices.
* ``routellm``: RouteLLM MMLU (GPT-4 vs Mixtral): APGR and CPT.

and writes the tables into ``benchmarks/RESULTS.md`` between the markers
``<!-- bench_realdata -->``. Prompts are encoded once per job (MiniLM by default,
through an on-disk embedding cache, so reruns skip encoding).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_realdata.py [--encoder minilm|tfidf]
        [--jobs mmlu-routereval,mmlu-cold,...] [--routers knn,linear,...]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmrec.data.splits import split_from_indices  # noqa: E402
from llmrec.datasets import load  # noqa: E402
from llmrec.evaluation import run_bench  # noqa: E402

ALL_ROUTERS = ["best-single", "knn", "knn-tuned", "linear", "mlp", "cluster", "mlc", "als", "bpr",
               "lightfm", "textmf", "twotower", "textmf+category", "twotower+category",
               "oracle", "random"]
# Settings: grids are searched on the validation prompts only (never on test).
# "knn" is RouterEval's PRknn as published (k=5); "knn-tuned" picks k on validation.
# LightFM with dense 384-d prompt features costs O(features x factors) per record:
# 5 epochs keep one fit on MMLU-Pro near a minute (20 epochs: 320 s, mu 0.729).
SPECS = {
    "knn-tuned": ("knn-tuned", "knn", {"k_grid": [5, 10, 20, 50, 100, 200]}),
    "linear": ("linear", "linear", {"alpha_grid": [0.1, 1.0, 10.0, 100.0, 1000.0]}),
    "cluster": ("cluster", "cluster", {"n_clusters_grid": [4, 8, 14, 32]}),
    "mlc": ("mlc", "mlc", {"C_grid": [0.01, 0.1, 1.0]}),
    "lightfm": ("lightfm", "lightfm", {"epochs": 5}),
    # the prompt's category / benchmark one-hot appended to the embedding
    "textmf+category": ("textmf+category", "textmf", {"side_features": ("category",)}),
    "twotower+category": ("twotower+category", "twotower", {"side_features": ("category",)}),
}
SCALING_ROUTERS = ALL_ROUTERS  # every router, with the oracle and random bounds
JOBS = ["mmlu-cold", "mmlu-routereval", "mmlu-scaling", "mmlu-cold-llm", "routerdc", "routerbench", "llmrouter",
        "routellm"]


def make_encoder(kind: str):
    from llmrec.encoders import make_encoder as mk
    if kind == "tfidf":
        return "tfidf"
    from llmrec.encoders.cache import CachedEncoder, default_cache_dir
    cache = default_cache_dir()
    return CachedEncoder(mk(kind), cache)


def own_split(records, seed=42, val=0.1):
    """Train/test from the source's own ``split`` column; val = a seeded share of train."""
    split = records.prompts["split"].astype(str).to_numpy()
    tr = np.flatnonzero(split == "train")
    te = np.flatnonzero(split == "test")
    rng = np.random.default_rng(seed)
    tr = rng.permutation(tr)
    n_val = int(round(val * len(tr)))
    return split_from_indices(records, np.sort(tr[n_val:]), np.sort(tr[:n_val]), te)


def run_job(job: str, encoder, routers, out_root: Path, seed: int) -> dict:
    out = out_root / job
    common = dict(encoder=encoder, out_dir=out, seed=seed, show_progress=True)
    if job == "mmlu-routereval":
        return run_bench("mmlu-pro", routers, protocol="routereval", sizes=[3, 5, 10, 29],
                         n_boot=200, **common)
    if job == "mmlu-cold":
        return run_bench("mmlu-pro", routers, protocol="cold-prompt", n_boot=1000, **common)
    if job == "mmlu-scaling":
        rs = [r for r in routers if (r if isinstance(r, str) else r[0]) in SCALING_ROUTERS]
        return run_bench("mmlu-pro", rs, protocol="scaling", sizes=[2, 3, 5, 10, 15, 20, 29],
                         n_repeats=3, **common)
    if job == "mmlu-cold-llm":
        # three LLMs of different strength held out; each added from 50 probe prompts
        # no validation prompts here, so routers with validation grids run untuned
        rs = ["best-single", "knn", "linear", "als", "lightfm", "textmf", "twotower",
              "oracle", "random"]
        rs = [SPECS["lightfm"] if r == "lightfm" else r for r in rs]
        return run_bench("mmlu-pro", rs, protocol="cold-llm", n_boot=200,
                         held_out=["Llama-2-13b-hf", "Meta-Llama-3-8B", "Qwen1.5-72B-Chat"],
                         n_probe=50, **common)
    if job in ("routerdc", "routerbench", "llmrouter"):
        rec = load(job)
        return run_bench(rec, routers, protocol="cold-prompt", n_boot=1000,
                         split=own_split(rec, seed), **common)
    if job == "routellm":
        return run_bench("routellm-mmlu", routers, protocol="cold-prompt", n_boot=1000, **common)
    raise SystemExit(f"unknown job {job}")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def write_results(sections: list[str]) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    body = ("<!-- bench_realdata -->\n## Router quality on real data (`bench_realdata.py`)\n\n"
            f"Machine: {machine()}. Each job below names its command and date; all were "
            "run with `OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1`. "
            "Full outputs (results.json with every figure, settings, versions and seed; "
            "PNG plots) in `benchmarks/realdata/<job>/`.\n\n"
            + "\n\n".join(sections) + "\n<!-- /bench_realdata -->")
    pat = re.compile(r"<!-- bench_realdata -->.*?<!-- /bench_realdata -->", re.S)
    text = pat.sub(lambda _: body, text) if pat.search(text) else text.rstrip() + "\n\n" + body
    path.write_text(text + ("\n" if not text.endswith("\n") else ""))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="minilm")
    ap.add_argument("--jobs", default=",".join(JOBS))
    ap.add_argument("--routers", default=",".join(ALL_ROUTERS))
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--out", default=str(HERE / "realdata"))
    args = ap.parse_args(argv)
    encoder = make_encoder(args.encoder)
    routers = [SPECS.get(r, r) for r in args.routers.split(",") if r]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = out / "sections.json"  # one entry per job, so jobs can be rerun separately
    sections = json.loads(store.read_text()) if store.exists() else {}
    cmd = "python benchmarks/bench_realdata.py " + " ".join(argv if argv is not None
                                                            else sys.argv[1:])
    for job in [j for j in args.jobs.split(",") if j]:
        t0 = time.perf_counter()
        res = run_job(job, encoder, routers, out, args.seed)
        secs = time.perf_counter() - t0
        md = res["markdown"]
        md = re.sub(r"^# .*\n", "", md, flags=re.M)
        md = re.sub(r"^## ", "#### ", md, flags=re.M)
        date = f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC"
        sections[job] = (f"### {job}\n\nCommand: `{cmd.strip()}`; encoder {args.encoder}; "
                         f"{secs:.0f} s; {date}.\n\n{md}")
        print(f"[{job}] done in {secs:.0f} s", flush=True)
        store.write_text(json.dumps(sections, indent=1))
    write_results([sections[j] for j in JOBS if j in sections])


if __name__ == "__main__":
    main()
