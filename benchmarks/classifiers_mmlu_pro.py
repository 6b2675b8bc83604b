"""RouterEval's classifier routers on MMLU-Pro: test mu on an 80/10/10 cold-prompt split.

Usage (from the repository root, with ../shared/data or $LLMREC_SHARED_DATA present)::

    python docs/routers/classifiers_mmlu_pro.py tfidf
    python docs/routers/classifiers_mmlu_pro.py minilm   # caches /tmp/mmlu_pro_minilm.npy

Prints one markdown row per router: test mu (mean true score of the routed LLM),
fit + score seconds, and the values picked on validation. Grids are tuned on the
validation prompts only; the test prompts are scored once.
"""
import json
import os
import sys
import time

import numpy as np

from llmrec.data.splits import cold_prompt_split
from llmrec.datasets import load
from llmrec.encoders import PrecomputedEncoder, TfidfEncoder, make_encoder
from llmrec.routers import make_router
from llmrec.routers.classifiers import validation_mu

CACHE = "/tmp/mmlu_pro_minilm.npy"


def embeddings(rec, train, name):
    if name == "tfidf":
        return TfidfEncoder().fit(train.texts).encode(rec.texts)
    ids_file = CACHE.replace(".npy", ".ids.json")
    if not os.path.exists(CACHE):
        E = make_encoder("minilm").encode(rec.texts, show_progress=True)
        np.save(CACHE, E)
        with open(ids_file, "w") as f:
            json.dump({"question_ids": [str(p) for p in rec.prompt_ids]}, f)
    E = np.load(CACHE)
    ids = json.load(open(ids_file))["question_ids"]
    pos = {q: i for i, q in enumerate(ids)}
    return E[[pos[str(p)] for p in rec.prompt_ids]]


def main(enc_name):
    rec = load("mmlu-pro")
    split = cold_prompt_split(rec, val=0.1, test=0.1, seed=42)
    train, val, test = split
    print(rec, "train/val/test:", len(split.train_idx), len(split.val_idx),
          len(split.test_idx), flush=True)
    t = time.time()
    E = embeddings(rec, train, enc_name)
    print(f"{enc_name} embeddings {E.shape} in {time.time() - t:.0f}s", flush=True)
    enc = PrecomputedEncoder.from_records_embeddings(rec, E)
    Xte, truth = E[split.test_idx], test.dense()

    def row(name, S, secs, extra=""):
        print(f"| {name} | {validation_mu(S, truth):.3f} | {secs:.1f} | {extra} |", flush=True)

    print("| router | test mu | seconds | picked on validation |\n| --- | --- | --- | --- |")
    mean_tr = np.nanmean(train.dense(), axis=0)
    row("best single LLM (train mean)", np.broadcast_to(mean_tr, truth.shape), 0.0,
        train.llm_names[int(np.nanargmax(mean_tr))])
    cats = rec.prompts["category"].astype(str).to_numpy()
    S = np.zeros_like(truth)
    for c in np.unique(cats[split.test_idx]):
        S[cats[split.test_idx] == c] = np.nanmean(train.dense()[cats[split.train_idx] == c], 0)
    row("best LLM per category (train mean)", S, 0.0)
    row("oracle", np.where(np.isnan(truth), -np.inf, truth), 0.0)
    specs = [("knn", {"k": 5}), ("knn", {"k": 100}),
             ("knn", {"k_grid": [5, 10, 25, 50, 100, 200]}),
             ("linear", {"alpha": 1.0}), ("linear", {"alpha_grid": [0.1, 1, 10, 100, 1000]}),
             ("mlp", {}),
             ("cluster", {"n_clusters": 14}),
             ("cluster", {"n_clusters_grid": [4, 8, 14, 32, 64]}),
             ("mlc", {"label_rule": "threshold"}), ("mlc", {"label_rule": "routereval95"}),
             ("mlc", {"C_grid": [0.01, 0.1, 1, 10]})]
    for name, params in specs:
        t = time.time()
        uses_val = name == "mlp" or any(k.endswith("_grid") for k in params)
        r = make_router(name, **params).fit(train, encoder=enc,
                                            val_records=val if uses_val else None)
        S = r.score(Xte)
        picked = {a: getattr(r, a) for a in ("k_", "alpha_", "n_clusters_", "C_",
                                             "best_epoch_") if hasattr(r, a)}
        if not any(k.endswith("_grid") for k in params) and name != "mlp":
            picked = {}
        row(f"`{name}` {params}", S, time.time() - t, json.dumps(picked) if picked else "")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tfidf")
