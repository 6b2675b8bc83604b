"""Load test of the HTTP service against direct in-process calls (bounded, loopback only).

Fits a router on synthetic data, serves it with ``llmrec serve`` in a subprocess on
127.0.0.1, sends ``--requests`` single-prompt ``POST /v1/recommend`` requests from
``--clients`` concurrent client threads, and reports requests/s and p50/p99 latency;
then makes the same number of direct ``router.recommend([prompt], k)`` calls in this
process (one at a time, and once as one batch) and reports the ratio. The section
between ``<!-- bench_service_load -->`` markers in ``benchmarks/RESULTS.md`` is
rewritten with the command, machine, date and numbers.

    python benchmarks/bench_service_load.py --requests 2000 --clients 16
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
START, END = "<!-- bench_service_load -->", "<!-- /bench_service_load -->"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(lat: list[float]) -> tuple[float, float]:
    a = np.asarray(lat) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--router", default="knn")
    ap.add_argument("--dim", type=int, default=64, help="TF-IDF dimension")
    ap.add_argument("--prompts", type=int, default=2000, help="synthetic training prompts")
    ap.add_argument("--llms", type=int, default=20)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--window-ms", type=float, default=5.0)
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    args = ap.parse_args(argv)
    import httpx

    from llmrec.datasets import make_synthetic
    from llmrec.encoders import TfidfEncoder
    from llmrec.routers import make_router

    rec = make_synthetic(args.prompts, args.llms, seed=0)
    texts = make_synthetic(args.requests, args.llms, seed=1).texts
    t0 = time.perf_counter()
    router = make_router(args.router).fit(rec, encoder=TfidfEncoder(dim=args.dim),
                                          show_progress=False)
    fit_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    router.save(tmp / "model")

    # ---- service
    port = _free_port()
    env = {**os.environ, "LLMREC_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "--quiet", "serve", "--model",
                             str(tmp / "model"), "--port", str(port), "--host", "127.0.0.1",
                             "--batch-window-ms", str(args.window_ms),
                             "--feedback-log", str(tmp / "fb.jsonl")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        t_start = time.time()
        while True:
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.time() - t_start > 120:
                    raise RuntimeError("server did not start: " + proc.stderr.read().decode())
                time.sleep(0.2)
        for t in texts[:20]:  # warm up
            httpx.post(url + "/v1/recommend", json={"prompts": [t], "k": args.k})
        lat: list[float] = []
        errors = [0]
        lock = threading.Lock()
        nxt = [0]

        def client():
            with httpx.Client(base_url=url, timeout=30) as c:
                while True:
                    with lock:
                        i = nxt[0]
                        nxt[0] += 1
                    if i >= args.requests:
                        return
                    t1 = time.perf_counter()
                    r = c.post("/v1/recommend", json={"prompts": [texts[i]], "k": args.k})
                    dt = time.perf_counter() - t1
                    with lock:
                        lat.append(dt)
                        if r.status_code != 200:
                            errors[0] += 1

        threads = [threading.Thread(target=client) for _ in range(args.clients)]
        t1 = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        svc_s = time.perf_counter() - t1
        metrics = httpx.get(url + "/metrics").text
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    calls = re.search(r"^llmrec_batch_calls_total (\d+)", metrics, re.M)
    calls = int(calls.group(1)) if calls else -1
    svc_rps = args.requests / svc_s
    svc_p50, svc_p99 = _pct(lat)

    # ---- in process, one prompt per call
    for t in texts[:20]:
        router.recommend([t], k=args.k)
    dl = []
    t1 = time.perf_counter()
    for t in texts:
        t2 = time.perf_counter()
        router.recommend([t], k=args.k)
        dl.append(time.perf_counter() - t2)
    direct_s = time.perf_counter() - t1
    direct_rps = args.requests / direct_s
    d_p50, d_p99 = _pct(dl)
    t1 = time.perf_counter()
    router.recommend(texts, k=args.k)
    batch_s = time.perf_counter() - t1

    envs = " ".join(f"{v}={os.environ[v]}" for v in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                    if v in os.environ)
    cmd = (envs + " python benchmarks/bench_service_load.py "
           + " ".join(argv if argv is not None else sys.argv[1:]))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    lines = [
        START,
        "## HTTP service load (`bench_service_load.py`)",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, load average at the end {load[0]:.1f} "
        "(shared machine: absolute numbers are noisy)  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Setup: router `{args.router}` with TF-IDF dim {args.dim}, fitted on synthetic "
        f"{args.prompts} prompts x {args.llms} LLMs in {fit_s:.1f} s; {args.requests} "
        f"single-prompt requests, k={args.k}, {args.clients} concurrent clients, batch window "
        f"{args.window_ms:g} ms, server and clients on 127.0.0.1.",
        "",
        "| path | requests/s | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
        f"| HTTP `POST /v1/recommend` ({args.clients} clients) | {svc_rps:.0f} | "
        f"{svc_p50:.1f} | {svc_p99:.1f} |",
        f"| in-process `router.recommend([p])`, sequential | {direct_rps:.0f} | {d_p50:.2f} | "
        f"{d_p99:.2f} |",
        f"| in-process `router.recommend(all {args.requests})`, one batch | "
        f"{args.requests / batch_s:.0f} | - | - |",
        "",
        f"Service / in-process (sequential) throughput ratio: {svc_rps / direct_rps:.2f}. "
        f"Errors: {errors[0]}. The micro-batcher served the {args.requests + 20} requests "
        f"(20 warm-up) with {calls} router calls "
        f"({(args.requests + 20) / max(calls, 1):.1f} requests per call).",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        res = HERE / "RESULTS.md"
        old = res.read_text() if res.exists() else "# Benchmark results\n"
        if START in old and END in old:
            new = old[:old.index(START)] + section + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + section + "\n"
        res.write_text(new)
    return section


if __name__ == "__main__":
    main()
