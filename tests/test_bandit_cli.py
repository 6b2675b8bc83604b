"""``llmrec evaluate --logs`` and ``llmrec refit`` on a decision log in the agreed schema."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmrec import cli
from llmrec.datasets import make_synthetic
from llmrec.policies import choose, decision_records
from llmrec.routers import load_router, make_router


def call(*args):
    with pytest.raises(SystemExit) as e:
        cli.main([str(a) for a in args])
    return e.value.code


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """A model, and its service's log folder: decisions with epsilon-greedy, outcomes."""
    d = tmp_path_factory.mktemp("bandit")
    rec = make_synthetic(300, 5, n_topics=3, seed=1)
    train, live = rec.select_prompts(np.arange(150)), rec.select_prompts(np.arange(150, 300))
    make_router("linear").fit(train).save(d / "model")
    r = load_router(d / "model")
    dec = choose(r, live, "epsilon-greedy:eps=0.5", random_state=0)
    recs = decision_records(r, list(live.texts), dec, rng=0)
    truth = live.dense()
    logs = d / "logs"
    logs.mkdir()
    with open(logs / "decisions.jsonl", "w") as f:
        for x in recs:
            f.write(json.dumps(x) + "\n")
    with open(logs / "feedback.jsonl", "w") as f:
        for i, x in enumerate(recs[:120]):  # feedback for most decisions, not all
            f.write(json.dumps({"decision_id": x["decision_id"], "llm": x["chosen"],
                                "score": float(truth[i, dec.chosen[i]])}) + "\n")
    return d, train


def test_evaluate_logs_prints_estimates(logged, capsys):
    d, _ = logged
    assert call("evaluate", "--model", d / "model", "--logs", d / "logs", "--n-boot", 100,
                "--json") == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 120 and res["n_decisions"] == 150
    for e in ("ips", "snips", "dm", "dr"):
        assert res[e]["low"] <= res[e]["estimate"] <= res[e]["high"]
    assert res["support_checked"] == "exact" and res["unsupported_mass"] == 0
    assert call("evaluate", "--model", d / "model", "--logs", d / "logs", "--n-boot", 100,
                "--json", "--reward-model", d / "model", "--clip", 5) == 0
    res2 = json.loads(capsys.readouterr().out)
    assert res2["dr"]["estimate"] != res["dr"]["estimate"]  # another reward model and cap
    assert res2["ips"]["estimate"] <= res["ips"]["estimate"] + 1e-12  # capped weights
    assert call("evaluate", "--model", d / "model", "--logs", d / "logs" / "decisions.jsonl",
                "--n-boot", 50) == 0
    out = capsys.readouterr().out
    assert "DR" in out and "effective sample size" in out


def test_evaluate_logs_warns_on_missing_support(logged, tmp_path, capsys):
    d, _ = logged
    lines = [json.loads(x) for x in open(d / "logs" / "decisions.jsonl")]
    with open(tmp_path / "decisions.jsonl", "w") as f:
        for x in lines:  # a greedy logger that always took the first candidate
            f.write(json.dumps({**x, "chosen": x["candidates"][0], "propensity": 1.0,
                                "policy": "unknown-policy"}) + "\n")
    fb = [json.loads(x) for x in open(d / "logs" / "feedback.jsonl")]
    with open(tmp_path / "feedback.jsonl", "w") as f:
        for x in fb:
            f.write(json.dumps(x) + "\n")
    assert call("evaluate", "--model", d / "model", "--logs", tmp_path, "--n-boot", 20) == 0
    err = capsys.readouterr().err
    assert "warning: the logging policy does not cover the new policy" in err


def test_evaluate_logs_user_errors(logged, tmp_path, capsys):
    d, _ = logged
    assert call("evaluate", "--model", d / "model") == 2
    assert "--data or --logs" in capsys.readouterr().err
    assert call("evaluate", "--model", d / "model", "--logs", d / "logs", "--data",
                "synthetic") == 2
    assert call("evaluate", "--model", d / "model", "--logs", d / "logs", "--level", 2) == 2
    assert call("evaluate", "--model", d / "model", "--logs", tmp_path / "none.jsonl") == 2
    (tmp_path / "decisions.jsonl").write_text('{"decision_id": 1}\n{"x": ')
    assert call("evaluate", "--model", d / "model", "--logs", tmp_path) != 0
    assert "decisions.jsonl, line 1: decision lacks field(s)" in capsys.readouterr().err


def test_refit_on_logs(logged, tmp_path, capsys):
    d, train = logged
    assert call("refit", "--logs", d / "logs", "--warm-start", d / "model", "--out",
                tmp_path / "v2") == 0
    assert "inverse-propensity weighted" in capsys.readouterr().out
    r2 = load_router(tmp_path / "v2")
    assert r2.name == "linear" and r2.llm_names_ == load_router(d / "model").llm_names_
    info = json.loads((tmp_path / "v2" / "fit_info.json").read_text())
    assert info["n_decisions"] == 120 and info["weighted"]
    train.save(tmp_path / "train")
    assert call("refit", "--logs", d / "logs", "--warm-start", d / "model", "--out",
                tmp_path / "v3", "--data", tmp_path / "train") == 0
    assert "plus 150 full-information prompts" in capsys.readouterr().out
    assert call("refit", "--logs", d / "logs", "--warm-start", d / "model", "--out",
                tmp_path / "v4", "--clip", 0.5) == 2


def test_serve_policy_is_checked_before_the_port(logged, capsys):
    d, _ = logged
    assert call("serve", "--model", d / "model", "--policy", "nope") == 2
    assert "unknown policy 'nope'" in capsys.readouterr().err
    assert call("serve", "--model", d / "model", "--policy", "thompson") == 2
    assert "no score uncertainty" in capsys.readouterr().err
    assert cli._serve_policy("greedy") == {}
    assert cli._serve_policy("epsilon-greedy:eps=0.2") == {"policy": "epsilon-greedy:eps=0.2"}
