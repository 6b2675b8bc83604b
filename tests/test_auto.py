"""The `auto` router: stacking on out-of-fold predictions, a no-regret guard, and
tuning that sees training prompts only."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.datasets import make_synthetic
from llmrec.errors import ConfigError
from llmrec.routers import load_router, make_router
from llmrec.routers import auto as auto_mod

from .router_conformance import RouterConformance, small_encoder


class TestAuto(RouterConformance):
    def make(self):
        return make_router("auto", candidates=["group:category", "knn:k=10", "linear"])


class TestBestPerGroup(RouterConformance):
    def make(self):
        return make_router("best-per-group", column="category")


def _mu(router, test, inp=None):
    picks = router.score(test if inp is None else inp).argmax(axis=1)
    truth = test.dense()
    return float(np.nanmean(truth[np.arange(len(picks)), picks]))


@pytest.fixture(scope="module")
def split():
    rec = make_synthetic(1200, 6, n_topics=4, seed=3, topic_spread=2.5)
    return rec.select_prompts(range(900)), rec.select_prompts(range(900, 1200))


def _no_signal():
    """(train, test) whose scores do not depend on the prompt; synthetic LLM prices."""
    base = make_synthetic(800, 5, n_topics=4, seed=7)
    rng = np.random.default_rng(7)
    Y = (rng.random((800, 5)) < np.array([0.50, 0.58, 0.62, 0.55, 0.45])).astype(np.float32)
    rec = PerformanceRecords(Y, base.prompts, base.llms)
    return rec.select_prompts(range(640)), rec.select_prompts(range(640, 800))


def test_no_signal_equals_best_single():
    """Scores independent of the prompt: the guard keeps the best single LLM."""
    train, test = _no_signal()
    auto = make_router("auto").fit(train, encoder=small_encoder())
    single = make_router("best-single").fit(train)
    assert auto.tuning_["full"]["margin"] is None and auto.tuning_["text"]["margin"] is None
    for inp in (test, test.texts):
        np.testing.assert_array_equal(auto.recommend(inp, k=5)[0], single.recommend(inp, k=5)[0])


def test_routes_where_it_pays(split):
    train, test = split
    auto = make_router("auto").fit(train, encoder=small_encoder())
    single = _mu(make_router("best-single").fit(train), test)
    group = _mu(make_router("best-per-group").fit(train), test)
    assert auto.tuning_["full"]["margin"] is not None
    assert _mu(auto, test) > single + 0.1
    assert _mu(auto, test) >= group - 0.02
    assert _mu(auto, test, test.texts) > single + 0.1  # text only: the "text" stack


def test_stacking_uses_out_of_fold_predictions(split):
    train, _ = split
    cands = ["knn:k=10", "linear:alpha=10"]
    auto = make_router("auto", candidates=cands, n_folds=3).fit(train, encoder=small_encoder())
    X = auto.features(train)
    for f in range(3):
        tr, te = np.flatnonzero(auto.folds_ != f), np.flatnonzero(auto.folds_ == f)
        for i, spec in enumerate(cands):
            e = auto_mod._Expert(spec).fit(train.select_prompts(tr), X[tr], auto.llms_)
            S = e.predict(X[te], {}, len(te))
            np.testing.assert_allclose(auto.oof_[te, i], S - S.mean(axis=1, keepdims=True),
                                       rtol=1e-4, atol=1e-5)
            # and they differ from in-sample predictions of the final candidate
            ins = auto.experts_[i].predict(X[te], {}, len(te))
            assert not np.allclose(auto.oof_[te, i], ins - ins.mean(axis=1, keepdims=True))


def test_tuning_never_sees_test_prompts(split, monkeypatch):
    train, test = split
    seen = set()
    orig = auto_mod._Expert.fit

    def spy(self, records, X, llms):
        seen.update(records.prompt_ids)
        return orig(self, records, X, llms)

    monkeypatch.setattr(auto_mod._Expert, "fit", spy)
    val = train.select_prompts(range(750, 900))
    fit = train.select_prompts(range(750))
    auto = make_router("auto").fit(fit, encoder=small_encoder(), val_records=val)
    assert seen <= set(fit.prompt_ids)
    assert not seen & set(test.prompt_ids) and not seen & set(val.prompt_ids)
    assert auto.tuning_["tuned_on"].startswith("val_records")
    # without val_records the tuning share comes out of the training prompts
    seen.clear()
    auto = make_router("auto").fit(fit, encoder=small_encoder())
    assert seen <= set(fit.prompt_ids) and "training prompts" in auto.tuning_["tuned_on"]


def test_save_load_and_tuning_kept(split, tmp_path):
    train, test = split
    auto = make_router("auto").fit(train, encoder=small_encoder())
    back = load_router(auto.save(tmp_path / "m"))
    np.testing.assert_array_equal(back.score(test), auto.score(test))
    np.testing.assert_array_equal(back.score(test.texts), auto.score(test.texts))
    assert back.tuning_["full"]["margin"] == auto.tuning_["full"]["margin"]
    assert back.tuning_["seconds"] > 0


def test_bad_params(split):
    train, _ = split
    with pytest.raises(ConfigError, match="n_folds"):
        make_router("auto", n_folds=1).fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="key=value"):
        make_router("auto", candidates=["knn:k"]).fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="unknown router"):
        make_router("auto", candidates=["nope"]).fit(train, encoder=small_encoder())
    with pytest.raises(ConfigError, match="truth"):
        make_router("auto", candidates=["oracle"]).fit(train, encoder=small_encoder())


def test_best_per_group(split):
    train, test = split
    r = make_router("best-per-group", column="category").fit(train)
    S = r.score(test)
    cat = test.prompts["category"].to_numpy()
    for c in np.unique(cat)[:2]:
        rows = train.prompts["category"].to_numpy() == c
        means = np.nanmean(train.dense()[rows], axis=0)
        np.testing.assert_allclose(S[cat == c][0], means, rtol=1e-5)
    # plain texts and unseen groups fall back to the best single LLM
    single = make_router("best-single").fit(train).score(["x"])
    np.testing.assert_allclose(r.score(["x"]), single, rtol=1e-6)
    unseen = pd.DataFrame({"text": ["x"], "category": ["never-seen"]})
    np.testing.assert_allclose(r.score(unseen), single, rtol=1e-6)
    with pytest.raises(ConfigError, match="no column"):
        make_router("best-per-group", column="nope").fit(train)


def test_cli_fit_defaults_to_auto_and_prints_tuning(tmp_path, capsys):
    from llmrec import cli
    rec = make_synthetic(300, 4, n_topics=3, seed=0)
    rec.to_long(with_text=True).to_csv(tmp_path / "r.csv", index=False)
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "--data", str(tmp_path / "r.csv"), "--encoder", "tfidf",
                  "--encoder-param", "dim=16", "--out", str(tmp_path / "m")])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "auto: best single LLM" in out and "tuned on" in out
    r = load_router(tmp_path / "m")
    assert r.name == "auto" and r.tuning_["candidates"]
    with pytest.raises(SystemExit) as e:
        cli.main(["fit", "--data", str(tmp_path / "r.csv"), "--router", "knn", "--tune",
                  "--encoder", "tfidf", "--encoder-param", "dim=16", "--out", str(tmp_path / "k")])
    assert e.value.code == 0
    assert "knn: chose k=" in capsys.readouterr().out
    k = load_router(tmp_path / "k")
    assert k.tuning_["chosen"]["k"] in (5, 10, 20, 50, 100, 200) and k.tuning_["seconds"] > 0


# ------------------------------------------------------------ cost-aware guard
def _utility(picks, test, costs, w):
    truth = test.dense()
    rows = np.arange(len(picks))
    return float(np.nanmean(truth[rows, picks] - w * costs[picks]))


def test_cost_guard_no_signal_keeps_the_best_single_llm_at_each_cost_weight():
    """No prompt signal: wherever the guard of a cost weight does not pass, auto is
    the best single LLM by mean score minus weighted cost (what best-single ranks by),
    on metadata and on plain text; where it passes by chance (near a weight at which
    two LLMs' utilities tie) it costs next to no utility on held-out prompts."""
    train, test = _no_signal()
    auto = make_router("auto").fit(train, encoder=small_encoder())
    single = make_router("best-single").fit(train)
    c = auto.llm_costs_
    firsts, kept = set(), 0
    for w in [1e-4, *auto.cost_grid_, 10.0]:
        g = auto._guards(w)
        for inp, v in ((test, 0), (test.texts, 1)):
            got = auto.recommend_ids(inp, k=1, cost_weight=w)[0][:, 0]
            ref = single.recommend_ids(inp, k=1, cost_weight=w)[0][:, 0]
            if g[v][0] is None:
                np.testing.assert_array_equal(got, ref)
                kept += 1
            assert _utility(got, test, c, w) >= _utility(ref, test, c, w) - 0.03
        firsts.add(int(ref[0]))
    assert len(firsts) > 1  # the cost weights span a change of the best single LLM
    assert kept >= 0.8 * 2 * (len(auto.cost_grid_) + 2)


def test_cost_guard_routes_and_never_costs_utility(split):
    """With signal and prices, auto at a cost weight beats the best single LLM at that
    weight in utility (score - weight x cost) on held-out prompts, and policies and
    recommend agree on what it picks."""
    from llmrec.policies import choose
    from llmrec.routers import llm_costs
    train, test = split
    auto = make_router("auto").fit(train, encoder=small_encoder())
    single = make_router("best-single").fit(train)
    c = llm_costs(train)
    assert np.ptp(c) > 0 and auto.cost_grid_ is not None
    routed = [g for g in auto.tuning_["full"]["cost_guard"] if g["margin"] is not None]
    assert routed and all(g["lcb"] > 0 for g in routed)
    from llmrec.routers.tuning import describe_tuning
    assert f"with cost_weight: routes at {len(routed)} of 17 cost weights" in \
        describe_tuning(auto)
    wins = 0
    for w in auto.cost_grid_[::4]:
        a = _utility(auto.recommend_ids(test, k=1, cost_weight=w)[0][:, 0], test, c, w)
        s = _utility(single.recommend_ids(test, k=1, cost_weight=w)[0][:, 0], test, c, w)
        assert a >= s - 0.02, (w, a, s)
        wins += a > s + 0.02
        d = choose(auto, test, cost_weight=w)
        np.testing.assert_array_equal(d.chosen, auto.recommend_ids(test, k=1,
                                                                   cost_weight=w)[0][:, 0])
    assert wins >= 1
    # utility scores are what recommend ranks
    S = auto.score(test, cost_weight=float(auto.cost_grid_[8]))
    np.testing.assert_array_equal(
        S.argmax(axis=1), auto.recommend_ids(test, k=1,
                                             cost_weight=float(auto.cost_grid_[8]))[0][:, 0])


def test_cost_guard_saved_and_models_without_it_still_load(split, tmp_path):
    train, test = split
    auto = make_router("auto").fit(train, encoder=small_encoder())
    back = load_router(auto.save(tmp_path / "m"))
    for w in (0.0, float(auto.cost_grid_[6]), float(auto.cost_grid_[12]), 123.0):
        np.testing.assert_array_equal(back.score(test, cost_weight=w),
                                      auto.score(test, cost_weight=w))
    # a model saved before the cost guard existed: plain score - weight x cost
    state, arrays = auto._get_state()
    state = {k: v for k, v in state.items() if k != "cost_grid"}
    old = make_router("auto")
    for a in ("llms_", "llm_costs_", "featurizer_", "llm_train_mean_"):
        setattr(old, a, getattr(auto, a))
    old._set_state(state, arrays)
    w = float(auto.cost_grid_[8])
    np.testing.assert_allclose(old.score(test, cost_weight=w),
                               old.score(test) - w * auto.llm_costs_[None, :], atol=1e-6)


def test_cost_weight_errors(split):
    from llmrec.errors import CapabilityError
    train, test = split
    auto = make_router("auto", candidates=["knn:k=10"]).fit(train, encoder=small_encoder())
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ConfigError, match="cost_weight"):
            auto.score(test, cost_weight=bad)
    free = PerformanceRecords(train.dense(), train.prompts, train.llms[["name"]])
    r = make_router("auto", candidates=["knn:k=10"]).fit(free, encoder=small_encoder())
    assert r.cost_grid_ is None
    with pytest.raises(CapabilityError, match="costs"):
        r.recommend(test.texts, cost_weight=0.1)
