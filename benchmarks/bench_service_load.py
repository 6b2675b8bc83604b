"""Load test of the HTTP service and the proxy against their parts (bounded, loopback only).

Fits a router on synthetic data (TF-IDF), serves it with ``llmrec serve`` in a
subprocess on 127.0.0.1 (once per ``--workers`` value) and measures, in one run so
the ratios share the machine's state:

1. single-prompt ``POST /v1/recommend`` requests from ``--clients`` concurrent
   keep-alive connections: requests/s, p50 and p99 latency, errors;
2. requests carrying ``--batch-prompts`` prompts: prompts/s, against the same router
   in-process (batches of that size, and one batch of everything);
3. the proxy: one client in sequence calls a stub upstream (a minimal OpenAI-style
   server in its own process) directly, through the proxy by name (pass-through) and
   through ``llmrec-auto`` (routed); the added p50 is the proxy's overhead;
4. with ``--minilm``: a single prompt from text with the packaged MiniLM encoder,
   ``router.recommend([text])`` and one HTTP request, against the raw
   ``SentenceTransformer.encode([text])`` call (interleaved, medians).

The load generator is a small asyncio HTTP/1.1 client (pre-built requests, one
connection per client), so that the client's own cost stays far below the server's
on a 2-core machine. The section between ``<!-- bench_service_load -->`` markers in
``benchmarks/RESULTS.md`` is rewritten with the command, machine, date and numbers.

    OMP_NUM_THREADS=1 python benchmarks/bench_service_load.py \\
        --requests 4000 --clients 16 --workers 1,2 --minilm
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
START, END = "<!-- bench_service_load -->", "<!-- /bench_service_load -->"

STUB = textwrap.dedent('''
    import sys, uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    BODY = (b'{"id":"c1","object":"chat.completion","created":0,"model":"m","choices":'
            b'[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
            b'"content":"ok"}}],"usage":{"prompt_tokens":5,"completion_tokens":1,'
            b'"total_tokens":6}}')
    async def chat(request):
        await request.body()
        return Response(BODY, media_type="application/json")
    app = Starlette(routes=[Route("/{llm}/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
''')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(lat) -> tuple[float, float]:
    a = np.asarray(lat) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def _request(path: str, body: dict, headers: dict | None = None) -> bytes:
    data = json.dumps(body).encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"{head}Content-Length: {len(data)}\r\n\r\n").encode() + data


async def _client_loop(port, reqs, nxt, lat, errors):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            i = nxt[0]
            if i >= len(reqs):
                return
            nxt[0] += 1
            t0 = time.perf_counter()
            writer.write(reqs[i])
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            m = re.search(rb"(?i)content-length: *(\d+)", head)
            if m is None:
                raise RuntimeError("the load client reads Content-Length answers only")
            await reader.readexactly(int(m.group(1)))
            lat.append(time.perf_counter() - t0)
            if status != 200:
                errors[0] += 1
    finally:
        writer.close()


class _RawClient:
    """One blocking keep-alive connection sending pre-built requests (the load test's
    client, sequential): what the service adds, without an HTTP library's own cost."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, req: bytes) -> int:
        self.sock.sendall(req)
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
        while len(rest) < n:
            rest += self.sock.recv(65536)
        self.buf = rest[n:]
        return int(head[9:12])

    def close(self):
        self.sock.close()


