"""Encoder and retrieval throughput: MiniLM vs TF-IDF, FAISS vs numpy.

Encoders: the same prompts (MMLU-Pro questions with their options from
``../shared/data/mmlu_pro``, or synthetic prompts when the folder is absent) through
the TF-IDF encoder (fit time and encode throughput) and the packaged MiniLM
(load time and encode throughput).

Retrieval: :class:`llmrec.retrieval.LLMIndex` top-k over random LLM vectors (pools of
29, 1,000 and 10,000 LLMs, d=64 plus a bias column), one query at a time and a batch of
10,000 queries, FAISS (exact flat index) against the numpy path in the same run, plus
HNSW on the largest pool with its recall against the exact answer.

The results replace this benchmark's section of ``benchmarks/RESULTS.md`` (between
``<!-- bench_encoders_retrieval -->`` markers; other benchmarks keep theirs).

Run (about 2-3 minutes on 2 busy cores)::

    OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 \\
        python benchmarks/bench_encoders_retrieval.py

``--quick`` runs a tiny version (seconds) and writes nothing unless ``--out`` is given.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MARK = "bench_encoders_retrieval"


def shared_data_dir() -> Path:
    env = os.environ.get("LLMREC_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def load_prompts(n: int, seed: int = 0) -> tuple[list[str], str]:
    """``n`` MMLU-Pro prompts (a seeded sample), else synthetic ones."""
    d = shared_data_dir() / "mmlu_pro"
    if (d / "correctness_matrix.csv").is_file() and (d / "questions.jsonl").is_file():
        from llmrec.data.formats.mmlu_pro import read_mmlu_pro
        rec = read_mmlu_pro(d)
        rng = np.random.default_rng(seed)
        rows = np.sort(rng.choice(rec.n_prompts, size=min(n, rec.n_prompts), replace=False))
        texts = [rec.texts[i] for i in rows]
        return texts, f"MMLU-Pro (question + options), seeded sample of {len(texts)}"
    from llmrec.datasets import make_synthetic
    rec = make_synthetic(n, 2, seed=seed)
    return rec.texts, f"synthetic prompts ({n}; ../shared/data absent)"


def _timed(fn, *a, **k):
    t = time.perf_counter()
    out = fn(*a, **k)
    return out, time.perf_counter() - t


def bench_encoders(texts: list[str], minilm_n: int, tfidf_dim: int, tfidf_fit: int
                   ) -> list[dict]:
    from llmrec.encoders import TfidfEncoder
    rows = []
    enc, fit_s = _timed(TfidfEncoder(dim=tfidf_dim).fit, texts[:tfidf_fit])
    _, enc_s = _timed(enc.encode, texts)
    cfg = {k: v for k, v in enc.get_config().items() if k not in ("type", "random_state")}
    rows.append({"encoder": "TF-IDF (" + ", ".join(f"{k}={v}" for k, v in cfg.items()) +
                            f"; output dim {enc.dim})",
                 "prompts": len(texts),
                 "setup": f"fit on the first {min(tfidf_fit, len(texts)):,}: {fit_s:.1f} s",
                 "encode_s": enc_s,
                 "per_s": len(texts) / enc_s})
    try:
        import sentence_transformers  # noqa: F401
    except ImportError:
        rows.append({"encoder": "MiniLM", "prompts": 0, "setup": "sentence-transformers "
                     "not installed", "encode_s": float("nan"), "per_s": float("nan")})
        return rows
    from llmrec.encoders import SentenceTransformerEncoder
    import torch
    m = SentenceTransformerEncoder(batch_size=64, show_progress=False)
    _, load_s = _timed(m._load)
    sub = texts[:minilm_n]
    with warnings.catch_warnings():  # truncation is reported in the table instead
        warnings.simplefilter("ignore", UserWarning)
        m.encode(sub[:8])  # warm-up
        _, enc_s = _timed(m.encode, sub)
    rows.append({"encoder": f"MiniLM-L6-v2 (first {len(sub):,} of the same prompts; cpu, "
                            f"{torch.get_num_threads()} torch threads, "
                            f"batch 64, max 256 tokens; {m.last_truncated_} truncated)",
                 "prompts": len(sub), "setup": f"load {load_s:.1f} s", "encode_s": enc_s,
                 "per_s": len(sub) / enc_s})
    return rows


class one_thread:
    """BLAS and OpenMP (faiss) limited to one thread inside the block."""

    def __enter__(self):
        from threadpoolctl import threadpool_limits
        self._lim = threadpool_limits(1)
        try:
            import faiss
            self._faiss, self._n = faiss, faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
        except ImportError:
            self._faiss = None
        return self

    def __exit__(self, *exc):
        if self._faiss is not None:
            self._faiss.omp_set_num_threads(self._n)
        self._lim.restore_original_limits()


def _search_all(idx, Q, k, chunk):
    for s in range(0, len(Q), chunk):
        idx.search(Q[s:s + chunk], k)


def bench_retrieval(pools, d: int, k: int, n_single: int, n_batch: int, chunk: int,
                    seed: int = 0) -> list[dict]:
    from llmrec.retrieval import HAVE_FAISS, LLMIndex
    rng = np.random.default_rng(seed)
    rows = []
    Qs = rng.normal(size=(n_single, d)).astype(np.float32)
    Qb = rng.normal(size=(n_batch, d)).astype(np.float32)
    for m in pools:
        V = rng.normal(size=(m, d)).astype(np.float32)
        b = rng.normal(size=m).astype(np.float32)
        res = {}
        backends = ["numpy"] + (["faiss"] if HAVE_FAISS else [])
        for be in backends:
            idx = LLMIndex(backend=be).add(V, bias=b)
            idx.search(Qs[:2], k)  # warm-up
            _, s1 = _timed(lambda: [idx.search(q, k) for q in Qs])
            with one_thread():
                _, s1t = _timed(lambda: [idx.search(q, k) for q in Qs])
            _, sb = _timed(_search_all, idx, Qb, k, chunk)
            res[be] = (n_single / s1, n_batch / sb, n_single / s1t)
        row = {"pool": m, "numpy": res["numpy"], "faiss": res.get("faiss")}
        if HAVE_FAISS and m >= 10000:
            hn, build_s = _timed(LLMIndex(backend="faiss", kind="hnsw").add, V, bias=b)
            _, s1 = _timed(lambda: [hn.search(q, k) for q in Qs])
            _, sb = _timed(_search_all, hn, Qb, k, chunk)
            exact = LLMIndex(backend="numpy").add(V, bias=b).search(Qb[:1000], k)[0]
            approx = hn.search(Qb[:1000], k)[0]
            recall = np.mean([len(set(a) & set(e)) / k for a, e in zip(approx, exact)])
            row["hnsw"] = (n_single / s1, n_batch / sb, recall, build_s)
        rows.append(row)
    return rows


def machine() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:  # nproc honours OMP_NUM_THREADS; ask it about the machine, not the setting
        env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
        nproc = subprocess.run(["nproc"], capture_output=True, text=True,
                               env=env).stdout.strip()
    except OSError:
        nproc = str(os.cpu_count())
    try:
        load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    import faiss
    import numpy
    vers = f"python {platform.python_version()}, numpy {numpy.__version__}, " \
           f"faiss {faiss.__version__}"
    try:
        import torch
        import sentence_transformers
        vers += f", torch {torch.__version__}, sentence-transformers " \
                f"{sentence_transformers.__version__}"
    except ImportError:
        pass
    threads = ", ".join(f"{v}={os.environ.get(v, 'unset')}" for v in
                        ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"))
    return {"cpu": cpu, "nproc": nproc, "load": load, "versions": vers, "threads": threads}


def render(args, source, enc_rows, ret_rows, mach, wall_s) -> str:
    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = ("OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 MKL_NUM_THREADS=2 "
           "python benchmarks/bench_encoders_retrieval.py " + " ".join(args.argv)).strip()
    L = [f"<!-- {MARK} -->", "## Encoders and retrieval (`bench_encoders_retrieval.py`)", "",
         f"Command: `{cmd}`  ",
         f"Machine: `nproc`={mach['nproc']}, {mach['cpu']}; {mach['threads']}; "
         f"load average at start {mach['load']} (a shared box: other jobs were running).  ",
         f"Versions: {mach['versions']}.  ",
         f"Date: {date}; whole run {wall_s:.0f} s.", "",
         f"### Encoders ({source})", "",
         "| encoder | prompts | setup | encode (s) | prompts/s |",
         "| --- | ---: | --- | ---: | ---: |"]
    for r in enc_rows:
        L.append(f"| {r['encoder']} | {r['prompts']:,} | {r['setup']} | {r['encode_s']:.2f} | "
                 f"{r['per_s']:,.0f} |")
    if len(enc_rows) == 2 and np.isfinite(enc_rows[1]["per_s"]):
        L += ["", f"TF-IDF encodes {enc_rows[0]['per_s'] / enc_rows[1]['per_s']:,.0f}x as many "
              "prompts per second as MiniLM here (after its fit)."]
    L += ["", f"### Retrieval (top-{args.k}, d={args.dim} + bias column, exact flat index)", "",
          f"Single: {args.single:,} queries one at a time. Batch: {args.batch:,} queries, "
          f"searched in chunks of {args.chunk:,} (bounds numpy's score matrix).", "",
          "Single queries are timed twice: with the threads set above and with BLAS and "
          "faiss held to one thread (threadpoolctl + `faiss.omp_set_num_threads(1)`).", "",
          "| LLMs | numpy single q/s | faiss single q/s | faiss/numpy | "
          "numpy single, 1 thread | faiss single, 1 thread | faiss/numpy | "
          "numpy batch q/s | faiss batch q/s | faiss/numpy |",
          "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in ret_rows:
        n1, nb, n1t = r["numpy"]
        if r["faiss"] is None:
            L.append(f"| {r['pool']:,} | {n1:,.0f} | - | - | {n1t:,.0f} | - | - | "
                     f"{nb:,.0f} | - | - |")
            continue
        f1, fb, f1t = r["faiss"]
        L.append(f"| {r['pool']:,} | {n1:,.0f} | {f1:,.0f} | {f1 / n1:.2f} | {n1t:,.0f} | "
                 f"{f1t:,.0f} | {f1t / n1t:.2f} | {nb:,.0f} | {fb:,.0f} | {fb / nb:.2f} |")
    for r in ret_rows:
        if "hnsw" in r:
            h1, hb, rec, bs = r["hnsw"]
            L += ["", f"HNSW (M=32) on {r['pool']:,} LLMs: build {bs:.2f} s, single "
                  f"{h1:,.0f} q/s, batch {hb:,.0f} q/s, recall@{args.k} {rec:.3f} against the "
                  "exact answer (1,000 queries)."]
    L += ["", "The FAISS path re-scores its candidates exactly and falls back to numpy on "
          "rows with a tie at the cut, so both paths return identical rankings "
          "(tests/test_retrieval.py).", f"<!-- /{MARK} -->"]
    return "\n".join(L) + "\n"


def write_section(path: Path, section: str) -> None:
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    start, end = f"<!-- {MARK} -->", f"<!-- /{MARK} -->"
    if start in old and end in old:
        a = old.index(start)
        b = old.index(end) + len(end)
        new = old[:a] + section.rstrip("\n") + old[b:]
    else:
        new = old.rstrip("\n") + "\n\n" + section
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(new)
    os.replace(tmp, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", type=int, default=2000, help="prompts for TF-IDF")
    p.add_argument("--tfidf-fit", type=int, default=500,
                   help="prompts TF-IDF is fitted on (the first of the sample)")
    p.add_argument("--minilm-prompts", type=int, default=100,
                   help="prompts for MiniLM (the first of the same sample)")
    p.add_argument("--tfidf-dim", type=int, default=256)
    p.add_argument("--pools", type=int, nargs="+", default=[29, 1000, 10000])
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--single", type=int, default=300, help="queries sent one at a time")
    p.add_argument("--batch", type=int, default=10000, help="queries in the batch run")
    p.add_argument("--chunk", type=int, default=2500)
    p.add_argument("--quick", action="store_true", help="tiny run; writes only with --out")
    p.add_argument("--out", type=Path, default=None,
                   help="results file (default benchmarks/RESULTS.md; none with --quick)")
    p.add_argument("--no-encoders", action="store_true")
    args = p.parse_args(argv)
    args.argv = argv
    if args.quick:
        args.prompts, args.minilm_prompts, args.tfidf_dim, args.tfidf_fit = 60, 30, 16, 60
        args.pools, args.single, args.batch, args.chunk = [29, 1000], 50, 500, 250
    out = args.out if args.out is not None else (None if args.quick else
                                                 REPO / "benchmarks" / "RESULTS.md")
    mach = machine()
    t0 = time.perf_counter()
    texts, source = load_prompts(max(args.prompts, args.minilm_prompts))
    enc_rows = [] if args.no_encoders else bench_encoders(texts[:args.prompts],
                                                          args.minilm_prompts, args.tfidf_dim,
                                                          args.tfidf_fit)
    for r in enc_rows:
        print(f"{r['encoder']}: {r['prompts']} prompts, {r['setup']}, "
              f"{r['per_s']:,.0f} prompts/s", flush=True)
    ret_rows = bench_retrieval(args.pools, args.dim, args.k, args.single, args.batch,
                               args.chunk)
    section = render(args, source, enc_rows, ret_rows, mach, time.perf_counter() - t0)
    print(section)
    if out is not None:
        write_section(out, section)
        print(f"wrote the {MARK} section of {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
