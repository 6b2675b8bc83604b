"""Hostile input against the service and saved models (issue 13): one test per finding.

Each test names the finding it guards; all of them failed on the code before the fix.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from llmrec.errors import DataFormatError, ModelFormatError  # noqa: E402
from llmrec.routers import base as router_base  # noqa: E402
from llmrec.routers import load_router, make_router  # noqa: E402
from llmrec.service.app import create_app  # noqa: E402
from llmrec.service.batcher import MicroBatcher  # noqa: E402
from llmrec.service.feedback import AppendLog, FeedbackLog, read_feedback_log  # noqa: E402
from tests.test_service import serving  # noqa: E402

SURROGATE_BODY = '{"prompts": ["good", "bad \\ud800 text"], "k": 2}'
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def root(tmp_path_factory, synth):
    d = tmp_path_factory.mktemp("hostile")
    make_router("best-single").fit(synth).save(d / "best")
    make_router("random", random_state=1).fit(synth).save(d / "random")
    return d


@pytest.fixture(scope="module")
def client(root):
    app = create_app(root / "best", api_key="", feedback_log=root / "fb.jsonl",
                     batch_window_ms=30, max_body_bytes=200_000)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield app, c


# ------------------------------------------------ finding 1: lone surrogates, batching
def test_lone_surrogate_prompt_is_422_naming_the_field(client):
    _, c = client
    r = c.post("/v1/recommend", content=SURROGATE_BODY, headers=JSON)
    assert r.status_code == 422, r.text
    assert "prompts[1]" in r.text and "surrogate" in r.text


def test_lone_surrogate_never_fails_good_requests_batched_with_it(client):
    app, c = client

    def good(i):
        return c.post("/v1/recommend", json={"prompts": [f"good prompt {i}"], "k": 2})

    def bad(_):
        return c.post("/v1/recommend", content=SURROGATE_BODY, headers=JSON)

    for _round in range(3):
        with ThreadPoolExecutor(12) as ex:
            goods = [ex.submit(good, i) for i in range(10)]
            bads = [ex.submit(bad, 0)]
        assert [f.result().status_code for f in goods] == [200] * 10
        assert bads[0].result().status_code == 422


def test_batcher_traces_a_failing_request_to_its_own_caller():
    """An error no validation caught (here: a router that fails on one prompt) reaches
    only the request that caused it; the others of the batch get their answers."""

    class Picky:
        def recommend_ids(self, prompts, k, candidates=None, cost_weight=0.0,
                          show_progress=False):
            if any("poison" in p for p in prompts):
                raise RuntimeError("cannot score poison")
            n = len(prompts)
            return np.zeros((n, k), np.int64), np.ones((n, k), np.float32)

    async def main():
        b = MicroBatcher(lambda: Picky(), window_ms=50)
        await b.start()
        try:
            return await asyncio.gather(
                *[b.submit([f"ok {i}"], 1) for i in range(5)], b.submit(["poison"], 1),
                *[b.submit([f"ok2 {i}"], 2) for i in range(5)], return_exceptions=True), b
        finally:
            await b.stop()

    results, b = asyncio.run(main())
    errors = [r for r in results if isinstance(r, Exception)]
    assert len(errors) == 1 and "poison" in str(errors[0])
    assert isinstance(results[5], RuntimeError)
    assert b.stats.retried_batches >= 1


# --------------------------------------------- finding 2: NaN cost weight, feedback
@pytest.mark.parametrize("body, field", [
    ('{"prompts": ["q"], "cost_weight": NaN}', "cost_weight"),
    ('{"prompts": ["q"], "cost_weight": Infinity}', "cost_weight"),
    ('{"prompts": ["q"], "cost_weight": 1e300}', "cost_weight"),
    ('{"prompts": ["q"], "candidates": ["\\udfff"]}', "candidates[0]"),
    ('{"prompts": ["q"], "k": 1e400}', "k"),
    ('{"prompts": ["q"], "k": "3"}', "k"),
    ('{"prompts": ["q"], "k": true}', "k"),
])
def test_bad_numbers_and_names_are_422(client, body, field):
    _, c = client
    r = c.post("/v1/recommend", content=body, headers=JSON)
    assert r.status_code == 422, r.text
    assert field in r.text


@pytest.mark.parametrize("body", ["[" * 100_000 + "]" * 100_000, '{"prompts": ["\xff"]}',
                                  '{"prompts": ["q"], "k": 1' + "0" * 5000 + "}"])
def test_unparseable_bodies_are_4xx_not_5xx(client, body):
    _, c = client
    raw = body.encode("latin-1") if "\xff" in body else body.encode()
    r = c.post("/v1/recommend", content=raw, headers=JSON)
    assert 400 <= r.status_code < 500, r.text


def test_lone_surrogate_in_feedback_is_422(client, root):
    _, c = client
    before = (root / "fb.jsonl").read_bytes() if (root / "fb.jsonl").exists() else b""
    for item in ('{"prompt": "x \\ud800", "llm": "llm-01", "score": 1}',
                 '{"prompt": "x", "llm": "llm-01\\ud800", "score": 1}',
                 '{"prompt": "x", "llm": "llm-01", "score": NaN}',
                 '{"prompt": "x", "llm": "llm-01", "score": true}'):
        r = c.post("/v1/feedback", content='{"feedback": [%s]}' % item, headers=JSON)
        assert r.status_code == 422, r.text
        assert "feedback" in r.text
    after = (root / "fb.jsonl").read_bytes() if (root / "fb.jsonl").exists() else b""
    assert after == before


# ---------------------------------------- finding 3: score range and blank prompts
@pytest.mark.parametrize("score", [-5, 1e300, 1.5, -1e-9])
def test_feedback_score_outside_the_models_range_is_422(client, score):
    _, c = client
    r = c.post("/v1/feedback", json={"feedback": [{"prompt": "q", "llm": "llm-01",
                                                   "score": score}]})
    assert r.status_code == 422, r.text
    # the synthetic model's records declare binary scores (issue 12's score kinds), so the
    # kind's rule names the field; a model without a kind falls back to its training range
    assert "feedback[0].score" in r.text and "must be 0 or 1 (binary scores)" in r.text


def test_feedback_blank_prompt_is_422(client):
    _, c = client
    r = c.post("/v1/feedback", json={"feedback": [{"prompt": " \t\n", "llm": "llm-01",
                                                   "score": 1}]})
    assert r.status_code == 422 and "blank" in r.text


def test_score_kind_binary_is_enforced(root, monkeypatch):
    app = create_app(root / "best", api_key="", feedback_log=root / "fb-binary.jsonl")
    app.state.llmrec.router.score_kind = "binary"
    with serving(app) as url:
        r = httpx.post(url + "/v1/feedback", timeout=20, json={"feedback": [
            {"prompt": "q", "llm": "llm-01", "score": 0.5}]})
        assert r.status_code == 422 and "0 or 1" in r.text
        r = httpx.post(url + "/v1/feedback", timeout=20, json={"feedback": [
            {"prompt": "q", "llm": "llm-01", "score": 1}]})
        assert r.status_code == 200


# ------------------------------------ finding 4: torn tail repaired, appends after
def test_torn_tail_is_moved_aside_and_next_record_is_readable(tmp_path):
    log = FeedbackLog(tmp_path / "fb.jsonl")
    log.append([{"text": "a", "llm": "m", "score": 1}])
    log.close()
    with open(tmp_path / "fb.jsonl", "ab") as f:  # a crash mid-write
        f.write(b'{"record_id": "zz", "prompt_id": "x", "te')
    log = FeedbackLog(tmp_path / "fb.jsonl")  # a restart
    assert log.repaired is not None and log.repaired.read_bytes().startswith(b'{"record_id"')
    log.append([{"text": "b", "llm": "m", "score": 0}])
    rec = read_feedback_log(tmp_path / "fb.jsonl")
    assert rec.n_observed == 2 and set(rec.texts) == {"a", "b"}
    assert all(json.loads(x) for x in (tmp_path / "fb.jsonl").read_text().splitlines())


# -------------------------------- finding 5: admin endpoints: own key, models root
def test_admin_reload_needs_its_own_key_and_the_models_root(root, tmp_path):
    outside = tmp_path / "elsewhere"
    make_router("random", random_state=2).fit(
        __import__("llmrec.datasets", fromlist=["x"]).make_synthetic(40, 3, seed=1)).save(outside)
    with serving(create_app(root / "best", api_key="")) as url:  # no admin key: disabled
        r = httpx.post(url + "/v1/admin/reload", json={"model_dir": str(outside)}, timeout=20)
        assert r.status_code == 403 and "disabled" in r.text
    app = create_app(root / "best", api_key="client", admin_key="admin")
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        both = {"X-API-Key": "client", "X-Admin-Key": "admin"}
        r = c.post("/v1/admin/reload", json={"model_dir": "random"},
                   headers={"X-API-Key": "client"})
        assert r.status_code == 401  # the clients' key does not open admin endpoints
        r = c.post("/v1/admin/reload", json={"model_dir": str(outside)}, headers=both)
        assert r.status_code == 403 and "outside the models root" in r.text
        r = c.post("/v1/admin/reload", json={"model_dir": "../" + outside.parent.name + "/"
                                             + outside.name}, headers=both)
        assert r.status_code == 403
        r = c.post("/v1/admin/reload", json={"model_dir": "/etc"}, headers=both)
        assert r.status_code == 403
        r = c.post("/v1/admin/reload", json={"model_dir": "random"}, headers=both)
        assert r.status_code == 200 and c.get("/health").json()["router"] == "random"


# ------------------------------------------------ finding 6: saved model integrity
def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write(d: Path, man, reseal: bool = True):
    if reseal and isinstance(man, dict):
        man["checksum"] = router_base.manifest_checksum(man)
    (d / "manifest.json").write_text(json.dumps(man))


@pytest.fixture
def model(tmp_path, synth):
    return make_router("best-single").fit(synth).save(tmp_path / "models" / "m")


def test_shortened_llm_list_fails_the_checksum(model):
    man = _manifest(model)
    man["llms"] = man["llms"][:3]
    _write(model, man, reseal=False)
    with pytest.raises(ModelFormatError, match="checksum"):
        load_router(model)


def test_consistent_but_unanswerable_model_is_never_swapped_in(model, synth):
    """Even re-sealed (a checksum is integrity, not authority), a model whose LLM table
    does not match its arrays fails the probe: reload answers 422, the old one serves."""
    root = model.parent
    make_router("best-single").fit(synth).save(root / "bad")
    man = _manifest(root / "bad")
    man["llms"] = man["llms"][:3]
    man["llm_costs"] = man["llm_costs"][:3]
    _write(root / "bad", man)
    app = create_app(model, api_key="", admin_key="a")
    with serving(app) as url, httpx.Client(base_url=url, timeout=30,
                                           headers={"X-Admin-Key": "a"}) as c:
        r = c.post("/v1/admin/reload", json={"model_dir": "bad"})
        assert r.status_code == 422 and "still serving version 1" in r.text
        assert c.get("/health").json()["n_llms"] == 8
        assert c.post("/v1/recommend", json={"prompts": ["q"], "k": 3}).status_code == 200


def test_file_names_are_confined_to_the_model_dir(model, monkeypatch):
    opened = []
    real = router_base._sha256
    monkeypatch.setattr(router_base, "_sha256", lambda p: opened.append(str(p)) or real(p))
    for name in ("../../etc/passwd", "/etc/passwd", "sub/router.npz", "..", ".hidden"):
        man = _manifest(model)
        man["files"][name] = "0" * 64
        _write(model, man)
        with pytest.raises(ModelFormatError, match="plain file names"):
            load_router(model)
    assert not any("passwd" in p for p in opened)


def test_linked_file_outside_the_model_dir_is_refused(model, tmp_path):
    outside = tmp_path / "outside.npz"
    os.replace(model / "router.npz", outside)
    os.symlink(outside, model / "router.npz")
    with pytest.raises(ModelFormatError, match="link"):
        load_router(model)


def test_encoder_folder_outside_the_model_dir_is_refused(tmp_path, synth):
    d = make_router("knn", k=3).fit(synth, encoder="tfidf").save(tmp_path / "k")
    man = _manifest(d)
    man["featurizer"]["encoder"] = {"type": "sentence", "model": str(tmp_path / "evil")}
    man["featurizer"]["encoder_fingerprint"] = "sentence:evil:0000"
    _write(d, man)
    with pytest.raises(ModelFormatError, match="outside the model directory"):
        load_router(d)


@pytest.mark.parametrize("bad", [[1, 2, 3], None, "text", 7])
def test_malformed_manifest_json_is_a_model_format_error(model, bad):
    _write(model, bad)
    with pytest.raises(ModelFormatError):
        load_router(model)


@pytest.mark.parametrize("field, value", [
    ("files", ["router.npz"]), ("files", None), ("files", {"router.npz": 5}),
    ("llms", None), ("llms", [1, 2]), ("llms", [{"name": "a"}, {"name": "a"}]),
    ("params", [1]), ("featurizer", [1]), ("llm_costs", "x"), ("llm_costs", [1.0]),
    ("train_summary", [1]), ("state", [1]), ("router", ["knn"]),
])
def test_malformed_manifest_fields_are_model_format_errors(model, field, value):
    man = _manifest(model)
    man[field] = value
    _write(model, man)
    with pytest.raises(ModelFormatError):
        load_router(model)


def test_crash_between_the_two_renames_restores_the_old_model(model, synth):
    before = load_router(model).score(["q"])
    os.rename(model, model.with_name(".m.old"))  # the state a kill leaves in the window
    r = load_router(model)
    np.testing.assert_array_equal(r.score(["q"]), before)
    assert sorted(p.name for p in model.parent.iterdir()) == ["m"]


def test_leftovers_of_a_dead_save_are_cleaned_by_the_next_save(model, synth):
    dead = model.with_name(".m.tmpdead1")
    dead.mkdir()
    (dead / "router.npz").write_bytes(b"half")
    make_router("best-single").fit(synth).save(model)
    assert sorted(p.name for p in model.parent.iterdir()) == ["m"]


# --------------------------------------- finding 7: 1e300 overflows the stored log
def test_huge_score_is_refused_and_an_old_log_still_reads(tmp_path):
    log = FeedbackLog(tmp_path / "fb.jsonl")
    with pytest.raises(DataFormatError, match="float32"):
        log.append([{"text": "q", "llm": "m", "score": 1e300}])
    log.append([{"text": "q", "llm": "m", "score": 1.0}])
    with open(tmp_path / "fb.jsonl", "a") as f:  # a line an older writer let in
        f.write('{"prompt_id": "fb-1", "text": "r", "llm": "m", "score": 1e300, "time": "t"}\n')
    with pytest.warns(UserWarning, match="line"):
        rec = read_feedback_log(tmp_path / "fb.jsonl")
    assert rec.n_observed == 1 and np.isfinite(rec.scores.data).all()


# ------------------------------------------- log writer: group commit, dedupe, size
def test_concurrent_appends_share_fsyncs(tmp_path, monkeypatch):
    import llmrec.service.feedback as fbmod
    log = AppendLog(tmp_path / "log.jsonl")
    real_fsync = os.fsync

    def slow_fsync(fd):  # a slow disk makes waiting writers pile up behind one fsync
        threading.Event().wait(0.02)
        real_fsync(fd)

    monkeypatch.setattr(fbmod.os, "fsync", slow_fsync)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: log.append([{"i": i}]), range(64)))
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["i"] for x in lines) == list(range(64))
    assert log.commits < 40  # one fsync per group, not one per append


def test_retried_record_ids_are_written_once(client, root):
    _, c = client
    body = {"feedback": [{"prompt": "dedupe me", "llm": "llm-02", "score": 1,
                          "record_id": "client-42"}]}
    r1, r2 = c.post("/v1/feedback", json=body), c.post("/v1/feedback", json=body)
    assert r1.json()["written"] == 1 and r2.json()["written"] == 0
    assert r2.json()["duplicates"] == 1
    text = (root / "fb.jsonl").read_text()
    assert text.count('"client-42"') == 1
    # the id survives a restart: a retry after a crash is deduplicated too
    assert FeedbackLog(root / "fb.jsonl").append(
        [{"text": "dedupe me", "llm": "llm-02", "score": 1, "record_id": "client-42"}]) == 0


def test_request_and_record_size_limits(client, tmp_path):
    _, c = client
    r = c.post("/v1/recommend", json={"prompts": ["x" * 300_000]})
    assert r.status_code == 413
    log = AppendLog(tmp_path / "l.jsonl", max_record_bytes=100)
    with pytest.raises(DataFormatError, match="limit is 100"):
        log.append([{"t": "y" * 200}])
    assert not (tmp_path / "l.jsonl").exists() or (tmp_path / "l.jsonl").read_bytes() == b""


@pytest.mark.embed
@pytest.mark.slow
def test_custom_encoder_folder_is_saved_inside_the_model_and_checked(tmp_path):
    """A model fitted with a sentence-transformers folder of its own carries a copy of
    it (checked by the checksum chain) and loads with the original folder gone."""
    pytest.importorskip("sentence_transformers")
    import shutil
    from llmrec.datasets import make_synthetic
    from llmrec.encoders.sentence import SentenceTransformerEncoder, default_model_path
    src = tmp_path / "my-encoder"
    shutil.copytree(default_model_path(), src)
    enc = SentenceTransformerEncoder(model=str(src), show_progress=False)
    r = make_router("knn", k=1).fit(make_synthetic(30, 3, seed=0), encoder=enc)
    d = r.save(tmp_path / "m")
    shutil.rmtree(src)
    man = _manifest(d)
    assert man["featurizer"]["encoder"]["model"] == "encoder_model" and man["encoder_files"]
    loaded = load_router(d)
    assert loaded.featurizer_.encoder.fingerprint == r.featurizer_.encoder.fingerprint
    np.testing.assert_allclose(loaded.score(["what is 2 + 2?"]), r.score(["what is 2 + 2?"]),
                               atol=1e-5)
    with open(d / "encoder_model" / "modules.json", "a") as f:  # tampered weights folder
        f.write(" ")
    with pytest.raises(ModelFormatError, match="checksum"):
        load_router(d)


def test_log_rotated_under_the_writer_is_reopened(tmp_path):
    """An acknowledged record is always in the file at the log's path (not in a file
    renamed away or deleted while the service held it open)."""
    log = FeedbackLog(tmp_path / "fb.jsonl")
    assert not (tmp_path / "fb.jsonl").exists()  # nothing is created before a write
    log.append([{"text": "a", "llm": "m", "score": 1, "record_id": "a"}])
    os.rename(tmp_path / "fb.jsonl", tmp_path / "fb.1.jsonl")
    log.append([{"text": "b", "llm": "m", "score": 1, "record_id": "b"}])
    (tmp_path / "fb.jsonl").unlink()
    log.append([{"text": "c", "llm": "m", "score": 1, "record_id": "c"}])
    assert [json.loads(x)["record_id"] for x in
            (tmp_path / "fb.jsonl").read_text().splitlines()] == ["c"]
    assert "a" in (tmp_path / "fb.1.jsonl").read_text()
