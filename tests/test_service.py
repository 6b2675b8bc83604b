"""The HTTP service, through real HTTP requests to a uvicorn server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from llmrec.errors import ConfigError  # noqa: E402
from llmrec.routers import make_router  # noqa: E402
from llmrec.service.app import create_app  # noqa: E402
from llmrec.service.feedback import FeedbackLog, prompt_hash, read_feedback_log  # noqa: E402


@contextmanager
def serving(app):
    """Run ``app`` with uvicorn in a thread on a free loopback port; yield its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.time()
    while not server.started:
        if time.time() - t0 > 20 or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory, synth):
    d = tmp_path_factory.mktemp("models")
    best = make_router("best-single").fit(synth)
    best.save(d / "best")
    make_router("random", random_state=1).fit(synth).save(d / "random")
    return d, best


@pytest.fixture(scope="module")
def server(models):
    d, _ = models
    app = create_app(d / "best", max_prompts=8, max_prompt_chars=50, max_k=5,
                     feedback_log=d / "fb.jsonl", api_key="")
    with serving(app) as url:
        with httpx.Client(base_url=url, timeout=20) as c:
            yield app, c


def test_recommend_happy_path_matches_in_process(server, models):
    app, c = server
    _, best = models
    r = c.post("/v1/recommend", json={"prompts": ["area of a circle", "a contract dispute"],
                                      "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    names, scores = best.recommend(["x", "y"], k=3)
    assert len(body["results"]) == 2
    for i, res in enumerate(body["results"]):
        assert res["index"] == i and res["truncated"] is False
        assert [x["name"] for x in res["llms"]] == list(names[i])
        np.testing.assert_allclose([x["score"] for x in res["llms"]], scores[i], rtol=1e-6)
        assert all(x["price_input"] is not None and x["price_output"] is not None
                   for x in res["llms"])
    assert body["model_version"] >= 1


def test_candidates_and_cost_weight(server, models):
    _, c = server
    _, best = models
    r = c.post("/v1/recommend", json={"prompts": ["q"], "k": 2,
                                      "candidates": ["llm-01", "llm-03", "llm-05"],
                                      "cost_weight": 0.5})
    assert r.status_code == 200, r.text
    got = [x["name"] for x in r.json()["results"][0]["llms"]]
    want = best.recommend(["q"], k=2, candidates=["llm-01", "llm-03", "llm-05"],
                          cost_weight=0.5)[0][0]
    assert got == list(want)


def test_llms_health_metrics_docs(server):
    _, c = server
    llms = c.get("/v1/llms").json()["llms"]
    assert [x["name"] for x in llms][:2] == ["llm-00", "llm-01"] and "price_input" in llms[0]
    h = c.get("/health").json()
    assert h["status"] == "ok" and h["router"] == "best-single" and h["n_llms"] == 8
    c.post("/v1/recommend", json={"prompts": ["q"]})
    m = c.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'llmrec_requests_total{method="POST",path="/v1/recommend",status="200"}' in m.text
    assert 'llmrec_request_seconds_bucket{path="/v1/recommend",le="+Inf"}' in m.text
    assert "llmrec_batch_calls_total" in m.text
    assert c.get("/openapi.json").json()["paths"]["/v1/recommend"]
    assert c.get("/docs").status_code == 200


@pytest.mark.parametrize("payload, fragment", [
    ({"prompts": []}, "prompts"),
    ({"prompts": ["a"] * 9}, "at most 8"),
    ({"prompts": ["ok", "  "]}, "index [1]"),
    ({"prompts": ["a"], "k": 0}, "k"),
    ({"prompts": ["a"], "k": 6}, "limit 5"),
    ({"prompts": ["a"], "candidates": ["llm-01", "gpt-9", "nope"]}, "gpt-9, nope"),
    ({"prompts": ["a"], "candidates": []}, "candidates is empty"),
    ({"prompts": ["a"], "cost_weight": -1}, "cost_weight"),
    ({"k": 2}, "prompts"),
    ({"prompts": "not a list"}, "prompts"),
])
def test_bad_input_is_422(server, payload, fragment):
    _, c = server
    r = c.post("/v1/recommend", json=payload)
    assert r.status_code == 422, r.text
    assert fragment in r.text


def test_long_prompt_truncated_or_rejected(server, models):
    _, c = server
    r = c.post("/v1/recommend", json={"prompts": ["x" * 51, "short"], "k": 1})
    assert r.status_code == 200
    assert [res["truncated"] for res in r.json()["results"]] == [True, False]
    d, _ = models
    with serving(create_app(d / "best", max_prompt_chars=50, long_prompts="reject",
                            api_key="")) as url:
        r = httpx.post(url + "/v1/recommend", json={"prompts": ["x" * 51]}, timeout=20)
        assert r.status_code == 422 and "51 characters" in r.text
    with pytest.raises(ConfigError, match="long_prompts"):
        create_app(d / "best", long_prompts="drop")


def test_concurrent_requests(server):
    app, c = server
    before = app.state.batcher.stats.calls

    def one(i):
        return c.post("/v1/recommend", json={"prompts": [f"prompt {i}", f"other {i}"], "k": 2})

    with ThreadPoolExecutor(20) as ex:
        rs = list(ex.map(one, range(20)))
    assert all(r.status_code == 200 for r in rs)
    assert all(len(r.json()["results"]) == 2 for r in rs)
    # every request was answered; batching can only reduce the number of router calls
    assert app.state.batcher.stats.calls - before <= 20


def test_two_concurrent_requests_share_one_router_call(models):
    d, _ = models
    app = create_app(d / "best", batch_window_ms=400, api_key="")
    with serving(app) as url:
        barrier = threading.Barrier(2)

        def one(k):
            barrier.wait()
            return httpx.post(url + "/v1/recommend", json={"prompts": [f"p{k}"], "k": k},
                              timeout=20)

        with ThreadPoolExecutor(2) as ex:
            r1, r2 = ex.map(one, [1, 3])
        stats = app.state.batcher.stats
    assert r1.status_code == r2.status_code == 200
    assert len(r1.json()["results"][0]["llms"]) == 1
    assert len(r2.json()["results"][0]["llms"]) == 3
    assert (stats.calls, stats.requests, stats.prompts) == (1, 2, 2)


def test_api_key(models, monkeypatch):
    d, _ = models
    monkeypatch.setenv("LLMREC_API_KEY", "s3cret")
    with serving(create_app(d / "best")) as url, httpx.Client(base_url=url, timeout=20) as c:
        body = {"prompts": ["q"]}
        assert c.post("/v1/recommend", json=body).status_code == 401
        assert c.post("/v1/recommend", json=body,
                      headers={"X-API-Key": "wrong"}).status_code == 401
        assert c.get("/v1/llms").status_code == 401
        assert c.post("/v1/feedback", json={"feedback": []}).status_code == 401
        assert c.post("/v1/recommend", json=body,
                      headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/health").status_code == 200


def test_feedback_log(server, models):
    app, c = server
    d, _ = models
    log = d / "fb.jsonl"
    fb = [{"prompt": "what is a tort?", "llm": "llm-02", "score": 1.0},
          {"prompt": "what is a tort?", "llm": "llm-03", "score": 0.0},
          {"prompt": "integrate x dx", "llm": "llm-02", "score": 0.0}]
    # the served model's records are binary (score kinds): a graded 0.5 is refused by name
    r = c.post("/v1/feedback", json={"feedback": [dict(fb[2], score=0.5)]})
    assert r.status_code == 422 and "binary" in r.text
    r = c.post("/v1/feedback", json={"feedback": fb})
    assert r.status_code == 200 and r.json()["written"] == 3
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines[0]["prompt_id"] == prompt_hash("what is a tort?")
    assert {"prompt_id", "text", "llm", "score", "time"} <= set(lines[0])
    r = c.post("/v1/feedback", json={"feedback": [{"prompt": "x", "llm": "gpt-9",
                                                   "score": 1}]})
    assert r.status_code == 422 and "gpt-9" in r.text
    assert c.post("/v1/feedback", json={"feedback": [{"prompt": "", "llm": "llm-02",
                                                      "score": 1}]}).status_code == 422
    assert c.post("/v1/feedback", json={"feedback": []}).status_code == 422
    assert len(log.read_text().splitlines()) == 3  # refused requests wrote nothing
    rec = read_feedback_log(log)
    assert rec.n_prompts == 2 and rec.n_observed == 3
    assert set(rec.texts) == {"what is a tort?", "integrate x dx"}


def test_reload_swaps_model_without_dropping_requests(models):
    d, _ = models
    app = create_app(d / "best", api_key="", admin_key="adm")
    with serving(app) as url, httpx.Client(base_url=url, timeout=30,
                                           headers={"X-Admin-Key": "adm"}) as c:
        assert c.get("/health").json()["router"] == "best-single"
        stop = threading.Event()
        codes = []

        def hammer():
            while not stop.is_set():
                codes.append(c.post("/v1/recommend", json={"prompts": ["q"]}).status_code)

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        r = c.post("/v1/admin/reload", json={"model_dir": str(d / "random")})
        time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        assert r.status_code == 200 and r.json()["model_version"] == 2
        assert codes and set(codes) == {200}
        h = c.get("/health").json()
        assert h["router"] == "random" and h["model_version"] == 2
        # a bad directory keeps the current model
        r = c.post("/v1/admin/reload", json={"model_dir": str(d / "missing")})
        assert r.status_code == 422
        (d / "broken").mkdir(exist_ok=True)
        r = c.post("/v1/admin/reload", json={"model_dir": str(d / "broken")})
        assert r.status_code == 422 and "still serving version 2" in r.text
        # no body: reload the current directory
        assert c.post("/v1/admin/reload").json()["model_version"] == 3
        assert c.get("/health").json()["router"] == "random"


def test_feedback_log_unit(tmp_path):
    log = FeedbackLog(tmp_path / "sub" / "fb.jsonl")
    assert log.append([]) == 0
    assert log.append([{"text": "a", "llm": "m", "score": 1}]) == 1
    with pytest.raises(Exception, match="record 0: 'score'"):
        log.append([{"text": "a", "llm": "m", "score": "high"}])
    # a torn last line (crash mid-write) is skipped; a bad middle line is named
    with open(log.path, "a") as f:
        f.write('{"prompt_id": "x", "te')
    assert read_feedback_log(log.path).n_observed == 1
    with open(log.path, "a") as f:
        f.write('\n{"prompt_id": "y", "text": "b", "llm": "m", "score": 0}\n')
    with pytest.raises(Exception, match="line 2: not valid JSON"):
        read_feedback_log(log.path)
