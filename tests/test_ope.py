"""Off-policy estimators on bandits with a known answer; the decision-log reader."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from llmrec.data import read_decisions
from llmrec.errors import ConfigError, DataFormatError
from llmrec.evaluation.ope import (SupportWarning, effective_sample_size, evaluate_logs,
                                   fit_reward_model, ope_estimate, unsupported_mass)
from llmrec.policies import choose, decision_records, fit_logged, make_policy
from llmrec.routers import make_router


def _bandit(seed, n=400, m=4):
    """Contexts x, Bernoulli rewards with known means q(x, a); softmax logger."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    W = np.array([[1.0, -0.5], [-1.0, 0.5], [0.3, 0.3], [0.0, -1.0]])[:m]
    q = 1 / (1 + np.exp(-(x @ W.T)))
    logger = make_policy("softmax:temperature=1.0").probabilities(rng.normal(size=(n, m)))
    a, p = make_policy("softmax:temperature=1.0").choose(np.log(logger), rng=rng)
    r = (rng.random(n) < q[np.arange(n), a]).astype(float)
    target = make_policy("epsilon-greedy:eps=0.2").probabilities(x @ W.T)
    truth = float(np.mean(np.sum(target * q, axis=1)))  # its expected mean on these prompts
    return a, p, r, target, q, truth


def test_ips_unbiased_and_covered_over_many_seeds():
    est, covered = [], 0
    n_seeds = 120
    for s in range(n_seeds):
        a, p, r, target, q, truth = _bandit(s)
        res = ope_estimate(a, p, r, target, estimators=("ips",), n_boot=200, level=0.9, seed=s)
        est.append(res["ips"]["estimate"] - truth)
        covered += res["ips"]["low"] <= truth <= res["ips"]["high"]
    err = np.asarray(est)
    # mean error within 3 standard errors of 0: no bias
    assert abs(err.mean()) < 3 * err.std(ddof=1) / np.sqrt(n_seeds), err.mean()
    assert covered / n_seeds >= 0.8, covered


def test_dr_exact_when_reward_model_exact():
    a, p, _, target, q, truth = _bandit(0)
    r = q[np.arange(len(a)), a]  # deterministic outcomes equal to the model
    res = ope_estimate(a, p, r, target, q, n_boot=50)
    assert res["dr"]["estimate"] == pytest.approx(truth, abs=1e-12)
    assert res["dm"]["estimate"] == pytest.approx(truth, abs=1e-12)
    assert res["dr"]["high"] - res["dr"]["low"] < 0.1


def test_dr_unbiased_with_a_wrong_reward_model():
    errs = []
    for s in range(60):
        a, p, r, target, q, truth = _bandit(s)
        res = ope_estimate(a, p, r, target, np.full_like(q, 0.3), estimators=("dr", "dm"),
                           n_boot=20, seed=s)
        errs.append((res["dr"]["estimate"] - truth, res["dm"]["estimate"] - truth))
    e = np.asarray(errs)
    assert abs(e[:, 0].mean()) < 3 * e[:, 0].std(ddof=1) / np.sqrt(len(e))
    assert abs(e[:, 1].mean()) > 0.05  # the direct method inherits the model's bias


def test_snips_and_ess():
    a = np.array([0, 1, 1, 0]); p = np.array([0.5, 0.5, 0.25, 0.5]); r = np.array([1., 0, 1, 0])
    target = np.tile([0.0, 1.0], (4, 1))
    res = ope_estimate(a, p, r, target, estimators=("ips", "snips"), n_boot=20)
    w = np.array([0, 2, 4, 0.0])
    assert res["ips"]["estimate"] == pytest.approx(np.mean(w * r))
    assert res["snips"]["estimate"] == pytest.approx(np.sum(w * r) / w.sum())
    assert res["ess"] == pytest.approx(effective_sample_size(w)) == pytest.approx(36 / 20)
    clipped = ope_estimate(a, p, r, target, estimators=("ips",), n_boot=20, clip=2.0)
    assert clipped["ips"]["estimate"] == pytest.approx(np.mean(np.minimum(w, 2) * r))