def load(port: int, reqs: list[bytes], clients: int):
    """Send ``reqs`` over ``clients`` keep-alive connections; (latencies, errors, seconds)."""
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    lat, errors, nxt = [], [0], [0]

    async def main():
        await asyncio.gather(*[_client_loop(port, reqs, nxt, lat, errors)
                               for _ in range(clients)])

    t0 = time.perf_counter()
    runner(main())
    return lat, errors[0], time.perf_counter() - t0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants (Linux /proc)."""
    try:
        tick = os.sysconf("SC_CLK_TCK")
        total, todo = 0.0, [pid]
        while todo:
            p = todo.pop()
            f = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick
            for t in os.listdir(f"/proc/{p}/task"):
                kids = open(f"/proc/{p}/task/{t}/children").read().split()
                todo += [int(k) for k in kids]
        return total
    except (OSError, ValueError, IndexError):
        return float("nan")


def _wait_ready(url: str, proc, what: str):
    import httpx
    t0 = time.time()
    last = ""
    while True:
        try:
            r = httpx.get(url + "/health", timeout=1)
            if r.status_code == 200:
                return
            last = r.text[:1000]  # e.g. a model that fails its load probe
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.time() - t0 > 180:
            proc.kill()  # read stderr only once the process is gone: no hang on a live pipe
            raise RuntimeError(f"{what} did not start: {last} "
                               + proc.stderr.read().decode()[-2000:])
        time.sleep(0.2)


def _serve(model: Path, tmp: Path, workers: int, window_ms: float, extra=()):
    port = _free_port()
    env = {**os.environ, "LLMREC_API_KEY": ""}
    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "--quiet", "serve", "--model",
                             str(model), "--port", str(port), "--host", "127.0.0.1",
                             "--batch-window-ms", str(window_ms), "--workers", str(workers),
                             "--log-dir", str(tmp / f"logs-{port}"), *extra],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_ready(f"http://127.0.0.1:{port}", proc, "llmrec serve")
    return proc, port


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _metric(url: str, name: str) -> float:
    import httpx
    m = re.search(rf"^{name} ([0-9.e+-]+)", httpx.get(url + "/metrics").text, re.M)
    return float(m.group(1)) if m else float("nan")


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=4000, help="single-prompt requests")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--router", default="knn")
    ap.add_argument("--dim", type=int, default=64, help="TF-IDF dimension")
    ap.add_argument("--encoder", choices=("tfidf", "precomputed"), default="tfidf",
                    help="precomputed: TF-IDF vectors of every benchmark text looked up by "
                         "text (the serving path without the encoder's cost)")
    ap.add_argument("--prompts", type=int, default=2000, help="synthetic training prompts")
    ap.add_argument("--llms", type=int, default=20)
    ap.add_argument("-k", type=int, default=3)
    ap.add_argument("--window-ms", type=float, default=2.0)
    ap.add_argument("--batch-prompts", type=int, default=32)
    ap.add_argument("--proxy-requests", type=int, default=400)
    ap.add_argument("--minilm", action="store_true", help="also the MiniLM single-prompt test")
    ap.add_argument("--minilm-prompts", type=int, default=300)
    ap.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    ap.add_argument("--note", default="", help="what else ran on the machine, for the record")
    ap.add_argument("--section", default="", help="name of a RESULTS.md section of its own "
                                                  "(several configurations side by side)")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    import httpx
    start, end = START, END
    if args.section:
        start = START.replace(" -->", f":{args.section} -->")
        end = END.replace(" -->", f":{args.section} -->")

    from llmrec.datasets import make_synthetic
    from llmrec.encoders import TfidfEncoder
    from llmrec.routers import make_router

    rec = make_synthetic(args.prompts, args.llms, seed=0)
    texts = list(make_synthetic(max(args.requests, 200), args.llms, seed=1).texts)
    t0 = time.perf_counter()
    encoder = TfidfEncoder(dim=args.dim)
    if args.encoder == "precomputed":
        from llmrec.encoders import PrecomputedEncoder
        known = list(dict.fromkeys(list(rec.texts) + texts))
        encoder = PrecomputedEncoder(encoder.fit(list(rec.texts)).encode(known), texts=known)
    router = make_router(args.router).fit(rec, encoder=encoder, show_progress=False)
    fit_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    router.save(tmp / "model")
    B = args.batch_prompts
    single = [_request("/v1/recommend", {"prompts": [texts[i % len(texts)]], "k": args.k})
              for i in range(args.requests)]
    n_multi = max(args.requests // B, 4 * args.clients)
    multi = [_request("/v1/recommend", {"prompts": [texts[(i * B + j) % len(texts)]
                                                    for j in range(B)], "k": args.k})
             for i in range(n_multi)]
    rows, notes = [], []

    # ---- in process (same router, same prompts)
    for t in texts[:20]:
        router.recommend([t], k=args.k)
    dl = []
    for t in texts[:1000]:
        t2 = time.perf_counter()
        router.recommend([t], k=args.k)
        dl.append(time.perf_counter() - t2)
    d_p50, d_p99 = _pct(dl)
    seq_rps = 1.0 / np.mean(dl)
    t1, c1 = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), B):
        router.recommend(texts[i:i + B], k=args.k)
    inproc_b = len(texts) / (time.perf_counter() - t1)
    inproc_b_cpu = (time.process_time() - c1) / len(texts) * 1000
    t1 = time.perf_counter()
    router.recommend(texts, k=args.k)
    inproc_all = len(texts) / (time.perf_counter() - t1)

    # ---- HTTP, per worker count
    http = {}
    for w in [int(x) for x in args.workers.split(",") if x.strip()]:
        proc, port = _serve(tmp / "model", tmp, w, args.window_ms)
        url = f"http://127.0.0.1:{port}"
        try:
            load(port, single[:50], 4)  # warm up every worker
            c0 = _cpu_seconds(proc.pid)
            lat, err, secs = load(port, single, args.clients)
            cpu1 = (_cpu_seconds(proc.pid) - c0) / len(single) * 1000
            p50, p99 = _pct(lat)
            calls = _metric(url, "llmrec_batch_calls_total")
            reqs = _metric(url, "llmrec_batched_requests_total")
            load(port, multi[:8], 4)
            c0 = _cpu_seconds(proc.pid)
            lat_m, err_m, secs_m = load(port, multi, args.clients)
            cpu32 = (_cpu_seconds(proc.pid) - c0) / (len(multi) * B) * 1000
        finally:
            _stop(proc)
        http[w] = dict(rps=len(single) / secs, p50=p50, p99=p99, err=err,
                       per_call=reqs / calls if calls else float("nan"),
                       pps=n_multi * B / secs_m, mp50=_pct(lat_m)[0], mp99=_pct(lat_m)[1],
                       err_m=err_m, cpu1=cpu1, cpu32=cpu32)
        rows.append(f"| HTTP `POST /v1/recommend`, 1 prompt, {args.clients} clients, {w} "
                    f"worker(s) | {http[w]['rps']:.0f} req/s | {p50:.1f} | {p99:.1f} | {err} | "
                    f"{cpu1:.2f} per request |")
        rows.append(f"| HTTP `POST /v1/recommend`, {B} prompts, {args.clients} clients, {w} "
                    f"worker(s) | {http[w]['pps']:.0f} prompts/s | {http[w]['mp50']:.1f} | "
                    f"{http[w]['mp99']:.1f} | {err_m} | {cpu32:.3f} per prompt |")
        notes.append(f"{w} worker(s): {http[w]['per_call']:.1f} single-prompt requests per "
                     f"router call (worker-local counters of the worker that answered /metrics)")
    rows.append(f"| in-process `router.recommend([p])`, sequential | {seq_rps:.0f} req/s | "
                f"{d_p50:.2f} | {d_p99:.2f} | - | - |")
    rows.append(f"| in-process `router.recommend`, batches of {B} | {inproc_b:.0f} prompts/s "
                f"| - | - | - | {inproc_b_cpu:.3f} per prompt |")
    rows.append(f"| in-process `router.recommend`, one batch of {len(texts)} | "
                f"{inproc_all:.0f} prompts/s | - | - | - | - |")

    # ---- proxy overhead against a stub upstream
    stub_port = _free_port()
    (tmp / "stub.py").write_text(STUB)
    stub = subprocess.Popen([sys.executable, str(tmp / "stub.py"), str(stub_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    names = router.llm_names_
    (tmp / "upstreams.toml").write_text("".join(
        f'[llms."{n}"]\nbase_url = "http://127.0.0.1:{stub_port}/{n}/v1"\ntimeout = 10\n'
        for n in names))
    proxy_rows = []
    try:
        t_start = time.time()
        while True:
            try:
                httpx.post(f"http://127.0.0.1:{stub_port}/x/v1/chat/completions", json={})
                break
            except httpx.HTTPError:
                if stub.poll() is not None or time.time() - t_start > 60:
                    raise RuntimeError("stub did not start: " + stub.stderr.read().decode())
                time.sleep(0.2)
        proc, port = _serve(tmp / "model", tmp, 1, 0.0,  # no batch window: latency
                            ("--upstreams", str(tmp / "upstreams.toml")))
        try:
            msg = [{"role": "user", "content": texts[0]}]
            n = args.proxy_requests
            direct = [_request(f"/{names[0]}/v1/chat/completions",
                               {"model": names[0], "messages": msg})] * n
            passthru = [_request("/v1/chat/completions", {"model": names[0], "messages": msg})] * n
            routed = [_request("/v1/chat/completions",
                               {"model": "llmrec-auto",
                                "messages": [{"role": "user", "content": texts[i % len(texts)]}]})
                      for i in range(n)]
            res = {}
            for rep in range(3):  # interleaved: a load spike hits all three alike
                for name, reqs, p in (("direct", direct, stub_port), ("pass", passthru, port),
                                      ("routed", routed, port)):
                    load(p, reqs[:20], 1)
                    pid = stub.pid if name == "direct" else proc.pid
                    c0 = _cpu_seconds(pid)
                    lat, err, _ = load(p, reqs, 1)
                    res.setdefault(name, ([], [0], [0.0]))
                    res[name][0].extend(lat)
                    res[name][1][0] += err
                    res[name][2][0] += _cpu_seconds(pid) - c0
        finally:
            _stop(proc)
    finally:
        _stop(stub)
    base = _pct(res["direct"][0])[0]
    for name, label in (("direct", "stub upstream called directly"),
                        ("pass", "through the proxy, pass-through (`model` = an LLM)"),
                        ("routed", f"through the proxy, routed (`llmrec-auto`, {args.router} "
                                   "decides)")):
        p50, p99 = _pct(res[name][0])
        added = "-" if name == "direct" else f"{p50 - base:+.2f}"
        cpu = res[name][2][0] / len(res[name][0]) * 1000
        proxy_rows.append(f"| {label} | {p50:.2f} | {p99:.2f} | {added} | {res[name][1][0]} | "
                          f"{cpu:.2f} |")

    # ---- MiniLM single prompt from text
    mini_rows = []
    if args.minilm:
        from llmrec.encoders import make_encoder
        enc = make_encoder("minilm")
        small = make_synthetic(args.minilm_prompts, args.llms, seed=0)
        mrouter = make_router(args.router).fit(small, encoder=enc, show_progress=False)
        mrouter.save(tmp / "minilm")
        st = mrouter.featurizer_.encoder._load()
        probe = texts[:200]
        for t in probe[:10]:
            st.encode([t], convert_to_numpy=True, normalize_embeddings=True)
            mrouter.recommend([t], k=args.k)
        raw_l, rec_l, http_l, sock_l = [], [], [], []
        proc, port = _serve(tmp / "minilm", tmp, 1, 0.0)
        sock = None
        try:  # each prompt four ways in a row, so a load spike hits all of them alike
            sock = _RawClient(port)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                for t in probe[:10]:
                    c.post("/v1/recommend", json={"prompts": [t], "k": args.k})
                    sock.send(_request("/v1/recommend", {"prompts": [t], "k": args.k}))
                for t in probe:
                    req = _request("/v1/recommend", {"prompts": [t], "k": args.k})
                    t1 = time.perf_counter()
                    st.encode([t], convert_to_numpy=True, normalize_embeddings=True)
                    raw_l.append(time.perf_counter() - t1)
                    t1 = time.perf_counter()
                    mrouter.recommend([t], k=args.k)
                    rec_l.append(time.perf_counter() - t1)
                    t1 = time.perf_counter()
                    r = c.post("/v1/recommend", json={"prompts": [t], "k": args.k})
                    http_l.append(time.perf_counter() - t1)
                    r.raise_for_status()
                    t1 = time.perf_counter()
                    status = sock.send(req)
                    sock_l.append(time.perf_counter() - t1)
                    if status != 200:
                        raise RuntimeError(f"MiniLM request answered HTTP {status}")
        finally:
            if sock is not None:
                sock.close()
            _stop(proc)
        r50 = float(np.median(raw_l)) * 1000
        for label, lat in (("raw `SentenceTransformer.encode([text])`", raw_l),
                           ("`router.recommend([text])` in-process", rec_l),
                           ("HTTP `POST /v1/recommend` (httpx client), batch window 0",
                            http_l),
                           ("HTTP `POST /v1/recommend` (keep-alive socket client of the "
                            "load test), batch window 0", sock_l)):
            m = float(np.median(lat)) * 1000
            mini_rows.append(f"| {label} | {m:.2f} | {m / r50:.3f} |")

    envs = " ".join(f"{v}={os.environ[v]}" for v in
                    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
                    if v in os.environ)
    nice = os.nice(0) if hasattr(os, "nice") else 0
    cmd = ((f"nice -n {nice} " if nice else "") + envs + " python benchmarks/bench_service_load.py "
           + " ".join(argv if argv is not None else sys.argv[1:]))
    load_avg = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    w1 = http.get(1) or next(iter(http.values()))
    best = max(http.values(), key=lambda h: h["rps"])
    bestb = max(({**h, "workers": w} for w, h in http.items()), key=lambda h: h["pps"])
    lines = [
        start,
        "## HTTP service and proxy load (`bench_service_load.py`"
        + (f", {args.section}" if args.section else "") + ")",
        "",
        f"Command: `{cmd.strip()}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; load average {load0:.1f} at the start and "
        f"{load_avg[0]:.1f} at the end (the benchmark's own processes included)"
        + (f"; {args.note}" if args.note else "") + ". The ratios within this one run "
        "are the figures to read.  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  ",
        f"Setup: router `{args.router}` with "
        + ("TF-IDF" if args.encoder == "tfidf" else "precomputed TF-IDF")
        + f" vectors, dim {args.dim}, fitted on synthetic "
        f"{args.prompts} prompts x {args.llms} LLMs in {fit_s:.1f} s; k={args.k}; "
        f"`llmrec serve` (uvicorn, decision log on) with batch window {args.window_ms:g} ms; "
        "the asyncio keep-alive load client and the server share the 2 cores.",
        "",
        "| path | throughput | p50 ms | p99 ms | errors | server CPU ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"HTTP {B}-prompt requests reach {w1['pps'] / inproc_b:.2f}x (1 worker) and "
        f"{bestb['pps'] / inproc_b:.2f}x (best, {bestb['workers']} worker(s)) of the "
        f"in-process throughput in batches of {B} and {bestb['pps'] / inproc_all:.2f}x of "
        f"one batch of everything; per prompt, the 1-worker HTTP path costs "
        f"{w1['cpu32'] / inproc_b_cpu:.2f}x the in-process CPU time (CPU time, unlike "
        f"throughput, does not depend on the share of the cores other jobs leave); best "
        f"single-prompt rate {best['rps']:.0f} req/s. "
        + "; ".join(notes) + ".",
        "",
        f"Proxy (`--batch-window-ms 0`), one client in sequence, {args.proxy_requests} x 3 "
        "interleaved requests each (non-streaming; the stub answers at once from its own "
        "process):",
        "",
        "| path | p50 ms | p99 ms | added p50 ms | errors | CPU ms per request (stub or "
        "llmrec process) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *proxy_rows,
    ]
    if mini_rows:
        lines += ["", f"Single prompt from text with MiniLM (`{args.router}` fitted on "
                      f"{args.minilm_prompts} synthetic prompts; 200 prompts, medians, "
                      "interleaved):", "",
                  "| path | median ms | / raw encoder |", "| --- | ---: | ---: |", *mini_rows]
    lines.append(end)
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        res_p = HERE / "RESULTS.md"
        old = res_p.read_text() if res_p.exists() else "# Benchmark results\n"
        if start in old and end in old:
            new = old[:old.index(start)] + section + old[old.index(end) + len(end):]
        else:
            new = old.rstrip("\n") + "\n\n" + section + "\n"
        res_p.write_text(new)
    return section


if __name__ == "__main__":
    main()
