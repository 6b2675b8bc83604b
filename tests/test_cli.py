"""The ``llmrec`` command line: real subprocess runs of the entry point for the main
paths, in-process ``main([...])`` runs for the many error paths (faster)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from llmrec import cli
from llmrec.datasets import make_synthetic
from llmrec.routers import load_router
from llmrec.service.feedback import FeedbackLog

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1", "LLMREC_API_KEY": ""}


def run(*args, cwd=None, check_rc=None):
    """``python -m llmrec ARGS`` in a subprocess; returns the CompletedProcess."""
    p = subprocess.run([sys.executable, "-m", "llmrec", *map(str, args)], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=120)
    if check_rc is not None:
        assert p.returncode == check_rc, (p.stdout, p.stderr)
    return p


def call(*args):
    """``llmrec ARGS`` in this process; returns the exit code."""
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rec = make_synthetic(80, 4, n_topics=3, seed=0)
    rec.to_long(with_text=True).to_csv(d / "small.csv", index=False)
    return d, rec


def test_script_help_and_main_chain(small):
    d, rec = small
    exe = shutil.which("llmrec")
    if exe is not None:  # the installed console script
        p = subprocess.run([exe, "--help"], capture_output=True, text=True, env=ENV, timeout=60)
        assert p.returncode == 0 and "recommend" in p.stdout and "Examples" in p.stdout
    p = run("--quiet", "fit", "--data", d / "small.csv", "--router", "knn", "--param", "k=3",
            "--encoder", "tfidf", "--encoder-param", "dim=8", "--out", d / "m", check_rc=0)
    assert "knn on 80 prompts x 4 LLMs" in p.stdout
    info = json.loads((d / "m" / "fit_info.json").read_text())
    assert info["params"] == {"k": 3} and info["encoder_params"] == {"dim": 8}
    assert load_router(d / "m").featurizer_.encoder.dim <= 8
    p = run("recommend", "--model", d / "m", "-k", "2", "area of a triangle", "a court case",
            "--candidates", "llm-00,llm-02,llm-03", "--json", check_rc=0)
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    assert [x["prompt"] for x in lines] == ["area of a triangle", "a court case"]
    assert all(len(x["llms"]) == 2 and x["llms"][0]["score"] >= x["llms"][1]["score"]
               and {y["name"] for y in x["llms"]} <= {"llm-00", "llm-02", "llm-03"}
               for x in lines)
    want = load_router(d / "m").recommend(["area of a triangle"], k=2,
                                          candidates=["llm-00", "llm-02", "llm-03"])[0][0]
    assert [y["name"] for y in lines[0]["llms"]] == list(want)
    assert cli.load_data(str(d / "small.csv")).has_text  # knn saw the prompt texts


def test_data_info_and_evaluate(small, capsys):
    d, _ = small
    assert call("data", "info", d / "small.csv") == 0
    assert "80 prompts x 4 LLMs" in capsys.readouterr().out
    model = d / "best-eval"
    assert call("--quiet", "fit", "--data", d / "small.csv", "--router", "best-single",
                "--out", model) == 0
    capsys.readouterr()
    assert call("evaluate", "--model", model, "--data", d / "small.csv", "--json") == 0
    m = json.loads(capsys.readouterr().out)
    assert m["Vb"] == pytest.approx(1.0)  # best-single is the best single LLM here
    assert m["n_prompts"] == 80 and 0 <= m["mu"] <= 1 and 0 < m["Vb"] and 0 <= m["hit@3"] <= 1


@pytest.mark.parametrize("args, fragment", [
    (("data", "info", "no/such/file.csv"), "no/such/file.csv"),
    (("fit", "--data", "{csv}", "--router", "no-such-router", "--out", "{tmp}/x"),
     "--router 'no-such-router': unknown router"),
    (("fit", "--data", "{csv}", "--router", "knn", "--param", "k5", "--out", "{tmp}/x"),
     "expected key=value"),
    (("fit", "--data", "{csv}", "--router", "knn", "--param", "kk=5", "--out", "{tmp}/x"),
     "kk"),
    (("fit", "--data", "{csv}", "--router", "knn", "--encoder-param", "dimm=5",
      "--out", "{tmp}/x"), "dimm"),
    (("fit", "--data", "{csv}", "--router", "nope", "--out", "{tmp}/x"), "unknown router"),
    (("recommend", "--model", "{tmp}/nomodel", "hi"), "does not exist"),
    (("recommend", "--model", "{model}", "hi", "--candidates", "llm-00,gpt-9"), "gpt-9"),
    (("recommend", "--model", "{model}"), "no prompts"),
    (("recommend", "--model", "{model}", "-k", "0", "hi"), "-k must be >= 1"),
    (("recommend", "--model", "{model}", "-k", "abc", "hi"), "'-k'"),
    (("recommend", "--model", "{model}", "--input", "{tmp}/none.jsonl"), "none.jsonl"),
    (("data", "convert", "{csv}", "{tmp}/out.xyz"), "pass --to"),
    (("data", "convert", "{csv}", "{tmp}/out.csv", "--to", "excel"), "--to 'excel'"),
    (("no-such-command",), "No such command"),
    (("fit", "--data", "{csv}", "--warm-start", "{model}", "--router", "knn",
      "--out", "{tmp}/x"), "drop --router"),
])
def test_user_errors_exit_2_with_one_line(small, tmp_path, capsys, args, fragment):
    d, rec = small
    model = d / "best"
    if not model.exists():
        assert call("--quiet", "fit", "--data", d / "small.csv", "--router", "best-single",
                    "--out", model) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt_id,llm,score\np1,llm-00,high\n")
    fill = {"csv": d / "small.csv", "tmp": tmp_path, "model": model, "bad_csv": bad}
    capsys.readouterr()
    code = call(*[a.format(**fill) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert fragment in err and "Traceback" not in err


def test_debug_shows_traceback_and_unexpected_errors_exit_1(small, monkeypatch, capsys):
    d, _ = small
    with pytest.raises(Exception, match="no/such/file.csv"):
        cli.main(["--debug", "data", "info", "no/such/file.csv"])
    p = run("data", "info", "no/such/file.csv", check_rc=2)
    assert p.stderr.startswith("error: ") and "Traceback" not in p.stderr

    def boom(spec):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "load_data", boom)
    assert call("data", "info", "synthetic") == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: a bug" in err and "--debug" in err
    with pytest.raises(RuntimeError):
        cli.main(["--debug", "data", "info", "synthetic"])


def test_help_of_every_command(capsys):
    for cmd in (["data", "info"], ["data", "convert"], ["encode"], ["fit"], ["recommend"],
                ["evaluate"], ["bench"], ["demo"], ["serve"]):
        assert call(*cmd, "--help") == 0
        out = capsys.readouterr().out
        assert "Examples" in out and f"llmrec {cmd[0]}" in out, cmd
    assert call() == 2  # bare `llmrec` prints the help


def test_data_convert_formats(small, tmp_path, capsys):
    d, rec = small
    src = d / "small.csv"
    assert call("data", "convert", src, tmp_path / "a.parquet") == 0
    assert call("data", "convert", src, tmp_path / "a.csv") == 0
    assert call("data", "convert", src, tmp_path / "recdir", "--to", "records") == 0
    for out in ("a.parquet", "a.csv", "recdir"):
        back = cli.load_data(str(tmp_path / out))
        assert back.shape == rec.shape and back.n_observed == rec.n_observed
        np.testing.assert_array_equal(back.dense(), rec.dense())
        assert back.texts == rec.texts


def test_encode(small, tmp_path, capsys):
    d, rec = small
    assert call("--quiet", "encode", d / "small.csv", "--encoder", "tfidf",
                "--encoder-param", "dim=8", "--out", tmp_path / "e.npy") == 0
    X = np.load(tmp_path / "e.npy")
    assert X.shape == (80, 8) and X.dtype == np.float32
    assert "80 x" in capsys.readouterr().out


def test_recommend_input_file_text_output(small, tmp_path, capsys):
    d, _ = small
    model = d / "best2"
    assert call("--quiet", "fit", "--data", d / "small.csv", "--router", "best-single",
                "--out", model) == 0
    f = tmp_path / "p.jsonl"
    f.write_text('{"text": "first prompt"}\n"second prompt"\n\n{"prompt": "third"}\n')
    capsys.readouterr()
    assert call("recommend", "--model", model, "--input", f, "-k", "2") == 0
    out = capsys.readouterr().out
    assert out.count("1. llm-") == 3 and "second prompt" in out
    f.write_text('{"txt": 1}\n')
    assert call("recommend", "--model", model, "--input", f) == 1  # a data error
    assert "line 1" in capsys.readouterr().err


def test_feedback_log_warm_start(small, tmp_path, capsys):
    """Service feedback -> `fit --data LOG --warm-start MODEL` -> a new model version."""
    d, rec = small
    old = tmp_path / "v1"
    assert call("--quiet", "fit", "--data", d / "small.csv", "--router", "best-single",
                "--out", old) == 0
    log = FeedbackLog(tmp_path / "feedback.jsonl")
    # llm-03 was the worst; the feedback says it solves many new prompts
    log.append([{"text": f"new prompt {i}", "llm": "llm-03", "score": 1.0} for i in range(200)])
    assert call("data", "info", log.path) == 0
    assert "200 prompts x 1 LLMs" in capsys.readouterr().out
    new = tmp_path / "v2"
    assert call("--quiet", "fit", "--data", log.path, "--warm-start", old, "--out", new) == 0
    info = json.loads((new / "fit_info.json").read_text())
    assert info["how"] == "refit (warm start)" and info["n_prompts"] == 80 + 200
    assert info["data"] == [str((d / "small.csv").resolve()), str(log.path.resolve())]
    r_old, r_new = load_router(old), load_router(new)
    i3 = r_new.llm_names_.index("llm-03")
    assert r_new.mean_scores_[i3] > r_old.mean_scores_[i3]
    assert r_new.llm_names_ == r_old.llm_names_
    # without a record of the original data the warm start must be told about it
    (old / "fit_info.json").unlink()
    assert call("fit", "--data", log.path, "--warm-start", old, "--out", tmp_path / "v3") == 2
    assert "--data ORIGINAL --data NEW" in capsys.readouterr().err


def test_serve_subprocess_and_sighup_reload(small, tmp_path):
    httpx = pytest.importorskip("httpx")
    d, _ = small
    model = tmp_path / "m"
    assert call("--quiet", "fit", "--data", d / "small.csv", "--router", "best-single",
                "--out", model) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "llmrec", "--quiet", "serve", "--model",
                             str(model), "--host", "127.0.0.1", "--port", str(port)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        t0 = time.time()
        while True:
            try:
                h = httpx.get(url + "/health", timeout=2).json()
                if h.get("ready", True):  # 503 "loading" while the model loads
                    break
                time.sleep(0.2)
                assert time.time() - t0 < 60, f"model did not load: {h}"
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.time() - t0 < 60, "server did not come up"
                time.sleep(0.2)
        assert h["model_version"] == 1
        r = httpx.post(url + "/v1/recommend", json={"prompts": ["hi"], "k": 2}, timeout=10)
        assert r.status_code == 200 and len(r.json()["results"][0]["llms"]) == 2
        proc.send_signal(signal.SIGHUP)
        t0 = time.time()
        while httpx.get(url + "/health", timeout=5).json()["model_version"] != 2:
            assert time.time() - t0 < 30, "SIGHUP did not reload"
            time.sleep(0.1)
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode in (0, -signal.SIGTERM)


def test_demo_options_are_typed(monkeypatch, tmp_path, capsys):
    import llmrec.evaluation as ev
    seen = {}

    def run_demo(**kw):
        seen.update(kw)

    monkeypatch.setattr(ev, "run_demo", run_demo, raising=False)
    assert call("--quiet", "demo", "--out-dir", tmp_path, "--n-prompts", "80",
                "--n-llms", "4", "--seed=3") == 0
    assert seen == dict(out=tmp_path, seed=3, quiet=True, n_prompts=80, n_llms=4,
                        show_progress=False)
    assert call("demo", "--n-prompts", "5") == 2
    assert "--n-prompts must be >= 50" in capsys.readouterr().err


def test_bench_seeds_and_result_cache(small, tmp_path, capsys):
    """--seeds N gives mean ± std; a rerun with one more router computes only that one."""
    d, _ = small
    args = ["--quiet", "bench", "--data", d / "small.csv", "--protocol", "cold-prompt",
            "--seeds", "2", "--n-boot", "0", "--out", tmp_path / "b"]
    assert call(*args, "--routers", "best-single,oracle") == 0
    out = capsys.readouterr().out
    assert "2 seed(s)" in out and "±" in out and "best-single" in out
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["timings"]["computed_units"] == 4 and res["timings"]["cached_units"] == 0
    assert call(*args, "--routers", "best-single,oracle,knn", "--param", "knn:k=3") == 0
    res = json.loads((tmp_path / "b" / "results.json").read_text())
    assert res["timings"]["computed_units"] == 2 and res["timings"]["cached_units"] == 4
    assert [r["router"] for r in res["summary"]] == ["best-single", "oracle", "knn(k=3)"]
    assert all(r["n_seeds"] == 2 for r in res["summary"])


def test_real_data_fit_evaluate_recommend(shared_data, tmp_path, monkeypatch, capsys):
    """RouteLLM GSM8K (1,319 prompts x Mixtral / GPT-4) through the CLI, in-process."""
    monkeypatch.setenv("LLMREC_SHARED_DATA", str(shared_data))
    assert call("data", "info", "routellm-gsm8k") == 0
    assert "1319 prompts x 2 LLMs" in capsys.readouterr().out
    assert call("--quiet", "fit", "--data", "routellm-gsm8k", "--router", "knn",
                "--encoder-param", "dim=16", "--out", tmp_path / "gsm") == 0
    capsys.readouterr()
    assert call("evaluate", "--model", tmp_path / "gsm", "--data", "routellm-gsm8k",
                "--json") == 0
    m = json.loads(capsys.readouterr().out)
    assert m["n_prompts"] == 1319 and 0.7 < m["mu"] <= 1.0
    assert call("recommend", "--model", tmp_path / "gsm", "-k", "1", "--json",
                "Natalia sold clips to 48 of her friends. How many clips?") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["llms"][0]["name"] in ("gpt-4-1106-preview",
                                      "mistralai/Mixtral-8x7B-Instruct-v0.1")


def test_fit_prints_the_chosen_map_penalty(small, capsys):
    d, _ = small
    assert call("fit", "--data", d / "small.csv", "--router", "als", "--param", "factors=4",
                "--param", "iterations=3", "--out", d / "als") == 0
    out = capsys.readouterr().out
    assert "als: cold-prompt map penalty" in out and "leave-one-out" in out
    assert f"penalty {load_router(d / 'als').map_alpha_:g}," in out
    assert call("fit", "--data", d / "small.csv", "--router", "als", "--param", "factors=4",
                "--param", "map_alpha=2", "--out", d / "als2") == 0
    assert "map penalty" not in capsys.readouterr().out
    assert call("fit", "--data", d / "small.csv", "--router", "als", "--param",
                "map_alpha=big", "--out", d / "als3") == 2
    assert "map_alpha must be 'auto' or a number" in capsys.readouterr().err
    # the MLP map does not search its penalty: nothing to report
    assert call("fit", "--data", d / "small.csv", "--router", "als", "--param", "factors=4",
                "--param", "user_map=mlp", "--out", d / "als4") == 0
    assert "map penalty" not in capsys.readouterr().out


def test_text_params_still_refuse_numbers(small, capsys):
    """Only parameters annotated to take a number as well (map_alpha) accept one in
    place of their text default; als' backend (also "auto" by default) does not."""
    d, _ = small
    assert call("fit", "--data", d / "small.csv", "--router", "als", "--param", "backend=3",
                "--out", d / "x") == 2
    assert "backend expects text" in capsys.readouterr().err
