"""Operations of ``llmrec serve``: readiness while the model loads, graceful shutdown
that drains in-flight requests, several workers behind one port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import llmrec.service.app as service_app  # noqa: E402
from llmrec.routers import make_router  # noqa: E402
from llmrec.service.app import create_app  # noqa: E402
from tests.test_proxy import Stub  # noqa: E402
from tests.test_service import serving  # noqa: E402


@contextmanager
def server_thread(app):
    """Like ``serving`` but also yields the uvicorn server (to stop it mid-request)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on",
                                           timeout_graceful_shutdown=10))
    th = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    th.start()
    t0 = time.time()
    while not server.started:
        assert time.time() - t0 < 20 and th.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", server, th
    finally:
        server.should_exit = True
        th.join(10)
        sock.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory, synth):
    d = tmp_path_factory.mktemp("ops") / "best"
    make_router("best-single").fit(synth).save(d)
    return d


def test_health_is_not_ready_until_the_model_is_loaded(model, monkeypatch, tmp_path):
    gate = threading.Event()
    real = service_app.load_router

    def slow_load(path, *a, **k):
        gate.wait(20)
        return real(path, *a, **k)

    monkeypatch.setattr(service_app, "load_router", slow_load)
    app = create_app(model, lazy_load=True, log_dir=tmp_path, api_key="")
    with serving(app) as url:
        r = httpx.get(url + "/health")
        assert r.status_code == 503 and r.json()["ready"] is False
        assert r.json()["status"] == "loading"
        r = httpx.post(url + "/v1/recommend", json={"prompts": ["x"]})
        assert r.status_code == 503 and "not loaded" in r.text
        assert "llmrec_ready 0" in httpx.get(url + "/metrics").text
        gate.set()
        t0 = time.time()
        while httpx.get(url + "/health").status_code != 200:
            assert time.time() - t0 < 20
            time.sleep(0.02)
        assert httpx.get(url + "/health").json()["ready"] is True
        assert httpx.post(url + "/v1/recommend", json={"prompts": ["x"]}).status_code == 200


def test_failed_load_is_reported_by_health(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "manifest.json").write_text("{not json")
    app = create_app(bad, lazy_load=True, log_dir=tmp_path, api_key="")
    with serving(app) as url:
        t0 = time.time()
        while httpx.get(url + "/health").json()["status"] == "loading":
            assert time.time() - t0 < 20
            time.sleep(0.02)
        r = httpx.get(url + "/health")
        assert r.status_code == 503 and r.json()["status"] == "failed"
        assert "corrupt manifest" in r.json()["error"]


def test_graceful_shutdown_drains_in_flight_requests(model, tmp_path, monkeypatch):
    stub = Stub()
    with serving(stub.app()) as up:
        from llmrec.routers import load_router
        llms = load_router(model).llm_names_
        stub.mode.update({n: "slow" for n in llms})  # each answer takes 1 s
        app = create_app(model, log_dir=tmp_path, api_key="", upstreams={"llms": {
            n: {"base_url": f"{up}/{n}/v1", "timeout": 5} for n in llms}})
        out = {}
        with server_thread(app) as (url, server, th):
            def call():
                out["r"] = httpx.post(url + "/v1/chat/completions", timeout=10, json={
                    "model": "llmrec-auto", "messages": [{"role": "user", "content": "hi"}]})
            c = threading.Thread(target=call)
            c.start()
            time.sleep(0.4)            # the request is now waiting on the upstream
            server.should_exit = True  # what SIGTERM / SIGINT do
            time.sleep(0.2)
            with pytest.raises(httpx.TransportError):  # no new connections while draining
                httpx.get(url + "/health", timeout=1)
            c.join(10)
            th.join(10)
            assert not th.is_alive()
        assert out["r"].status_code == 200, out["r"].text
        did = out["r"].headers["x-llmrec-decision-id"]
        # the shutdown flushed the decision log
        assert did in (tmp_path / "decisions.jsonl").read_text()


@pytest.mark.slow
def test_workers_share_the_port_and_sigterm_drains(model, tmp_path):
    stub = Stub()
    with serving(stub.app()) as up:
        from llmrec.routers import load_router
        llms = load_router(model).llm_names_
        toml = tmp_path / "upstreams.toml"
        toml.write_text("".join(f'[llms."{n}"]\nbase_url = "{up}/{n}/v1"\ntimeout = 5\n'
                                for n in llms))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {**os.environ, "LLMREC_API_KEY": "", "PYTHONPATH": os.getcwd()}
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmrec", "--quiet", "serve", "--model", str(model),
             "--port", str(port), "--workers", "2", "--upstreams", str(toml),
             "--log-dir", str(tmp_path), "--graceful-timeout", "10"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            t0 = time.time()
            pids = set()
            while len(pids) < 2:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.time() - t0 < 120, "two workers did not answer"
                try:
                    with httpx.Client(timeout=2) as c:  # a new connection each time
                        pids.add(c.get(url + "/health").json()["pid"])
                except httpx.TransportError:
                    time.sleep(0.2)
            stub.mode.update({n: "slow" for n in llms})
            out = {}

            def call():
                out["r"] = httpx.post(url + "/v1/chat/completions", timeout=20, json={
                    "model": "llmrec-auto", "messages": [{"role": "user", "content": "hi"}]})
            c = threading.Thread(target=call)
            c.start()
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            c.join(20)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        assert out["r"].status_code == 200, out["r"].text
        assert out["r"].headers["x-llmrec-decision-id"] in \
            (tmp_path / "decisions.jsonl").read_text()


def test_dockerfile_runs_a_valid_offline_serve_command():
    """Docker cannot run here; check that the image's command is one `llmrec serve`
    accepts and that the image keeps the Hugging Face libraries offline."""
    import json as _json
    import re
    from pathlib import Path

    from typer.testing import CliRunner

    from llmrec.cli import app as cli_app
    text = (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
    entry = _json.loads(re.search(r"ENTRYPOINT (\[.*?\])", text.replace("\\\n", " "),
                                  re.S).group(1))
    assert entry[:2] == ["llmrec", "serve"]
    help_text = CliRunner().invoke(cli_app, ["serve", "--help"]).output
    for opt in (a for a in entry[2:] if a.startswith("--")):
        assert opt in help_text, opt
    for var in ("HF_HUB_OFFLINE=1", "TRANSFORMERS_OFFLINE=1"):
        assert var in text
    assert "HEALTHCHECK" in text and "/health" in text


def test_lazy_load_with_upstreams_of_other_llms_is_a_failed_load(model, tmp_path):
    app = create_app(model, lazy_load=True, log_dir=tmp_path, api_key="", upstreams={
        "llms": {"gpt-x": {"base_url": "http://127.0.0.1:9/v1"}}})
    with serving(app) as url:
        t0 = time.time()
        while httpx.get(url + "/health").json()["status"] == "loading":
            assert time.time() - t0 < 20
            time.sleep(0.02)
        r = httpx.get(url + "/health")
        assert r.status_code == 503 and "none of its LLMs" in r.json()["error"]
