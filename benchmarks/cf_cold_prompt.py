"""Cold-prompt quality of the CF routers (ALS, BPR, LightFM) and their user maps.

Splits the records 80/10/10 by prompt (``cold_prompt_split``, seed 42), encodes the
prompts once with TF-IDF fitted on the training prompts (cached as .npy), picks
each router's settings on the validation prompts and reports mu / Vb on the test
prompts next to the best single LLM and the oracle.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/cf_cold_prompt.py \
        {mmlu-pro|synthetic} {tfidf|minilm} [results.json]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from llmrec.data.splits import cold_prompt_split
from llmrec.datasets import load, make_synthetic
from llmrec.encoders import PrecomputedEncoder, TfidfEncoder, make_encoder
from llmrec.evaluation.metrics import routereval_metrics
from llmrec.routers import make_router

GRID = {
    "als": [dict(user_map="ridge", map_alpha=a) for a in (0.1, 1.0, 10.0)]
    + [dict(user_map="knn", map_k=k) for k in (20, 100)]
    + [dict(user_map="mlp", map_alpha=1e-3)]
    + [dict(user_map="ridge", map_alpha=1.0, neg_alpha=na) for na in (0.0, 8.0)]
    + [dict(factors=8, alpha=a, neg_alpha=a, map_alpha=10.0) for a in (0.0, 8.0)],
    "bpr": [dict(user_map="ridge", map_alpha=1.0)]
    + [dict(user_map="knn", map_k=k) for k in (100, 300)],
    "lightfm": [dict(loss="logistic"), dict(loss="warp")],
}
BASE = {"als": dict(factors=32, iterations=15), "bpr": dict(factors=32, iterations=100),
        "lightfm": dict(no_components=32, epochs=10)}


def main(name: str = "mmlu-pro", encoder: str = "tfidf", dim: int = 128,
         out: str | None = None) -> list[dict]:
    rec = make_synthetic(2000, 20, seed=0) if name == "synthetic" else load(name)
    split = cold_prompt_split(rec, val=0.1, test=0.1, seed=42)
    cache = Path(f"/tmp/llmrec_cf_{name}_{encoder}{dim if encoder == 'tfidf' else ''}.npy")
    if cache.exists():
        X = np.load(cache)
    elif encoder == "tfidf":
        enc = TfidfEncoder(dim=dim, n_features=2 ** 16).fit(split.train.texts)
        X = enc.encode(rec.texts)
        np.save(cache, X)
    else:
        X = make_encoder(encoder).encode(rec.texts, show_progress=True)
        np.save(cache, X)
    encoder = PrecomputedEncoder.from_records_embeddings(rec, X)
    val_t, test_t = split.val.dense(), split.test.dense()
    rows = []
    best = int(np.nanargmax(np.nanmean(split.train.dense(), axis=0)))
    for part, T in (("val", val_t), ("test", test_t)):
        S = np.zeros_like(T)
        S[:, best] = 1.0
        rows.append({"router": "best-single", "part": part,
                     **routereval_metrics(S, T)})
        rows.append({"router": "oracle", "part": part,
                     **routereval_metrics(np.nan_to_num(T, nan=-1.0), T)})
    for rname, grid in GRID.items():
        for params in grid:
            t0 = time.perf_counter()
            r = make_router(rname, **{**BASE[rname], **params}).fit(split.train, encoder=encoder)
            fit_s = time.perf_counter() - t0
            for part, recs, T in (("val", split.val, val_t), ("test", split.test, test_t)):
                m = routereval_metrics(r.score(recs), T)
                rows.append({"router": rname, "params": params, "part": part,
                             "fit_s": round(fit_s, 1), **m})
            print(rname, params, {k: round(v, 4) for k, v in rows[-2].items()
                                  if k in ("mu", "vb")}, "test mu", round(rows[-1]["mu"], 4),
                  f"{fit_s:.1f}s", flush=True)
    if out:
        Path(out).write_text(json.dumps(rows, indent=1, default=str))
    return rows


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0] if args else "mmlu-pro", args[1] if len(args) > 1 else "tfidf",
         out=args[2] if len(args) > 2 else None)
