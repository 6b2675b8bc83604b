"""Fault injection against saves, reloads, feedback writes and the service (issue 13).

Used in its fast form by ``tests/test_faults.py`` (few iterations, fixed seed) and in
its long form by ``benchmarks/bench_faults.py``. Every trial returns counts; the ones
that must stay 0 are ``lost`` (acknowledged records missing from the log),
``unloadable`` (a kill left no loadable model at the target) and ``good_failed``
(a valid request that did not get 200).
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.update(extra or {})
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------- server
@contextmanager
def llmrec_serve(model: Path, log: Path | None = None, extra_args=(), env=None,
                 timeout: float = 60.0):
    """Run ``llmrec serve`` in a subprocess on 127.0.0.1; yield (process, base url)."""
    import httpx
    port = free_port()
    args = [sys.executable, "-m", "llmrec", "--quiet", "serve", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), *extra_args]
    if log is not None:
        args += ["--feedback-log", str(log)]
    proc = subprocess.Popen(args, env=_env(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    t0 = time.time()
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llmrec serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > timeout:
                raise RuntimeError("llmrec serve did not start")
            time.sleep(0.1)
        yield proc, url
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.stderr.close()


# ------------------------------------------------------------------------ saves
_SAVER = """
import sys
from llmrec.routers import load_router
a, b = load_router(sys.argv[1]), load_router(sys.argv[2])
target = sys.argv[3]
print("ready", flush=True)
while True:
    a.save(target)
    b.save(target)