def test_ope_input_errors():
    t = np.ones((2, 2)) / 2
    with pytest.raises(ConfigError, match="reward model"):
        ope_estimate([0, 1], [0.5, 0.5], [1.0, 0.0], t, estimators=("dr",))
    with pytest.raises(DataFormatError, match="propensities"):
        ope_estimate([0, 1], [0.0, 0.5], [1.0, 0.0], t, estimators=("ips",))
    with pytest.raises(DataFormatError, match="finite"):
        ope_estimate([0, 1], [0.5, 0.5], [np.nan, 0.0], t, estimators=("ips",))
    with pytest.raises(ConfigError, match="unknown estimator"):
        ope_estimate([0, 1], [0.5, 0.5], [1.0, 0.0], t, estimators=("foo",))


def test_unsupported_mass():
    target = np.array([[0.0, 1.0], [0.5, 0.5]])
    mask = np.ones((2, 2), bool)
    assert unsupported_mass(target, np.array([1.0, 0.5]), np.array([0, 0]), mask) == 0.5
    logging = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert unsupported_mass(target, None, None, mask, logging) == 0.5


def test_reward_model_is_cross_fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    a = rng.integers(0, 3, 300)
    r = rng.normal(size=300)  # pure noise: an in-sample fit would chase it
    Q = fit_reward_model(X, a, r, 3, alpha=0.0)
    own = Q[np.arange(300), a]
    assert np.corrcoef(own, r)[0, 1] < 0.2


# ------------------------------------------------------------ decision logs
def _write(path, objs, torn=None):
    with open(path, "w", encoding="utf-8") as f:
        for o in objs:
            f.write(json.dumps(o) + "\n")
        if torn is not None:
            f.write(torn)


def _dec(i, chosen="a", p=0.5, cands=("a", "b")):
    return {"decision_id": f"d{i}", "time": 1.0 + i, "prompt_id": f"p{i}", "text": f"t {i}",
            "candidates": list(cands), "chosen": chosen, "rank": 0, "score": 0.1,
            "scores": [0.1, 0.0], "propensity": p, "policy": "epsilon-greedy:eps=1",
            "router": "linear", "router_version": "v", "source": "recommend"}


def test_reader_skips_torn_last_line_and_keeps_acknowledged(tmp_path):
    _write(tmp_path / "decisions.jsonl", [_dec(0), _dec(1, "b"), _dec(1)],
           torn='{"decision_id": "d9", "candi')
    _write(tmp_path / "feedback.jsonl",
           [{"decision_id": "d0", "score": 1.0}, {"decision_id": "d0", "score": 0.0},
            {"decision_id": "zz", "score": 1.0}, {"prompt": "x", "llm": "a", "score": 1.0}],
           torn='{"decision_id": "d1", "sco')
    t = read_decisions(tmp_path)
    assert t["decision_id"].tolist() == ["d0", "d1"]  # first occurrence wins
    assert t["chosen"].tolist() == ["a", "b"]
    assert t["outcome"].iloc[0] == 0.5 and np.isnan(t["outcome"].iloc[1])
    assert t["n_outcomes"].tolist() == [2, 0]
    assert t.attrs["torn_lines"] == 2 and t.attrs["orphan_outcomes"] == 1
    # the file alone finds its sibling feedback log
    assert read_decisions(tmp_path / "decisions.jsonl")["outcome"].iloc[0] == 0.5
    last = read_decisions(tmp_path, on_duplicate_outcome="last")
    assert last["outcome"].iloc[0] == 0.0
    with pytest.raises(DataFormatError, match="second, different"):
        read_decisions(tmp_path, on_duplicate_outcome="error")


