"""RouterEval-scale benchmark: fit every router at S, M and L and record the cost.

Sizes (synthetic, dense, ``make_synthetic(n, m, n_topics=16, seed=0)``; binary by
default, ``--graded`` for scores in [0, 1]):

* S: 5,000 prompts x 500 LLMs (2.5M records)
* M: 20,000 x 2,000 (40M)
* L: 40,000 x 8,500 (340M, RouterEval's own scale)

Prompt features are 384-d precomputed vectors (a topic embedding plus noise, the
shape of MiniLM output), served by :class:`~llmrec.encoders.PrecomputedEncoder`,
so the numbers measure the routers, not an encoder. The last 2,000 prompts are
held out; the rest train. Every fit runs in a fresh process (its peak memory is
its own): fit wall time and CPU time, peak RSS of the process (records included),
batched top-3 recommend throughput on the 2,000 held-out prompts, and the routed
mu (mean true score of the top-1). A fit is stopped at ``--timeout`` seconds or
when the process grows past ``--max-rss-gib``; that is recorded, not hidden.

Results are appended to ``--jsonl`` (one line per fit; a later run of the same
router, size and score kind replaces the earlier one in the table) and the
section between ``<!-- bench_scale -->`` markers of ``benchmarks/RESULTS.md`` is
rewritten from it: a table per size, the growth exponent of fit time in the number
of records (least squares on log time vs log cells over the sizes measured), and,
with ``--curve``, RouterEval's model-level scaling curve at the largest size: mu
of each router's top-1 on random candidate pools of 3 ... all LLMs.

Usage (one fit at a time, two BLAS threads)::

    OMP_NUM_THREADS=2 python benchmarks/bench_scale.py --sizes S,M
    OMP_NUM_THREADS=2 python benchmarks/bench_scale.py --sizes L \\
        --routers knn,linear --curve
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from _results import replace_section  # benchmarks/ is this script's folder

import numpy as np

SIZES = {"S": (5_000, 500), "M": (20_000, 2_000), "L": (40_000, 8_500)}
N_TEST = 2_000
DIM = 384
ALL_ROUTERS = ["best-single", "random", "oracle", "oracle-mix", "knn", "linear", "cluster",
               "mlc", "mlp", "als", "bpr", "lightfm", "textmf", "twotower"]
POOLS = [3, 10, 30, 100, 300, 1_000, 3_000, 8_500]
HERE = Path(__file__).resolve().parent
MARK_A, MARK_B = "<!-- bench_scale -->", "<!-- /bench_scale -->"


def _rss_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# ------------------------------------------------------------------ data
def make_data(size: str, graded: bool, workdir: Path) -> Path:
    """Generate a size once and store its arrays (CSR, tables, features) in workdir."""
    d = workdir / f"{size}{'-graded' if graded else ''}"
    if (d / "done").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    from llmrec.data.synthetic import make_synthetic
    n, m = SIZES[size]
    t0 = time.perf_counter()
    rec = make_synthetic(n, m, n_topics=16, seed=0, binary=not graded)
    gen_s = time.perf_counter() - t0
    np.save(d / "data.npy", rec.scores.data)
    np.save(d / "indices.npy", rec.scores.indices)
    np.save(d / "indptr.npy", rec.scores.indptr)
    prompts = rec.prompts.copy()
    prompts["text"] = prompts["prompt_id"]  # features are looked up by id
    prompts.to_parquet(d / "prompts.parquet", index=False)
    rec.llms.to_parquet(d / "llms.parquet", index=False)
    rng = np.random.default_rng(1)
    topics = sorted(prompts["benchmark"].unique())
    E = rng.standard_normal((len(topics), DIM)).astype(np.float32)
    t = prompts["benchmark"].map({b: i for i, b in enumerate(topics)}).to_numpy()
    X = E[t] + 0.8 * rng.standard_normal((n, DIM)).astype(np.float32)
    X += 0.3 * prompts["difficulty"].to_numpy(np.float32)[:, None] * E[0][None, :]
    np.save(d / "features.npy", X.astype(np.float32))
    (d / "done").write_text(json.dumps({"generate_s": round(gen_s, 1)}))
    return d


def load_split(d: Path):
    """(train records, test records, train ids, features) without copying the matrix."""
    import pandas as pd
    import scipy.sparse as sp
    from llmrec.data import PerformanceRecords
    data, indices = np.load(d / "data.npy"), np.load(d / "indices.npy")
    indptr = np.load(d / "indptr.npy")
    prompts = pd.read_parquet(d / "prompts.parquet")
    llms = pd.read_parquet(d / "llms.parquet")
    X = np.load(d / "features.npy")
    n, m = len(prompts), len(llms)
    nt = n - N_TEST
    cut = int(indptr[nt])
    train_m = sp.csr_matrix((data[:cut], indices[:cut], indptr[:nt + 1]), shape=(nt, m),
                            copy=False)
    train_m.has_canonical_format = True
    test_m = sp.csr_matrix((data[cut:].copy(), indices[cut:].copy(), indptr[nt:] - indptr[nt]),
                           shape=(n - nt, m))
    train = PerformanceRecords(train_m, prompts.iloc[:nt], llms, score_range=(0.0, 1.0),
                               name="scale-train")
    test = PerformanceRecords(test_m, prompts.iloc[nt:], llms, score_range=(0.0, 1.0),
                              name="scale-test")
    return train, test, X


# ----------------------------------------------------------------- child
def run_one(router_name: str, size: str, graded: bool, workdir: Path, curve: bool) -> dict:
    from llmrec.encoders import PrecomputedEncoder
    from llmrec.routers import make_router
    d = make_data(size, graded, workdir)
    t0 = time.perf_counter()
    train, test, X = load_split(d)
    load_s = time.perf_counter() - t0
    rec_mib = (train.scores.data.nbytes + train.scores.indices.nbytes
               + train.scores.indptr.nbytes) / 2**20
    rss_loaded = _rss_mib(os.getpid())
    enc = PrecomputedEncoder(X, ids=list(train.prompt_ids) + list(test.prompt_ids), key="id")
    router = make_router(router_name)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    router.fit(train, encoder=enc if router.needs_text else None, show_progress=False)
    fit_s = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    Xt = X[train.n_prompts:]
    if router.needs_truth:  # oracles read the truth of the held-out records
        query, warm = test, test.select_prompts(np.arange(10))
    else:  # everything else gets the 2-D feature array
        query, warm = Xt, Xt[:10]
    router.recommend_ids(warm, k=3)  # warm-up: lazy imports, index build
    c0, t0 = time.process_time(), time.perf_counter()
    ids, _ = router.recommend_ids(query, k=3)
    rec_s, rec_cpu = time.perf_counter() - t0, time.process_time() - c0
    truth = test.dense()
    rows = np.arange(len(ids))
    mu = float(np.nanmean(truth[rows, ids[:, 0]]))
    out = {"router": router_name, "size": size, "kind": "graded" if graded else "binary",
           "prompts": train.n_prompts, "llms": train.n_llms, "cells": train.n_observed,
           "status": "ok", "fit_s": round(fit_s, 2), "fit_cpu_s": round(cpu_s, 2),
           "load_s": round(load_s, 2), "records_mib": round(rec_mib, 1),
           "rss_after_load_mib": round(rss_loaded, 1),
           "recommend_per_s": round(len(ids) / max(rec_s, 1e-9), 1),
           "recommend_per_cpu_s": round(len(ids) / max(rec_cpu, 1e-9), 1), "mu": round(mu, 4)}
    if curve:
        out["curve"] = pool_curve(router, train, test, Xt, query)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def pool_curve(router, train, test, Xt, query) -> list[dict]:
    """mu of the router's top-1 on 5 random candidate pools per pool size."""
    truth = test.dense()
    train_mean = train.llm_summary()["mean_score"].to_numpy()
    rng = np.random.default_rng(0)
    m = train.n_llms
    rows = np.arange(truth.shape[0])
    out = []
    for size in [p for p in POOLS if p < m] + [m]:
        mus, orc, best = [], [], []
        for _ in range(5 if size < m else 1):
            pool = np.sort(rng.choice(m, size=size, replace=False))
            ids, _ = router.recommend_ids(query, k=1, candidates=pool)
            mus.append(np.nanmean(truth[rows, ids[:, 0]]))
            orc.append(np.nanmean(np.nanmax(truth[:, pool], axis=1)))
            best.append(np.nanmean(truth[:, pool[np.argmax(train_mean[pool])]]))
        out.append({"pool": int(size), "mu": round(float(np.mean(mus)), 4),
                    "mu_sd": round(float(np.std(mus)), 4),
                    "oracle": round(float(np.mean(orc)), 4),
                    "best_single": round(float(np.mean(best)), 4)})
    return out