"""


def save_kill_trial(src_a: Path, src_b: Path, target: Path, rng: random.Random,
                    exchange: bool = True, max_delay: float = 0.5) -> dict:
    """Kill -9 a process that saves two models over ``target`` in a loop, at a random
    instant; then ``target`` must load as one of the two, and no leftovers remain."""
    from llmrec._atomic import leftovers
    from llmrec.routers import load_router
    names = {load_router(src_a).name, load_router(src_b).name}
    if not target.exists():
        load_router(src_a).save(target)
    env = {} if exchange else {"LLMREC_NO_RENAME_EXCHANGE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(src_a), str(src_b),
                             str(target)], env=_env(env), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    try:
        proc.stdout.readline()  # "ready"
        time.sleep(rng.uniform(0.0, max_delay))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    left_before = len(leftovers(target))
    try:
        ok = load_router(target).name in names
    except Exception:  # noqa: BLE001 - counted, never raised
        ok = False
    return {"unloadable": int(not ok), "leftovers_seen": left_before,
            "leftovers_after_load": len(leftovers(target))}


# --------------------------------------------------------------------- feedback
def _wait_for(cond, timeout: float = 30.0) -> None:
    t0 = time.time()
    while not cond() and time.time() - t0 < timeout:
        time.sleep(0.02)


def _feedback_clients(url: str, stop: threading.Event, acked: list, n_threads: int,
                      seed: int, llms: list[str]):
    import httpx

    def client(j):
        r = random.Random(seed * 1000 + j)
        with httpx.Client(base_url=url, timeout=10) as c:
            while not stop.is_set():
                recs = [{"prompt": f"prompt {r.randrange(50)}", "llm": r.choice(llms),
                         "score": float(r.random() < 0.5), "record_id": uuid.uuid4().hex}
                        for _ in range(r.randint(1, 3))]
                try:
                    resp = c.post("/v1/feedback", json={"feedback": recs})
                except httpx.HTTPError:
                    continue
                if resp.status_code == 200:
                    acked.extend(x["record_id"] for x in recs)

    threads = [threading.Thread(target=client, args=(j,), daemon=True) for j in range(n_threads)]
    for t in threads:
        t.start()
    return threads


def read_log_ids(log: Path) -> tuple[list, bool]:
    """(record ids in the log, every line parses and the reader accepts it)."""
    from llmrec.service.feedback import read_feedback_log
    ids, ok = [], True
    raw = log.read_bytes() if log.exists() else b""
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if not line:
            continue
        try:
            ids.append(json.loads(line)["record_id"])
        except (ValueError, KeyError):
            if i != len(lines) - 1:  # only a torn tail may not parse
                ok = False
    try:
        if ids:
            read_feedback_log(log)
    except Exception:  # noqa: BLE001
        ok = False
    return ids, ok


def feedback_kill_trial(model: Path, log: Path, rng: random.Random, n_threads: int = 4,
                        max_delay: float = 1.5) -> dict:
    """Kill -9 the server while clients write feedback; restart it and write more; every
    acknowledged record must be in the log once, and the log must read."""
    from llmrec.routers import load_router
    llms = load_router(model).llm_names_
    acked: list = []
    with llmrec_serve(model, log) as (proc, url):
        stop = threading.Event()
        threads = _feedback_clients(url, stop, acked, n_threads, rng.randrange(10**6), llms)
        _wait_for(lambda: len(acked) > 0)  # writes are flowing: now kill at a random instant
        time.sleep(rng.uniform(0.0, max_delay))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        stop.set()
        for t in threads:
            t.join(15)
    n_before = len(acked)
    with llmrec_serve(model, log) as (proc, url):  # restart: repair, then append
        stop = threading.Event()
        threads = _feedback_clients(url, stop, acked, 2, rng.randrange(10**6), llms)
        _wait_for(lambda: len(acked) > n_before)  # the restarted server acknowledges
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join(15)
    ids, readable = read_log_ids(log)
    present = set(ids)
    return {"acked": len(acked), "acked_before_kill": n_before,
            "lost": sum(1 for x in acked if x not in present),
            "duplicated": len(ids) - len(present), "unreadable": int(not readable)}


# ----------------------------------------------------------------------- reload
def reload_kill_trial(src_a: Path, src_b: Path, root: Path, rng: random.Random,
                      seconds: float = 2.0, kill_server: bool = True) -> dict:
    """While a saver process rewrites ``root/m`` (and is killed at a random instant),
    clients send recommend requests and an admin reloads ``m`` over and over; then the
    server itself is killed -9 in the middle of the reloads and restarted.

    Good requests must never fail; a reload either swaps in a complete model (200)
    or keeps the old one (422), never 5xx; after the restart the model serves.
    """
    import httpx
    from llmrec.routers import load_router
    target = root / "m"
    if not target.exists():
        load_router(src_a).save(target)
    counts = {"good": 0, "good_failed": 0, "reload_ok": 0, "reload_kept_old": 0,
              "reload_5xx": 0, "unloadable": 0}
    env = {"LLMREC_ADMIN_KEY": "adm"}
    with llmrec_serve(target, root / "fb.jsonl", ["--models-root", str(root)], env=env) \
            as (proc, url):
        saver = subprocess.Popen([sys.executable, "-c", _SAVER, str(src_a), str(src_b),
                                  str(target)], env=_env(), stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL)
        saver.stdout.readline()
        stop = threading.Event()
        lock = threading.Lock()

        def good_client():
            with httpx.Client(base_url=url, timeout=20) as c:
                while not stop.is_set():
                    try:
                        ok = c.post("/v1/recommend", json={"prompts": ["q"], "k": 2}
                                    ).status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    with lock:
                        counts["good"] += 1
                        counts["good_failed"] += int(not ok)

        def admin():
            with httpx.Client(base_url=url, timeout=30, headers={"X-Admin-Key": "adm"}) as c:
                while not stop.is_set():
                    try:
                        code = c.post("/v1/admin/reload", json={"model_dir": "m"}).status_code
                    except httpx.HTTPError:
                        code = 599
                    with lock:
                        key = ("reload_ok" if code == 200 else "reload_kept_old"
                               if 400 <= code < 500 else "reload_5xx")
                        counts[key] += 1

        threads = [threading.Thread(target=good_client) for _ in range(3)]
        threads.append(threading.Thread(target=admin))
        for t in threads:
            t.start()
        _wait_for(lambda: counts["reload_ok"] > 0 and counts["good"] > 0)
        time.sleep(rng.uniform(0.0, seconds))
        saver.send_signal(signal.SIGKILL)
        saver.wait()
        saver.stdout.close()
        time.sleep(rng.uniform(0.1, seconds / 2))
        stop.set()
        for t in threads:
            t.join(30)
        if kill_server:  # kill -9 in the middle of a reload
            def one_reload():
                try:
                    httpx.post(url + "/v1/admin/reload", json={"model_dir": "m"},
                               headers={"X-Admin-Key": "adm"}, timeout=5)
                except httpx.HTTPError:
                    pass
            t = threading.Thread(target=one_reload)
            t.start()
            time.sleep(rng.uniform(0.0, 0.05))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            t.join(10)
    try:
        with llmrec_serve(target, root / "fb.jsonl", ["--models-root", str(root)],
                          env=env) as (proc, url):
            r = httpx.post(url + "/v1/recommend", json={"prompts": ["q"], "k": 2}, timeout=20)
            counts["good"] += 1
            counts["good_failed"] += int(r.status_code != 200)
    except RuntimeError:  # the server cannot start: the model at the target is broken
        counts["unloadable"] += 1
    return counts


# -------------------------------------------------------------------- full disk
def full_disk_patched_trial(log_path: Path, rng: random.Random, n_appends: int = 200,
                            fail_rate: float = 0.2) -> dict:
    """Appends from threads while ``os.write`` fails at random with ENOSPC after writing
    part of its buffer (a disk filling up); acknowledged records must all be in the log,
    refused ones must not, and the log must read."""
    import llmrec.service.feedback as fb
    from concurrent.futures import ThreadPoolExecutor
    real_write = os.write
    lock = threading.Lock()

    def flaky_write(fd, data):
        with lock:
            fail = rng.random() < fail_rate
            cut = rng.randrange(0, max(1, len(data)))
        if fail:
            if cut:
                real_write(fd, bytes(data[:cut]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    log = fb.FeedbackLog(log_path)
    acked, refused = [], []
    fb.os.write = flaky_write
    try:
        def one(i):
            rid = f"r{i}"
            try:
                log.append([{"text": f"p{i % 7}", "llm": "m", "score": 1.0, "record_id": rid}])
                return rid, True
            except OSError:
                return rid, False

        with ThreadPoolExecutor(8) as ex:
            for rid, ok in ex.map(one, range(n_appends)):
                (acked if ok else refused).append(rid)
    finally:
        fb.os.write = real_write
        log.close()
    ids, readable = read_log_ids(log_path)
    present = set(ids)
    return {"acked": len(acked), "refused": len(refused),
            "lost": sum(1 for x in acked if x not in present),
            "refused_but_present": sum(1 for x in refused if x in present),
            "unreadable": int(not readable)}


def tmpfs_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0


def full_disk_tmpfs_trial(mount_dir: Path, size_kib: int = 64, n_threads: int = 4) -> dict:
    """A real full disk: a small tmpfs holding a ballast file; threads append until
    ENOSPC; then the ballast is deleted and appends must go on. Acknowledged records
    must all be in the log. Needs root (mount): ``{"mounted": 0}`` when it cannot."""
    from llmrec.service.feedback import FeedbackLog
    mount_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                        str(mount_dir)], capture_output=True)
    if r.returncode != 0:
        return {"mounted": 0}
    try:
        log_path = mount_dir / "fb.jsonl"
        ballast = mount_dir / "ballast"
        ballast.write_bytes(b"\0" * (size_kib * 1024 // 4))
        log = FeedbackLog(log_path)
        acked, refused = [], []
        lock = threading.Lock()
        counter = iter(range(10**9))

        def worker():
            while True:
                with lock:
                    i = next(counter)
                    if i > 20000 or len(refused) > 20:
                        return
                rid = f"t{i}"
                try:
                    log.append([{"text": "x" * 100 + str(i), "llm": "m", "score": 0.0,
                                 "record_id": rid}])
                    with lock:
                        acked.append(rid)
                except OSError:
                    with lock:
                        refused.append(rid)

        threads = [threading.Thread(target=worker) for _ in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ballast.unlink()  # space is freed: the same open log must go on
        try:
            log.append([{"text": "after", "llm": "m", "score": 1.0, "record_id": "after-free"}])
            after_ok = True
        except OSError:
            after_ok = False
        log.close()
        ids, readable = read_log_ids(log_path)
        present = set(ids)
        return {"mounted": 1, "acked": len(acked), "refused_when_full": len(refused),
                "lost": sum(1 for x in acked if x not in present),
                "refused_but_present": sum(1 for x in refused if x in present),
                "unreadable": int(not readable),
                "append_after_free_ok": int(after_ok and "after-free" in present)}
    finally:
        subprocess.run(["umount", str(mount_dir)], capture_output=True)


# ------------------------------------------------------------ bad-request load
BAD_BODIES = [
    ("/v1/recommend", '{"prompts": ["lone \\ud800 surrogate"], "k": 2}'),
    ("/v1/recommend", '{"prompts": ["q"], "cost_weight": NaN}'),
    ("/v1/recommend", '{"prompts": ["q"], "candidates": ["\\udc00"]}'),
    ("/v1/recommend", '{"prompts": ["q"], "k": 1e400}'),
    ("/v1/recommend", '{"prompts": [" "]}'),
    ("/v1/recommend", '{"prompts": ['),
    ("/v1/feedback", '{"feedback": [{"prompt": "q", "llm": "LLM", "score": 1e300}]}'),
    ("/v1/feedback", '{"feedback": [{"prompt": "q", "llm": "LLM", "score": -5}]}'),
    ("/v1/feedback", '{"feedback": [{"prompt": "\\ud800", "llm": "LLM", "score": 1}]}'),
    ("/v1/feedback", '{"feedback": [{"prompt": "  ", "llm": "LLM", "score": 1}]}'),
]


def bad_mix_load(url: str, llm: str, n_requests: int, n_threads: int, bad_fraction: float,
                 seed: int) -> dict:
    """Concurrent good recommend/feedback requests with bad ones mixed in.

    Returns counts: ``good``, ``good_failed`` (must be 0), ``bad``, ``bad_4xx``,
    ``bad_5xx`` (must be 0), and latency percentiles of the good requests (ms).
    """
    import httpx
    rng = random.Random(seed)
    plan = []
    for i in range(n_requests):
        if rng.random() < bad_fraction:
            path, body = rng.choice(BAD_BODIES)
            plan.append(("bad", path, body.replace("LLM", llm)))
        elif rng.random() < 0.8:
            plan.append(("good", "/v1/recommend", json.dumps(
                {"prompts": [f"good prompt {i} about topic {i % 9}"], "k": 2})))
        else:
            plan.append(("good", "/v1/feedback", json.dumps({"feedback": [
                {"prompt": f"good prompt {i}", "llm": llm, "score": 1.0,
                 "record_id": uuid.uuid4().hex}]})))
    counts = {"good": 0, "good_failed": 0, "bad": 0, "bad_4xx": 0, "bad_5xx": 0}
    lat: list[float] = []
    lock = threading.Lock()
    it = iter(plan)

    def worker():
        with httpx.Client(base_url=url, timeout=30,
                          headers={"content-type": "application/json"}) as c:
            while True:
                with lock:
                    job = next(it, None)
                if job is None:
                    return
                kind, path, body = job
                t0 = time.perf_counter()
                try:
                    code = c.post(path, content=body.encode("utf-8")).status_code
                except httpx.HTTPError:
                    code = 599
                dt = (time.perf_counter() - t0) * 1000
                with lock:
                    counts[kind] += 1
                    if kind == "good":
                        counts["good_failed"] += int(code != 200)
                        lat.append(dt)
                    else:
                        counts["bad_4xx"] += int(400 <= code < 500)
                        counts["bad_5xx"] += int(code >= 500)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat.sort()
    if lat:
        counts["p50_ms"] = round(lat[len(lat) // 2], 1)
        counts["p99_ms"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1)
    return counts


# ------------------------------------------------------------------ fail points
SAVE_POINTS = ["save:started", "save:complete", "save:fsynced", "save:exchanged"]
SAVE_POINTS_FALLBACK = ["save:between-renames", "save:renamed"]
LOG_POINTS = ["log:mid-write", "log:written", "log:fsynced"]

_SAVE_ONE = """
import sys
from llmrec.routers import load_router
load_router(sys.argv[1]).save(sys.argv[2])
"""

_APPEND = """
import sys
from llmrec.service.feedback import FeedbackLog
log = FeedbackLog(sys.argv[1])
for i in range(int(sys.argv[2])):
    ids = [f"{sys.argv[3]}-{i}-{j}" for j in range(3)]
    log.append([{"text": f"p{i}", "llm": "m", "score": 1.0, "record_id": x} for x in ids])
    print(" ".join(ids), flush=True)
