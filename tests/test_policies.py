"""Policies: propensities are distributions, match the draws, ignore column order."""

from __future__ import annotations

import doctest
import importlib

import numpy as np
import pytest

from llmrec.errors import CapabilityError, ConfigError, DataFormatError
from llmrec.policies import choose, decision_records, make_policy
from llmrec.routers import make_router

SPECS = ["greedy", "epsilon-greedy:eps=0.1", "epsilon-greedy:eps=1", "softmax:temperature=0.05",
         "softmax:temperature=2", "softmax:temperature=0.1,floor=0.2"]


def _scores(seed=0, n=50, m=6):
    rng = np.random.default_rng(seed)
    S = rng.normal(size=(n, m))
    S[3, 2] = -np.inf
    S[4, :] = -np.inf
    S[5, 1] = np.nan
    S[6, :] = 0.5  # a full tie
    return S


@pytest.mark.parametrize("spec", SPECS)
def test_probabilities_sum_to_one_over_allowed(spec):
    S = _scores()
    rng = np.random.default_rng(1)
    mask = rng.random(S.shape) < 0.7
    mask[np.arange(len(S)), rng.integers(0, S.shape[1], len(S))] = True
    for M in (None, mask):
        P = make_policy(spec).probabilities(S, M)
        assert P.shape == S.shape
        assert np.all(P >= 0)
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
        if M is not None:
            assert np.all(P[~M] == 0)


@pytest.mark.parametrize("spec", SPECS)
def test_propensities_match_empirical_frequencies(spec):
    row = np.array([[0.3, 0.9, 0.5, 0.9, -1.0]])
    pol = make_policy(spec)
    P = pol.probabilities(row)[0]
    n = 40_000
    chosen, prop = pol.choose(np.repeat(row, n, axis=0), rng=7)
    freq = np.bincount(chosen, minlength=5) / n
    # 4.5 standard errors of a binomial share
    tol = 4.5 * np.sqrt(P * (1 - P) / n) + 1e-9
    assert np.all(np.abs(freq - P) <= tol), (freq, P)
    np.testing.assert_allclose(prop, P[chosen])
    assert np.all(P[chosen] > 0)


@pytest.mark.parametrize("spec", SPECS)
def test_column_order_does_not_change_probabilities(spec):
    S = _scores(3)
    perm = np.random.default_rng(0).permutation(S.shape[1])
    pol = make_policy(spec)
    np.testing.assert_allclose(pol.probabilities(S)[:, perm], pol.probabilities(S[:, perm]))


def test_greedy_is_deterministic_without_ties_and_splits_ties():
    pol = make_policy("greedy")
    chosen, prop = pol.choose(np.array([[0.1, 0.7, 0.2]]), rng=0)
    assert chosen.tolist() == [1] and prop.tolist() == [1.0]
    assert pol.probabilities(np.array([[1.0, 1.0, 0.0]])).tolist() == [[0.5, 0.5, 0.0]]
    # every allowed LLM unknown (-inf): uniform over the allowed ones
    P = pol.probabilities(np.array([[-np.inf, -np.inf, 5.0]]), np.array([True, True, False]))
    assert P.tolist() == [[0.5, 0.5, 0.0]]


def test_softmax_limits():
    S = np.array([[0.0, 1.0]])
    hot = make_policy("softmax:temperature=1000").probabilities(S)[0]
    cold = make_policy("softmax:temperature=0.001").probabilities(S)[0]
    assert abs(hot[0] - 0.5) < 1e-3 and cold[1] > 0.999
    floor = make_policy("softmax:temperature=0.001,floor=0.5").probabilities(S)[0]
    assert floor[0] >= 0.25 - 1e-12


@pytest.mark.parametrize("bad", ["nope", "epsilon-greedy:eps=2", "softmax:temperature=0",
                                 "softmax:t=1", "epsilon-greedy:eps", "epsilon-greedy:eps=x",
                                 "", 3])
def test_bad_specs_raise_config_error(bad):
    with pytest.raises(ConfigError):
        make_policy(bad)


def test_spec_round_trip():
    for spec in SPECS:
        pol = make_policy(spec)
        assert make_policy(pol.spec).probabilities(_scores()).tolist() == \
            pol.probabilities(_scores()).tolist()


def test_mask_errors():
    with pytest.raises(ConfigError, match="allows no LLM"):
        make_policy("greedy").probabilities(np.zeros((2, 3)), np.array([[1, 0, 0], [0, 0, 0]]))
    with pytest.raises(ConfigError, match="shape"):
        make_policy("greedy").probabilities(np.zeros((2, 3)), np.ones((2, 2), bool))


