"""The replay simulator and the OPE-accuracy protocol on small synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from llmrec.datasets import make_synthetic
from llmrec.encoders import TfidfEncoder
from llmrec.errors import ConfigError, DataFormatError
from llmrec.evaluation.replay import ope_accuracy, plot_replay, replay, replay_split, replay_vw


@pytest.fixture(scope="module")
def data():
    rec = make_synthetic(600, 4, n_topics=3, seed=2)
    X = TfidfEncoder(dim=32).fit(rec.texts).encode(rec.texts)
    return rec, X


def test_replay_reveals_only_chosen_scores_and_reports(data, tmp_path):
    rec, X = data
    res = replay(rec, X, "linear-bayes", policy="thompson", retrain_every=100, seed=0,
                 keep_log=True)
    s = res.summary
    stream, test = replay_split(rec, 0.2, 0)
    truth = rec.dense()
    assert s["decisions"] == len(stream) == len(res.chosen_score)
    assert s["n_fits"] == int(np.ceil(len(stream) / 100)) + 1  # + the refit after 50
    # every revealed score is the true score of the logged choice of that prompt
    log = res.log
    cols = [rec.llm_names.index(c) for c in log["chosen"]]
    np.testing.assert_allclose(log["outcome"], truth[stream, cols])
    np.testing.assert_allclose(res.chosen_score, truth[stream, cols])
    assert np.all(res.regret_oracle >= -1e-9) and np.all(np.diff(res.regret_oracle) >= -1e-9)
    assert 0 <= s["mu_test"] <= 1 and s["mu_test_oracle"] >= s["mu_test_full"] - 1e-9
    assert s["mu_test"] > float(np.nanmean(truth[test]))  # beats random routing
    p = plot_replay([res], tmp_path / "r.png")
    assert p.stat().st_size > 1000


def test_vowpal_wabbit_on_the_same_stream(data):
    pytest.importorskip("vowpalwabbit", reason="vowpalwabbit (the bench extra) is absent")
    rec, X = data
    stream, _ = replay_split(rec, 0.2, 0)
    for algo in ("epsilon", "squarecb"):
        v = replay_vw(rec, X, algorithm=algo, seed=0)
        assert v.summary["decisions"] == len(stream) and 0 <= v.summary["mu_test"] <= 1
        assert np.all((v.propensity > 0) & (v.propensity <= 1 + 1e-9))
    with pytest.raises(ConfigError):
        replay_vw(rec, X, algorithm="bagging")


def test_replay_errors(data):
    rec, X = data
    with pytest.raises(DataFormatError, match="feature row"):
        replay(rec, X[:10])
    with pytest.raises(ConfigError):
        replay(rec, X, retrain_every=0)
    with pytest.raises(ConfigError):
        replay_split(rec, 1.5)


def test_ope_accuracy_protocol(data):
    rec, X = data
    out = ope_accuracy(rec, X, logging_policy="epsilon-greedy:eps=0.5", target_router="knn",
                       seed=0, n_boot=100)
    assert out["n"] == 360 and 0 <= out["truth"] <= 1
    for e in ("ips", "snips", "dm", "dr"):
        assert out[e]["error"] == pytest.approx(out[e]["estimate"] - out["truth"])
    assert abs(out["dr"]["error"]) < 0.15