"""


def save_failpoint_trial(src_old: Path, src_new: Path, target: Path, point: str) -> dict:
    """Save ``src_new`` over ``target`` (holding ``src_old``) in a process killed at
    ``point``; then ``target`` must load as the old or the new model, without leftovers."""
    import shutil
    from llmrec._atomic import leftovers
    from llmrec.routers import load_router
    if target.exists():
        shutil.rmtree(target)
    load_router(src_old).save(target)
    env = {"LLMREC_FAULT_POINT": point}
    if point in SAVE_POINTS_FALLBACK:
        env["LLMREC_NO_RENAME_EXCHANGE"] = "1"
    p = subprocess.run([sys.executable, "-c", _SAVE_ONE, str(src_new), str(target)],
                       env=_env(env), capture_output=True)
    killed = p.returncode == -signal.SIGKILL
    try:
        name = load_router(target).name
        ok = name in (load_router(src_old).name, load_router(src_new).name)
    except Exception:  # noqa: BLE001
        name, ok = None, False
    return {"killed": int(killed), "unloadable": int(not ok), "loaded": name,
            "leftovers_after_load": len(leftovers(target))}


def log_failpoint_trial(log: Path, point: str, at: int = 2) -> dict:
    """Append batches in a process killed at ``point`` on the ``at``-th commit; then a
    new writer opens the log (repair), appends, and every acknowledged id must read."""
    from llmrec.service.feedback import FeedbackLog
    p = subprocess.run([sys.executable, "-c", _APPEND, str(log), "5", "a"],
                       env=_env({"LLMREC_FAULT_POINT": f"{point}:{at}"}), capture_output=True,
                       text=True)
    acked = [x for line in p.stdout.splitlines() for x in line.split()]
    w = FeedbackLog(log)
    w.append([{"text": "after", "llm": "m", "score": 0.0, "record_id": "after"}])
    w.close()
    ids, readable = read_log_ids(log)
    present = set(ids)
    return {"killed": int(p.returncode == -signal.SIGKILL), "acked": len(acked),
            "lost": sum(1 for x in acked + ["after"] if x not in present),
            "duplicated": len(ids) - len(present), "unreadable": int(not readable),
            "torn_moved_aside": int(w.repaired is not None)}
