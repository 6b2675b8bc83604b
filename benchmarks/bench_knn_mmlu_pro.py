"""kNN batched recommend on MMLU-Pro MiniLM embeddings: throughput and parity.

Fits ``knn`` (k=5) on 80% of MMLU-Pro (12,032 x 29) with all-MiniLM-L6-v2 features
(read from the shared embedding cache, ``LLMREC_CACHE``), then recommends top-3 for
the held-out 20% in one batch, with the FAISS search (default) and with the numpy
search the router used before (blocked matrix product + top-k). Prints prompts per
second (wall and CPU) of each, the ratio, and whether both chose the same LLMs.

    LLMREC_CACHE=/work/cache OMP_NUM_THREADS=2 python benchmarks/bench_knn_mmlu_pro.py
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from llmrec.datasets import load
from llmrec.encoders import PrecomputedEncoder, make_encoder
from llmrec.routers import make_router


def main() -> dict:
    rec = load("mmlu-pro")
    t0 = time.perf_counter()
    from llmrec.encoders import CachedEncoder
    from llmrec.encoders.cache import default_cache_dir
    X = CachedEncoder(make_encoder("minilm"), default_cache_dir()).encode(rec.texts)
    enc_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    order = rng.permutation(rec.n_prompts)
    n_tr = int(0.8 * rec.n_prompts)
    tr, te = np.sort(order[:n_tr]), np.sort(order[n_tr:])
    train = rec.select_prompts(tr)
    out = {"prompts_train": int(len(tr)), "prompts_test": int(len(te)), "llms": rec.n_llms,
           "dim": int(X.shape[1]), "encode_s": round(enc_s, 1)}
    picks = {}
    for backend in ("auto", "numpy"):
        r = make_router("knn")
        r._nn_backend = backend
        r.fit(train, encoder=PrecomputedEncoder(X[tr], texts=train.texts))
        Xq = X[te]
        r.recommend_ids(Xq[:16], k=3)  # warm-up
        best = None
        for _ in range(3):
            c0, t0 = time.process_time(), time.perf_counter()
            ids, _ = r.recommend_ids(Xq, k=3)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            best = (wall, cpu) if best is None or wall < best[0] else best
        name = "faiss" if backend == "auto" else "numpy"
        picks[name] = ids
        out[f"{name}_per_s"] = round(len(te) / best[0])
        out[f"{name}_per_cpu_s"] = round(len(te) / best[1])
    out["speedup"] = round(out["faiss_per_s"] / out["numpy_per_s"], 2)
    out["same_choices"] = bool((picks["faiss"] == picks["numpy"]).all())
    out["load_avg"] = os.getloadavg()[0]
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