# ---------------------------------------------------------------- parent
def supervise(cmd: list[str], timeout: float, max_rss_mib: float) -> tuple[str, str, float]:
    """Run a child; stop it past the time or memory limit. (status, stdout, peak MiB)."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, peak = time.time(), 0.0
    status = "ok"
    while p.poll() is None:
        rss = _rss_mib(p.pid)
        peak = max(peak, rss)
        if rss > max_rss_mib:
            status = f"stopped: RSS {rss / 1024:.1f} GiB > {max_rss_mib / 1024:.1f} GiB limit"
        elif time.time() - t0 > timeout:
            status = (f"stopped: > {timeout:.0f} s wall ({_cpu_s(p.pid):.0f} s CPU, data "
                      "loading included)")
        if status != "ok":
            p.kill()
            break
        time.sleep(0.25)
    out, err = p.communicate()
    if status == "ok" and p.returncode != 0:
        status = "error: " + (err.strip().splitlines() or ["exit %d" % p.returncode])[-1][:200]
    return status, out, peak


def growth_exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(time) on log(cells)."""
    if len(points) < 2:
        return None
    x = np.log([c for c, _ in points])
    y = np.log([max(t, 1e-3) for _, t in points])
    return float(np.polyfit(x, y, 1)[0])


def render(rows: list[dict], meta: dict) -> str:
    latest: dict[tuple, dict] = {}
    with_curve: dict[tuple, dict] = {}
    for r in rows:
        if r.get("curve"):
            with_curve[(r["router"], r["size"], r["kind"])] = r
        if not r.get("curve_only"):  # curve-only rows ran beside other jobs: no timings
            latest[(r["router"], r["size"], r["kind"])] = r
    lines = [MARK_A, "## RouterEval scale: every router at S, M, L (`bench_scale.py`)", "",
             f"Command: `{meta['command']}` (one fresh process per fit; data: "
             "`make_synthetic(n, m, n_topics=16, seed=0)`, dense, 384-d precomputed "
             f"features, last {N_TEST:,} prompts held out, default router settings, top-3 "
             "batched recommend).  ",
             f"Machine: {meta['machine']}  ",
             f"Date: {meta['date']}.  ",
             "Columns: fit wall time (CPU time in brackets: the box is shared, so wall time "
             "is noisier), peak RSS of the whole process including the records, records = "
             "the training CSR (float32 values + int32 columns; the observed mask is its "
             "structure and costs nothing more), recommend = held-out prompts per second, "
             "mu = mean true score of the top-1. A stopped fit says why.", ""]
    # the conditions each shown row ran under: its own --note; a row stored without one
    # says only when it ran (the note of a later render does not describe it)
    notes: dict[str, list[str]] = {}
    for (rn, size, kind), r in latest.items():
        note = r.get("note") or (f"measured {r['date'][:10]}, conditions not recorded"
                                 if r.get("date") else "")
        notes.setdefault(note, []).append(
            f"{rn} {size}{'' if kind == 'binary' else ' ' + kind}")
    if any(notes):
        lines += ["Conditions of the rows shown:", ""]
        lines += [f"- {', '.join(which)}: {note}" for note, which in notes.items() if note]
        lines += [""]
    kinds = sorted({k for (_, _, k) in latest})
    for kind in kinds:
        for size in SIZES:
            sel = [r for (rn, s, k), r in latest.items() if s == size and k == kind]
            if not sel:
                continue
            n, m = SIZES[size]
            lines += [f"### {size}: {n - N_TEST:,} x {m:,} training records, {kind}", "",
                      "| router | fit s (CPU s) | peak GiB | records GiB | recommend /s (per CPU s) "
                      "| mu | status |", "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
            order = {r: i for i, r in enumerate(ALL_ROUTERS)}
            for r in sorted(sel, key=lambda r: order.get(r["router"], 99)):
                if r["status"] == "ok":
                    lines.append(
                        f"| {r['router']} | {r['fit_s']:,.1f} ({r['fit_cpu_s']:,.1f}) | "
                        f"{r['peak_rss_mib'] / 1024:.2f} | {r['records_mib'] / 1024:.2f} | "
                        f"{r['recommend_per_s']:,.0f} ({r.get('recommend_per_cpu_s', 0):,.0f}) | "
                        f"{r['mu']:.4f} | ok |")
                else:
                    pk = r.get("peak_rss_mib")
                    lines.append(f"| {r['router']} | - | "
                                 f"{'-' if pk is None else f'{pk / 1024:.2f}'} | - | - | - | "
                                 f"{r['status']} |")
            lines.append("")
        lines += [f"### Growth of fit time with the number of records ({kind})", "",
                  "Exponent a in fit time ~ cells^a, least squares over the sizes that "
                  "finished in at least 0.5 s of CPU (CPU time, the less noisy clock).", "",
                  "| router | sizes | exponent a |", "| --- | --- | ---: |"]
        for rn in ALL_ROUTERS:
            ok = [(s, r) for (n_, s, k), r in latest.items()
                  if n_ == rn and k == kind and r["status"] == "ok"
                  and r["fit_cpu_s"] >= 0.5]  # shorter fits are too fast to time
            pts = [(r["cells"], r["fit_cpu_s"]) for _, r in ok]
            sizes = [s for s, _ in ok]
            a = growth_exponent(sorted(pts))
            if pts:
                lines.append(f"| {rn} | {','.join(sizes)} | "
                             f"{'-' if a is None else f'{a:.2f}'} |")
        lines.append("")
        curves = [r for r in with_curve.values() if r["kind"] == kind]
        if curves:
            big = max(curves, key=lambda r: r["llms"])["size"]
            curves = [r for r in curves if r["size"] == big]
            pools = [c["pool"] for c in curves[0]["curve"]]
            lines += [f"### Model-level scaling curve at {big} ({kind})", "",
                      "mu of the top-1 on random candidate pools (5 pools per size, the "
                      "full pool once), as RouterEval plots it; oracle and best-single "
                      "(best training mean in the pool) bound it.", "",
                      "| router | " + " | ".join(f"{p:,}" for p in pools) + " |",
                      "| --- | " + " | ".join("---:" for _ in pools) + " |"]
            ref = curves[0]["curve"]
            lines.append("| oracle | " + " | ".join(f"{c['oracle']:.3f}" for c in ref) + " |")
            lines.append("| best-single (train mean) | "
                         + " | ".join(f"{c['best_single']:.3f}" for c in ref) + " |")
            for r in sorted(curves, key=lambda r: ALL_ROUTERS.index(r["router"])
                            if r["router"] in ALL_ROUTERS else 99):
                lines.append(f"| {r['router']} | "
                             + " | ".join(f"{c['mu']:.3f}" for c in r["curve"]) + " |")
            lines.append("")
    lines.append(MARK_B)
    return "\n".join(lines)


def write_results(text: str, path: Path) -> None:
    replace_section(path, MARK_A, MARK_B, text)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="S,M,L", help="comma-separated subset of S,M,L")
    ap.add_argument("--routers", default="all", help="comma-separated router names, or all")
    ap.add_argument("--graded", action="store_true", help="graded scores instead of 0/1")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per fit")
    ap.add_argument("--max-rss-gib", type=float, default=10.0, help="memory limit per fit")
    ap.add_argument("--curve", action="store_true",
                    help="also the mu vs pool-size curve (largest size)")
    ap.add_argument("--workdir", default="/tmp/llmrec_bench_scale",
                    help="where generated data is kept between runs")
    ap.add_argument("--jsonl", default=str(HERE / "bench_scale.jsonl"),
                    help="raw results, one JSON line per fit (the table is built from it)")
    ap.add_argument("--results", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--note", default="", help="how and where the rows were measured (stored "
                    "with each row; with --render: the conditions of rows that have none)")
    ap.add_argument("--render", action="store_true",
                    help="only rewrite the RESULTS.md section from --jsonl")
    ap.add_argument("--curve-only", action="store_true",
                    help="run for the scaling curve only: the rows' timings are not shown "
                         "(for runs beside other jobs)")
    ap.add_argument("--one", nargs=2, metavar=("ROUTER", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    workdir = Path(args.workdir)
    if args.one:
        res = run_one(args.one[0], args.one[1], args.graded, workdir, args.curve)
        print("RESULT " + json.dumps(res))
        return 0
    routers = ALL_ROUTERS if args.routers == "all" else args.routers.split(",")
    sizes = args.sizes.split(",")
    jsonl = Path(args.jsonl)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    for size in ([] if args.render else sizes):
        make_data(size, args.graded, workdir)
        for rn in routers:
            cmd = [sys.executable, __file__, "--one", rn, size, "--workdir", str(workdir)]
            cmd += ["--graded"] if args.graded else []
            curve = (args.curve or args.curve_only) and size == sizes[-1]
            cmd += ["--curve"] if curve else []
            status, out, peak = supervise(cmd, args.timeout, args.max_rss_gib * 1024)
            res = None
            for line in out.splitlines():
                if line.startswith("RESULT "):
                    res = json.loads(line[7:])
            if res is None:
                n, m = SIZES[size]
                res = {"router": rn, "size": size, "kind": "graded" if args.graded else "binary",
                       "prompts": n - N_TEST, "llms": m, "cells": (n - N_TEST) * m,
                       "status": status, "peak_rss_mib": round(peak, 1)}
            res["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            if args.note:
                res["note"] = args.note
            if args.curve_only:
                res["curve_only"] = True
            print(json.dumps({k: v for k, v in res.items() if k != "curve"}), flush=True)
            with open(jsonl, "a") as f:
                f.write(json.dumps(res) + "\n")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    meta = {"command": "OMP_NUM_THREADS=2 python benchmarks/bench_scale.py --sizes SIZE "
                       "--routers ROUTERS --timeout T --max-rss-gib G` (one size and a few "
                       "routers per command; every row's own date, limits and figures are in "
                       "`benchmarks/bench_scale.jsonl`, and `--render` rebuilds this section "
                       "from it",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                       f"{platform.python_version()}",
            "date": time.strftime("%Y-%m-%d", time.gmtime())}
    write_results(render(rows, meta), Path(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
