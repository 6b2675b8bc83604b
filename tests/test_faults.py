"""Fault injection, fast form (fixed seed, few iterations): kill -9 at random points of
saves, reloads and feedback writes; a full disk; bad requests mixed into load.

The long form is ``benchmarks/bench_faults.py`` (counts in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import random

import pytest

pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from llmrec.datasets import make_synthetic  # noqa: E402
from llmrec.routers import make_router  # noqa: E402
from tests import fault_harness as fh  # noqa: E402


@pytest.fixture(scope="module")
def two_models(tmp_path_factory, synth):
    d = tmp_path_factory.mktemp("faults")
    make_router("best-single").fit(synth).save(d / "a")
    make_router("random", random_state=1).fit(synth).save(d / "b")
    make_router("knn", k=3).fit(make_synthetic(100, 8, n_topics=4, seed=0),
                                encoder="tfidf").save(d / "knn")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_kill_during_save_leaves_a_loadable_model(two_models, tmp_path, exchange):
    rng = random.Random(13)
    for i in range(2):
        out = fh.save_kill_trial(two_models / "a", two_models / "b", tmp_path / "m", rng,
                                 exchange=exchange, max_delay=0.4)
        assert out["unloadable"] == 0, (i, out)
        assert out["leftovers_after_load"] == 0, (i, out)


@pytest.mark.slow
def test_kill_server_during_feedback_writes_loses_no_acknowledged_record(two_models,
                                                                         tmp_path):
    rng = random.Random(7)
    out = fh.feedback_kill_trial(two_models / "a", tmp_path / "fb.jsonl", rng, n_threads=4,
                                 max_delay=0.6)
    assert 0 < out["acked_before_kill"] < out["acked"], out  # acks before and after
    assert out["lost"] == 0 and out["duplicated"] == 0 and out["unreadable"] == 0, out


@pytest.mark.slow
def test_kill_saver_and_server_during_reloads(two_models, tmp_path):
    rng = random.Random(3)
    out = fh.reload_kill_trial(two_models / "a", two_models / "b", tmp_path, rng,
                               seconds=0.6)
    assert out["good"] > 0 and out["reload_ok"] > 0, out
    assert out["good_failed"] == 0 and out["reload_5xx"] == 0 and out["unloadable"] == 0, out


def test_full_disk_patched_writer(tmp_path):
    out = fh.full_disk_patched_trial(tmp_path / "fb.jsonl", random.Random(5), n_appends=120)
    assert out["refused"] > 0 and out["acked"] > 0, out
    assert out["lost"] == 0 and out["refused_but_present"] == 0 and out["unreadable"] == 0, out


@pytest.mark.skipif(not fh.tmpfs_available(), reason="mounting a tmpfs needs root on Linux")
def test_full_disk_small_tmpfs(tmp_path):
    out = fh.full_disk_tmpfs_trial(tmp_path / "mnt", size_kib=64)
    if not out["mounted"]:
        pytest.skip("tmpfs could not be mounted here")
    assert out["refused_when_full"] > 0 and out["acked"] > 0, out
    assert out["lost"] == 0 and out["refused_but_present"] == 0, out
    assert out["unreadable"] == 0 and out["append_after_free_ok"] == 1, out


def test_full_disk_answers_507_and_the_service_goes_on(two_models, tmp_path, monkeypatch):
    import errno
    import httpx
    import llmrec.service.feedback as fb
    from llmrec.service.app import create_app
    from tests.test_service import serving
    app = create_app(two_models / "a", api_key="", feedback_log=tmp_path / "fb.jsonl")
    real = fb.os.write
    body = {"feedback": [{"prompt": "q", "llm": "llm-01", "score": 1, "record_id": "x1"}]}
    with serving(app) as url:
        def full(fd, data):
            real(fd, bytes(data[:7]))
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(fb.os, "write", full)
        r = httpx.post(url + "/v1/feedback", json=body, timeout=20)
        assert r.status_code == 507 and "retry" in r.text
        assert httpx.post(url + "/v1/recommend", json={"prompts": ["q"]},
                          timeout=20).status_code == 200
        monkeypatch.setattr(fb.os, "write", real)
        r = httpx.post(url + "/v1/feedback", json=body, timeout=20)  # the client retries
        assert r.status_code == 200 and r.json()["written"] == 1
    ids, readable = fh.read_log_ids(tmp_path / "fb.jsonl")
    assert ids == ["x1"] and readable


def test_bad_requests_mixed_into_load_fail_no_good_request(two_models, tmp_path):
    """A TF-IDF kNN router (the finding's case: text reaches an encoder), micro-batched."""
    from llmrec.service.app import create_app
    from tests.test_service import serving
    app = create_app(two_models / "knn", api_key="", feedback_log=tmp_path / "fb.jsonl",
                     batch_window_ms=20)
    with serving(app) as url:
        out = fh.bad_mix_load(url, "llm-01", n_requests=160, n_threads=12, bad_fraction=0.25,
                              seed=11)
    assert out["bad"] > 20 and out["good"] > 100, out
    assert out["good_failed"] == 0 and out["bad_5xx"] == 0, out
    assert out["bad_4xx"] == out["bad"], out


@pytest.mark.slow
@pytest.mark.parametrize("point", fh.SAVE_POINTS + fh.SAVE_POINTS_FALLBACK)
def test_kill_at_every_step_of_a_save(two_models, tmp_path, point):
    """Deterministic kill -9 at each step of a save (fail points): the old or the new
    model loads from the target, and the load leaves no leftovers."""
    out = fh.save_failpoint_trial(two_models / "a", two_models / "b", tmp_path / "m", point)
    assert out["killed"] == 1 and out["unloadable"] == 0, out
    assert out["leftovers_after_load"] == 0, out
    if point in ("save:started", "save:complete", "save:fsynced", "save:between-renames"):
        assert out["loaded"] == "best-single", out  # before the swap: the old model
    else:
        assert out["loaded"] == "random", out


@pytest.mark.slow
@pytest.mark.parametrize("point", fh.LOG_POINTS)
def test_kill_at_every_step_of_a_log_write(tmp_path, point):
    out = fh.log_failpoint_trial(tmp_path / "fb.jsonl", point, at=2)
    assert out["killed"] == 1 and out["acked"] == 3, out  # the first batch was acknowledged
    assert out["lost"] == 0 and out["duplicated"] == 0 and out["unreadable"] == 0, out
    assert out["torn_moved_aside"] == int(point == "log:mid-write"), out


@pytest.mark.slow
def test_two_processes_share_one_log(tmp_path):
    """serve --workers N: several processes append to one log (flock per commit)."""
    import subprocess
    import sys
    script = fh._APPEND
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "fb.jsonl"), "40",
                               name], env=fh._env(), stdout=subprocess.PIPE, text=True)
             for name in ("w1", "w2")]
    acked = [x for p in procs for line in p.communicate(timeout=120)[0].splitlines()
             for x in line.split()]
    ids, readable = fh.read_log_ids(tmp_path / "fb.jsonl")
    assert readable and len(acked) == 240 and sorted(ids) == sorted(acked)