def test_reader_reads_parquet_decision_logs(tmp_path):
    pd.DataFrame([_dec(0), _dec(1, "b", 0.25)]).to_parquet(tmp_path / "decisions.parquet")
    _write(tmp_path / "feedback.jsonl", [{"decision_id": "d1", "score": 0.5}])
    t = read_decisions(tmp_path)
    assert t["chosen"].tolist() == ["a", "b"] and t["candidates"].iloc[0] == ["a", "b"]
    assert np.isnan(t["outcome"].iloc[0]) and t["outcome"].iloc[1] == 0.5


def test_reader_rejects_bad_lines_with_their_number(tmp_path):
    f = tmp_path / "decisions.jsonl"
    f.write_text(json.dumps(_dec(0)) + "\nnot json\n" + json.dumps(_dec(1)) + "\n")
    with pytest.raises(DataFormatError, match="line 2"):
        read_decisions(f)
    f.write_text(json.dumps({**_dec(0), "chosen": "zz"}) + "\n")
    with pytest.raises(DataFormatError, match="not among its candidates"):
        read_decisions(f)
    f.write_text(json.dumps({**_dec(0), "propensity": 0}) + "\n")
    with pytest.raises(DataFormatError, match="propensity"):
        read_decisions(f)
    with pytest.raises(DataFormatError, match="no decisions.jsonl"):
        read_decisions(tmp_path / "nothing" if (tmp_path / "nothing").mkdir() is None else 0)
    with pytest.raises(FileNotFoundError):
        read_decisions(tmp_path / "missing.jsonl")


def _logged_table(router, records, spec, seed=0):
    d = choose(router, records, spec, random_state=seed)
    texts = list(records.texts)
    recs = decision_records(router, texts, d, rng=seed, prompt_ids=list(records.prompt_ids))
    truth = records.dense()
    t = pd.DataFrame(recs)
    t["outcome"] = truth[np.arange(len(texts)), d.chosen]
    return t, truth


def test_evaluate_logs_recovers_the_truth_and_warns_without_support(synth_split):
    train, test = synth_split
    logger = make_router("best-single").fit(train)
    new = make_router("linear").fit(train)
    t, truth = _logged_table(logger, test, "epsilon-greedy:eps=1")
    true_mu = float(np.mean(truth[np.arange(test.n_prompts),
                                  np.argmax(new.score(test), axis=1)]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SupportWarning)
        res = evaluate_logs(t, new, n_boot=200, level=0.99)
    assert res["support_checked"] == "exact" and res["unsupported_mass"] == 0
    for e in ("ips", "snips", "dr"):
        assert res[e]["low"] <= true_mu <= res[e]["high"], (e, res[e], true_mu)
    g, _ = _logged_table(logger, test, "greedy")
    with pytest.warns(SupportWarning, match="does not cover"):
        bad = evaluate_logs(g, new, n_boot=20)
    assert bad["unsupported_mass"] > 0.3


def test_fit_logged_learns_from_partial_feedback(synth_split):
    train, test = synth_split
    logger = make_router("best-single").fit(train)
    t, _ = _logged_table(logger, train, "epsilon-greedy:eps=1", seed=1)
    learned = fit_logged(make_router("linear"), t)
    truth = test.dense()
    mu = lambda r: float(np.mean(truth[np.arange(test.n_prompts),  # noqa: E731
                                       np.argmax(r.score(test), axis=1)]))
    full = make_router("linear").fit(train)
    assert learned.logged_fit_["weighted"]
    random_mu = float(np.nanmean(truth))  # routing uniformly at random
    assert mu(learned) > random_mu + 0.05
    assert mu(learned) >= 0.9 * mu(full)
    warm = fit_logged(make_router("linear"), t, warm_start=train)
    assert warm.logged_fit_["warm_start_prompts"] == train.n_prompts
    with pytest.warns(UserWarning, match="cannot weight"):
        fit_logged(make_router("knn"), t)
