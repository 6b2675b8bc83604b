"""The OpenAI-compatible proxy, driven by the real ``openai`` client against stub upstream
servers on 127.0.0.1 (routing, streaming, fallback, pass-through, auth, bad config) and
the decision log it writes (feedback joins by decision id)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
openai = pytest.importorskip("openai")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from llmrec.errors import ConfigError  # noqa: E402
from llmrec.routers import make_router  # noqa: E402
from llmrec.service.app import create_app  # noqa: E402
from llmrec.service.proxy import routing_text  # noqa: E402
from llmrec.service.upstreams import load_upstreams, parse_upstreams  # noqa: E402
from tests.test_service import serving  # noqa: E402

UPSTREAM_KEY = "sk-upstream-secret-123"


class Stub:
    """Upstream LLM servers on one loopback port: ``/<llm>/v1/chat/completions``.

    ``mode[llm]``: ``"ok"`` (default), ``"500"``, ``"400"``, ``"slow"`` (sleeps 1 s),
    ``"break"`` (a stream that breaks off after its first chunk), ``"stall"`` (a stream
    that goes silent for 3 s after its first chunk).
    ``calls`` records (llm, body, authorization header) per request.
    """

    def __init__(self):
        self.mode: dict[str, str] = {}
        self.calls: list[tuple[str, dict, str | None]] = []

    def app(self):
        async def chat(request: Request):
            llm = request.path_params["llm"]
            body = await request.json()
            self.calls.append((llm, body, request.headers.get("authorization")))
            mode = self.mode.get(llm, "ok")
            if mode == "500":
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if mode == "400":
                return JSONResponse({"error": {"message": f"{llm}: bad max_tokens",
                                               "type": "invalid_request_error",
                                               "param": "max_tokens", "code": None}},
                                    status_code=400)
            if mode == "slow":
                await asyncio.sleep(1.0)
            text = f"answer from {llm}"
            usage = {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
            if body.get("stream"):
                async def events():
                    base = {"id": "c1", "object": "chat.completion.chunk", "created": 0,
                            "model": body["model"]}
                    for i, word in enumerate(text.split()):
                        chunk = dict(base, choices=[{"index": 0, "delta": {
                            "content": word if i == 0 else " " + word},
                            "finish_reason": None}])
                        yield f"data: {json.dumps(chunk)}\n\n".encode()
                        if mode == "break":
                            raise RuntimeError("upstream crashed mid-stream")
                        if mode == "stall":  # alive but silent, past the 0.5 s timeout
                            await asyncio.sleep(3.0)
                        await asyncio.sleep(0.15 if i == 0 else 0.01)
                    yield f"data: {json.dumps(dict(base, choices=[{'index': 0, 'delta': {}, 'finish_reason': 'stop'}]))}\n\n".encode()  # noqa: E501
                    if (body.get("stream_options") or {}).get("include_usage"):
                        yield f"data: {json.dumps(dict(base, choices=[], usage=usage))}\n\n".encode()  # noqa: E501
                    yield b"data: [DONE]\n\n"
                return StreamingResponse(events(), media_type="text/event-stream")
            return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0,
                                 "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop",
                                              "message": {"role": "assistant", "content": text}}],
                                 "usage": usage})

        return Starlette(routes=[Route("/{llm}/v1/chat/completions", chat, methods=["POST"])])


@pytest.fixture(scope="module")
def stub():
    s = Stub()
    with serving(s.app()) as url:
        yield s, url


@pytest.fixture(scope="module")
def knn_model(tmp_path_factory, synth):
    d = tmp_path_factory.mktemp("proxy") / "knn"
    router = make_router("knn").fit(synth)
    router.save(d)
    return d, router


def _upstreams(url, names, **extra):
    llms = {n: {"base_url": f"{url}/{n}/v1", "model": f"up-{n}", "api_key_env": "STUB_KEY",
                "timeout": 0.5, "price_input": 1.0, "price_output": 2.0} for n in names}
    return {"proxy": {"max_attempts": 2, **extra}, "llms": llms}


@pytest.fixture(scope="module")
def proxy(stub, knn_model, tmp_path_factory):
    s, url = stub
    d, router = knn_model
    logs = tmp_path_factory.mktemp("logs")
    mp = pytest.MonkeyPatch()
    mp.setenv("STUB_KEY", UPSTREAM_KEY)
    app = create_app(d, upstreams=_upstreams(url, router.llm_names_), log_dir=logs,
                     api_key="client-key")
    with serving(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="client-key", max_retries=0)
        yield app, client, base, s, router, logs
    mp.undo()


@pytest.fixture(autouse=True)
def _reset(request):
    if "proxy" in request.fixturenames:
        s = request.getfixturevalue("stub")[0]
        s.mode.clear()
        s.calls.clear()


def _decision(app, decision_id):
    app.state.decision_log.flush()
    return app.state.decision_log.get(decision_id)


PROMPT = "Which integral gives the area under a curve?"


def test_routes_on_last_user_message_and_logs_the_decision(proxy):
    app, client, _, s, router, logs = proxy
    msgs = [{"role": "user", "content": "a contract dispute between two firms"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": PROMPT}]
    raw = client.chat.completions.with_raw_response.create(model="llmrec-auto", messages=msgs)
    out = raw.parse()
    best = router.recommend([PROMPT], k=1)[0][0, 0]
    assert raw.headers["x-llmrec-llm"] == raw.headers["x-llmrec-chosen"] == best
    assert out.choices[0].message.content == f"answer from {best}"
    assert out.model == f"up-{best}"  # the upstream saw its own model name
    llm, body, auth = s.calls[-1]
    assert llm == best and body["model"] == f"up-{best}" and auth == f"Bearer {UPSTREAM_KEY}"
    assert "llmrec" not in body
    d = _decision(app, raw.headers["x-llmrec-decision-id"])
    assert d["text_sha256"] == hashlib.sha256(PROMPT.encode()).hexdigest()
    assert d["text"] == PROMPT and d["source"] == "proxy" and d["chosen"] == best
    assert d["rank"] == 0 and d["propensity"] == 1.0 and d["policy"] == "greedy"
    assert d["candidates"] == router.llm_names_ and len(d["scores"]) == len(d["candidates"])
    assert d["score"] == pytest.approx(max(d["scores"]))
    assert d["router"] == "knn" and d["router_version"] == raw.headers["x-llmrec-router-version"]
    assert d["answered"] == best and d["attempts"] == [best]
    # the whole conversation is routed when asked
    raw2 = client.chat.completions.with_raw_response.create(
        model="llmrec/knn", messages=msgs, extra_body={"llmrec": {"route_on": "conversation"}})
    d2 = _decision(app, raw2.headers["x-llmrec-decision-id"])
    assert d2["text"] == routing_text(msgs, "conversation")
    # feedback by decision id joins back; an unknown id is a 404 naming it
    c = httpx.Client(base_url=str(client.base_url).rsplit("/v1", 1)[0],
                     headers={"X-API-Key": "client-key"})
    r = c.post("/v1/feedback", json={"decision_id": d["decision_id"], "score": 1.0})
    assert r.status_code == 200, r.text
    fb = [json.loads(x) for x in (logs / "feedback.jsonl").read_text().splitlines()]
    assert fb[-1]["decision_id"] == d["decision_id"] and fb[-1]["llm"] == best
    assert fb[-1]["prompt_id"] == d["prompt_id"] and fb[-1]["score"] == 1.0
    r = c.post("/v1/feedback", json={"decision_id": "nope", "score": 1.0})
    assert r.status_code == 404 and "decision_id" in r.text


def test_candidates_and_cost_weight_options(proxy):
    app, client, _, s, router, _ = proxy
    pool = router.llm_names_[2:5]
    raw = client.chat.completions.with_raw_response.create(
        model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}],
        extra_body={"llmrec": {"candidates": pool, "cost_weight": 0.5}})
    want = router.recommend([PROMPT], k=1, candidates=pool, cost_weight=0.5)[0][0, 0]
    assert raw.headers["x-llmrec-llm"] == want
    assert _decision(app, raw.headers["x-llmrec-decision-id"])["candidates"] == pool
    with pytest.raises(openai.BadRequestError, match="not routable"):
        client.chat.completions.create(model="llmrec-auto", messages=[{"role": "user",
                                       "content": "x"}], extra_body={"llmrec": {
                                           "candidates": ["no-such-llm"]}})
    with pytest.raises(openai.BadRequestError, match="unknown llmrec option"):
        client.chat.completions.create(model="llmrec-auto", messages=[{"role": "user",
                                       "content": "x"}], extra_body={"llmrec": {"k": 3}})
    with pytest.raises(openai.NotFoundError, match="not loaded"):
        client.chat.completions.create(model="llmrec/als", messages=[{"role": "user",
                                                                      "content": "x"}])
    with pytest.raises(openai.NotFoundError, match="GET /v1/models"):
        client.chat.completions.create(model="gpt-unknown", messages=[{"role": "user",
                                                                       "content": "x"}])


def test_streaming_passes_chunks_through_as_they_come(proxy):
    app, client, _, s, router, _ = proxy
    best = router.recommend([PROMPT], k=1)[0][0, 0]
    t0 = time.perf_counter()
    with client.chat.completions.with_streaming_response.create(
            model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}], stream=True,
            stream_options={"include_usage": True}) as resp:
        assert resp.headers["x-llmrec-llm"] == best
        assert resp.headers["x-llmrec-decision-id"]
        arrivals, parts, usage = [], [], None
        for chunk in resp.parse():
            arrivals.append(time.perf_counter() - t0)
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage is not None:
                usage = chunk.usage
    assert "".join(parts) == f"answer from {best}"
    assert usage is not None and usage.completion_tokens == 4
    # the stub waits 0.15 s after its first chunk: the client had it before that
    assert arrivals[-1] - arrivals[0] > 0.1
    assert s.calls[-1][1]["stream"] is True
    metrics = httpx.get(str(client.base_url).rsplit("/v1", 1)[0] + "/metrics").text
    assert f'llmrec_proxy_tokens_total{{llm="{best}",kind="completion"}}' in metrics


def test_fallback_after_500_and_after_timeout(proxy):
    app, client, base, s, router, _ = proxy
    ranked = list(router.recommend([PROMPT], k=3)[0][0])
    for mode in ("500", "slow"):
        s.mode.clear()
        s.mode[ranked[0]] = mode
        t0 = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(
            model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}])
        assert time.perf_counter() - t0 < 0.9  # the 0.5 s upstream timeout cut the wait
        assert raw.headers["x-llmrec-chosen"] == ranked[0]
        assert raw.headers["x-llmrec-llm"] == ranked[1]
        assert raw.headers["x-llmrec-attempts"] == f"{ranked[0]},{ranked[1]}"
        assert raw.parse().choices[0].message.content == f"answer from {ranked[1]}"
        d = _decision(app, raw.headers["x-llmrec-decision-id"])
        assert d["chosen"] == ranked[0] and d["answered"] == ranked[1]
    # streaming falls back too (before the first byte)
    s.mode.clear()
    s.mode[ranked[0]] = "500"
    with client.chat.completions.with_streaming_response.create(
            model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}],
            stream=True) as resp:
        assert resp.headers["x-llmrec-llm"] == ranked[1]
        assert "".join(c.choices[0].delta.content or "" for c in resp.parse() if c.choices) \
            == f"answer from {ranked[1]}"
    # max_attempts = 2: both failing gives 502 naming each
    s.mode[ranked[1]] = "500"
    with pytest.raises(openai.InternalServerError) as ei:
        client.chat.completions.create(model="llmrec-auto",
                                       messages=[{"role": "user", "content": PROMPT}])
    assert ei.value.status_code == 502
    assert ranked[0] in str(ei.value) and ranked[1] in str(ei.value)
    metrics = httpx.get(base + "/metrics").text
    assert f'llmrec_proxy_upstream_requests_total{{llm="{ranked[0]}",outcome="http_500"}}' \
        in metrics
    assert f'llmrec_proxy_upstream_requests_total{{llm="{ranked[0]}",outcome="timeout"}} 1' \
        in metrics
    assert "llmrec_proxy_fallbacks_total" in metrics


def test_a_stream_broken_off_upstream_ends_with_an_error_event(proxy):
    app, client, _, s, router, _ = proxy
    best = router.recommend([PROMPT], k=1)[0][0, 0]
    s.mode[best] = "break"
    stream = client.chat.completions.create(
        model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}], stream=True)
    got = []
    with pytest.raises(openai.APIError, match="broke off the stream"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["answer"]  # what had arrived was passed on before the error


def test_a_stream_that_stalls_is_ended_after_the_upstream_timeout(proxy):
    """Silence longer than the upstream's timeout between two chunks ends the stream
    with an error event instead of holding the client forever."""
    app, client, _, s, router, _ = proxy
    best = router.recommend([PROMPT], k=1)[0][0, 0]
    s.mode[best] = "stall"
    t0 = time.perf_counter()
    stream = client.chat.completions.create(
        model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}], stream=True)
    got = []
    with pytest.raises(openai.APIError, match=r"broke off the stream \(silent for more "
                                              r"than 0.5 s\)"):
        for chunk in stream:
            got.append(chunk.choices[0].delta.content)
    assert got == ["answer"]
    assert time.perf_counter() - t0 < 2.5  # the 0.5 s read timeout, not the 3 s stall


def test_fallback_after_a_refused_connection(stub, knn_model, tmp_path, monkeypatch):
    """An upstream whose port is closed counts as a connect failure and falls back."""
    import socket
    s, url = stub
    d, router = knn_model
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    ranked = list(router.recommend([PROMPT], k=3)[0][0])
    cfg = _upstreams(url, router.llm_names_)
    cfg["llms"][ranked[0]]["base_url"] = f"http://127.0.0.1:{dead}/v1"
    monkeypatch.setenv("STUB_KEY", UPSTREAM_KEY)
    with serving(create_app(d, upstreams=cfg, log_dir=tmp_path)) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}])
        assert raw.headers["x-llmrec-chosen"] == ranked[0]
        assert raw.headers["x-llmrec-llm"] == ranked[1]
        assert raw.parse().choices[0].message.content == f"answer from {ranked[1]}"
        metrics = httpx.get(base + "/metrics").text
    assert f'llmrec_proxy_upstream_requests_total{{llm="{ranked[0]}",outcome="connect"}} 1' \
        in metrics


def test_upstream_4xx_is_returned_not_retried(proxy):
    app, client, _, s, router, _ = proxy
    best = router.recommend([PROMPT], k=1)[0][0, 0]
    s.mode[best] = "400"
    with pytest.raises(openai.BadRequestError, match="bad max_tokens") as ei:
        client.chat.completions.create(model="llmrec-auto",
                                       messages=[{"role": "user", "content": PROMPT}])
    assert ei.value.response.headers["x-llmrec-llm"] == best
    assert [c[0] for c in s.calls] == [best]
    d = _decision(app, ei.value.response.headers["x-llmrec-decision-id"])
    assert d["answered"] is None and d["upstream_status"] == 400


def test_pass_through_and_models(proxy):
    app, client, base, s, router, _ = proxy
    name = router.llm_names_[3]
    raw = client.chat.completions.with_raw_response.create(
        model=name, messages=[{"role": "user", "content": "hello"}], temperature=0.2)
    assert raw.headers["x-llmrec-llm"] == name
    assert "x-llmrec-decision-id" not in raw.headers
    llm, body, _ = s.calls[-1]
    assert llm == name and body["model"] == f"up-{name}" and body["temperature"] == 0.2
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["llmrec-auto", "llmrec/knn"] and set(router.llm_names_) <= set(ids)
    metrics = httpx.get(base + "/metrics").text
    assert f'llmrec_proxy_cost_usd_total{{llm="{name}"}} 0.000018000' in metrics  # 10x1+4x2


def test_auth_and_keys_never_leak(proxy):
    app, client, base, s, router, logs = proxy
    bad = openai.OpenAI(base_url=base + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="llmrec-auto",
                                    messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert not s.calls
    client.chat.completions.create(model="llmrec-auto",
                                   messages=[{"role": "user", "content": PROMPT}])
    app.state.decision_log.flush()
    assert UPSTREAM_KEY not in (logs / "decisions.jsonl").read_text()
    assert UPSTREAM_KEY not in httpx.get(base + "/metrics").text
    assert UPSTREAM_KEY not in repr(app.state.proxy.config)


def test_policy_choice_is_logged_with_its_propensity(stub, knn_model, tmp_path, monkeypatch):
    class Uniform:  # a duck-typed policy: uniform over the candidates
        name = "uniform"

        def choose(self, scores, mask=None, rng=None):
            n, m = scores.shape
            return np.full(n, m - 1), np.full(n, 1.0 / m)

    s, url = stub
    d, router = knn_model
    monkeypatch.setenv("STUB_KEY", UPSTREAM_KEY)
    app = create_app(d, upstreams=_upstreams(url, router.llm_names_), log_dir=tmp_path,
                     policy=Uniform(), api_key="")
    with serving(app) as base:
        client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="llmrec-auto", messages=[{"role": "user", "content": PROMPT}])
        r = httpx.post(base + "/v1/recommend", json={"prompts": [PROMPT, "a poem"], "k": 2})
    n = router.n_llms_
    d = _decision(app, raw.headers["x-llmrec-decision-id"])
    assert d["chosen"] == router.llm_names_[-1] == raw.headers["x-llmrec-llm"]
    assert d["propensity"] == pytest.approx(1 / n) and d["policy"] == "uniform"
    assert d["rank"] == d["candidates"].index(d["chosen"]) or d["rank"] >= 0
    res = r.json()["results"]
    assert [x["chosen"] for x in res] == [router.llm_names_[-1]] * 2
    rec = _decision(app, res[0]["decision_id"])
    assert rec["source"] == "recommend" and rec["propensity"] == pytest.approx(1 / n)
    lines = (tmp_path / "decisions.jsonl").read_text().splitlines()
    assert len(lines) == 3


@pytest.mark.parametrize("data, fragment", [
    ({}, "no [llms.NAME] tables"),
    ({"llms": {"a": {}}}, '[llms."a"] base_url: missing'),
    ({"llms": {"a": {"base_url": "127.0.0.1:9"}}}, '[llms."a"] base_url: must start'),
    ({"llms": {"a": {"base_url": "http://x", "timeout": -1}}}, '[llms."a"] timeout'),
    ({"llms": {"a": {"base_url": "http://x", "api_key": "sk-1"}}}, "unknown key(s) ['api_key']"),
    ({"llms": {"a": {"base_url": "http://x", "api_key_env": "NOT_SET_ANYWHERE"}}},
     "NOT_SET_ANYWHERE is not set"),
    ({"llms": {"a": {"base_url": "http://x", "price_input": "cheap"}}}, "price_input"),
    ({"proxy": {"max_attempts": 0}, "llms": {"a": {"base_url": "http://x"}}}, "max_attempts"),
    ({"proxy": {"route_on": "all"}, "llms": {"a": {"base_url": "http://x"}}}, "route_on"),
    ({"llm": {}}, "unknown top-level key(s) ['llm']"),
])
def test_bad_upstreams_are_refused_naming_the_key(data, fragment):
    with pytest.raises(ConfigError) as ei:
        parse_upstreams(data, environ={})
    assert fragment in str(ei.value)


def test_bad_upstreams_file_and_mismatched_names(tmp_path, knn_model, capsys):
    p = tmp_path / "upstreams.toml"
    p.write_text("[llms.a]\nbase_url = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_upstreams(p)
    d, _ = knn_model
    with pytest.raises(ConfigError, match="none of its LLMs"):
        create_app(d, upstreams={"llms": {"gpt-x": {"base_url": "http://127.0.0.1:9/v1"}}})
    # the command line refuses it before serving: exit 2, one error line naming the key
    p.write_text('[llms.llm-00]\nbase_url = "http://127.0.0.1:9/v1"\ntimeout = "fast"\n')
    from llmrec.cli import main
    with pytest.raises(SystemExit) as ei:
        main(["serve", "--model", str(d), "--upstreams", str(p)])
    assert ei.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and '[llms."llm-00"] timeout' in err
