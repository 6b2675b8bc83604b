"""Development check behind ``map_alpha="auto"`` of the CF routers (docs/routers/als.md).

The cold-prompt map of ALS / BPR (features -> prompt factors) used a fixed ridge
penalty of 1.0; ``map_alpha="auto"`` picks it by leave-one-out on the training
prompts. This script compares the two on *development* splits only: seeds 100-102 of
the same 80/10/10 cold-prompt split the benchmark tables use (seeds 0-4), routers
fitted on the training prompts, the linear router's grid tuned on the split's test
prompts, and every router scored on the split's validation prompts. No benchmark
seed is touched, so the choice is not tuned on a benchmark test split.

Usage (from the repository root; MiniLM features come from the shared cache)::

    OMP_NUM_THREADS=2 python benchmarks/cf_map_penalty.py --data mmlu-pro --encoder union

Prints one JSON line per (data, encoder) with Vb mean and std over the three seeds,
and appends it to ``benchmarks/quality/cf-map-penalty.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import bench_quality as BQ  # noqa: E402
from llmrec.data.splits import cold_prompt_split  # noqa: E402
from llmrec.evaluation.protocols import shared_encoder  # noqa: E402
from llmrec.routers import make_router  # noqa: E402

DEV_SEEDS = (100, 101, 102)
VARIANTS = {
    "linear (tuned)": ("linear", {"alpha_grid": [0.1, 1.0, 10.0, 100.0, 1000.0]}),
    "als, map_alpha=1.0": ("als", {"map_alpha": 1.0}),
    "als, map_alpha=auto": ("als", {"map_alpha": "auto"}),
    "bpr, map_alpha=1.0": ("bpr", {"map_alpha": 1.0}),
    "bpr, map_alpha=auto": ("bpr", {"map_alpha": "auto"}),
}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, choices=BQ.DATASETS)
    ap.add_argument("--encoder", default="tfidf", choices=("tfidf", "minilm", "union"))
    args = ap.parse_args(argv)
    rec = BQ.load(args.data)
    spec = BQ.encoder_spec(rec, args.encoder)
    vb = {k: [] for k in VARIANTS}
    chosen = {k: [] for k in VARIANTS if k.endswith("auto")}
    t0 = time.perf_counter()
    for seed in DEV_SEEDS:
        split = cold_prompt_split(rec, val=0.1, test=0.1, seed=seed, stratify="benchmark")
        enc = shared_encoder(rec, split.train, spec)
        truth = split.val.dense().astype(np.float64)
        best = float(np.nanmax(np.nanmean(truth, axis=0)))
        for label, (name, params) in VARIANTS.items():
            r = make_router(name, **params)
            if "random_state" in r._param_names():
                r.set_params(random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r.fit(split.train, encoder=enc, val_records=split.test, show_progress=False)
                ids, _ = r.recommend_ids(split.val, k=1)
            mu = float(np.nanmean(truth[np.arange(len(truth)), ids[:, 0]]))
            vb[label].append(mu / best)
            if label in chosen:
                chosen[label].append(r.map_alpha_)
            print(f"[{args.data} {args.encoder} dev seed {seed}] {label}: Vb {mu / best:.4f}",
                  flush=True)
    row = {"data": args.data, "encoder": args.encoder, "dev_seeds": list(DEV_SEEDS),
           "scored_on": "validation prompts of the dev splits",
           "vb_mean": {k: float(np.mean(v)) for k, v in vb.items()},
           "vb_std": {k: float(np.std(v, ddof=1)) for k, v in vb.items()},
           "vb": vb, "map_alpha_chosen": chosen,
           "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps(row))
    out = HERE / "quality" / "cf-map-penalty.jsonl"
    with out.open("a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