def test_choose_with_router_and_candidates(synth):
    r = make_router("linear").fit(synth)
    texts = list(synth.texts[:30])
    d = choose(r, texts, "epsilon-greedy:eps=0.3", candidates=r.llm_names_[:3], random_state=0)
    assert len(d) == 30 and set(d.llms) <= set(r.llm_names_[:3])
    np.testing.assert_allclose(d.probabilities.sum(axis=1), 1.0)
    assert np.all(d.probabilities[:, 3:] == 0)
    g = choose(r, texts)
    assert np.all(g.propensity == 1.0) or np.all(g.propensity > 0)
    np.testing.assert_array_equal(g.llms, r.recommend(texts, k=1)[0][:, 0])
    recs = decision_records(r, texts, d, rng=0)
    assert [x["chosen"] for x in recs] == list(d.llms)
    assert all(x["candidates"] == r.llm_names_[:3] for x in recs)
    assert all(len(x["scores"]) == 3 and x["source"] == "recommend" for x in recs)
    assert len({x["decision_id"] for x in recs}) == 30


def test_sample_weight_on_linear(synth):
    base = make_router("linear").fit(synth)
    ones = make_router("linear").fit(synth, sample_weight=np.ones(synth.shape))
    np.testing.assert_allclose(base.coef_, ones.coef_, atol=1e-4)
    W = np.ones(synth.shape)
    W[:, 0] = 0.0  # LLM 0 has no weighted record: it scores -inf
    z = make_router("linear").fit(synth, sample_weight=W)
    assert np.all(np.isneginf(z.score(list(synth.texts[:3]))[:, 0]))
    with pytest.raises(DataFormatError, match="shape"):
        make_router("linear").fit(synth, sample_weight=np.ones((2, 2)))
    with pytest.raises(CapabilityError, match="cannot weight"):
        make_router("knn").fit(synth, sample_weight=np.ones(synth.shape))


@pytest.mark.parametrize("mod", ["llmrec.policies.base", "llmrec.policies.decide",
                                 "llmrec.policies.learning", "llmrec.data.decisions",
                                 "llmrec.evaluation.ope"])
def test_docstring_examples(mod):
    res = doctest.testmod(importlib.import_module(mod), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


# ------------------------------------------------- uncertainty-aware policies
def test_ucb_and_thompson_need_std_and_use_it():
    S = np.array([[0.5, 0.4, 0.1]])
    sd = np.array([[0.0, 0.2, 0.0]])
    with pytest.raises(CapabilityError, match="uncertainty"):
        make_policy("ucb").probabilities(S)
    assert make_policy("ucb:beta=1").probabilities(S, std=sd).tolist() == [[0, 1, 0]]
    assert make_policy("ucb:beta=0").probabilities(S, std=sd).tolist() == [[1, 0, 0]]
    P = make_policy("thompson").probabilities(S, std=sd)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert 0.2 < P[0, 1] < 0.45 and P[0, 2] == 0  # P(N(0.4, 0.2) > 0.5) = 0.31
    # deterministic function of its input; choices follow it
    np.testing.assert_array_equal(P, make_policy("thompson").probabilities(S, std=sd))
    chosen, prop = make_policy("thompson").choose(np.repeat(S, 10000, 0), rng=0,
                                                  std=np.repeat(sd, 10000, 0))
    freq = np.bincount(chosen, minlength=3) / 10000
    assert np.all(np.abs(freq - P[0]) < 0.02)
    np.testing.assert_allclose(prop, P[0][chosen])


def test_linear_bayes_router_uncertainty_shrinks_with_data(synth, tmp_path):
    from llmrec.routers import load_router
    W = np.ones(synth.shape)
    W[40:, 0] = 0.0  # LLM 0 seen on 40 prompts only
    r = make_router("linear-bayes", alpha=1.0).fit(synth, sample_weight=W)
    sd = r.score_std(list(synth.texts[:50]))
    assert sd.shape == (50, synth.n_llms)
    assert np.all(sd[:, 0] > sd[:, 1:].max(axis=1))
    r.save(tmp_path / "m")
    r2 = load_router(tmp_path / "m")
    np.testing.assert_allclose(r2.score_std(list(synth.texts[:5])), sd[:5], rtol=1e-5)
    d = choose(r2, list(synth.texts[:10]), "thompson", random_state=0)
    assert np.all(d.propensity > 0) and np.all(d.propensity <= 1)
    with pytest.raises(CapabilityError, match="score_std"):
        choose(make_router("linear").fit(synth), ["x"], "ucb")
