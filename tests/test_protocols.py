"""Protocols on small synthetic records (a light TF-IDF keeps them fast)."""

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.datasets import make_synthetic
from llmrec.encoders import TfidfEncoder
from llmrec.errors import ConfigError
from llmrec.evaluation.protocols import (cold_llm_protocol, cold_prompt_protocol,
                                         routereval_protocol, router_specs, scaling_curve,
                                         shared_encoder)


@pytest.fixture(scope="module")
def rec():
    return make_synthetic(300, 8, n_topics=4, seed=1)


def enc():
    return TfidfEncoder(dim=32, n_features=2 ** 12)


def _drop_timing(df):
    return df.drop(columns=[c for c in df if c.endswith("seconds")])


@pytest.fixture(scope="module")
def re_result(rec):
    return routereval_protocol(rec, ["best-single", "knn", "oracle", "random",
                                     ("oracle-mix", {"p": 0.5})],
                               sizes=(3, 5), groups=("all_strong", "strong_to_weak"),
                               encoder=enc(), n_boot=50, reference=0.8, seed=3)


def test_routereval_shape_and_table(re_result):
    tidy, table = re_result
    assert len(tidy) == 2 * 2 * 5
    for c in ("router", "m", "group", "mu", "vr", "vb", "ep", "mu_low", "mu_high", "vb_low",
              "vb_high", "hit@1", "hit@3", "n_test"):
        assert c in tidy, c
    # RouterEval layout: routers as rows, (metric, m) columns, averaged over groups
    assert list(table.index) == ["best-single", "knn", "oracle", "random", "oracle-mix(p=0.5)"]
    assert set(table.columns) == {(m, s) for m in ("mu", "vr", "vb", "ep") for s in (3, 5)}
    g = tidy[tidy.router == "knn"].groupby("m").mu.mean()
    assert table.loc["knn", ("mu", 3)] == pytest.approx(g[3])
    np.testing.assert_allclose(tidy.vr, tidy.mu / 0.8)


def test_routereval_bounds(re_result):
    tidy = re_result.tidy
    for (m, grp), g in tidy.groupby(["m", "group"]):
        g = g.set_index("router")
        assert g.loc["oracle", "mu"] >= g["mu"].max() - 1e-12
        assert g.loc["oracle", "ep"] == 0.0
        # r_o(0.5) lies between a random pick and the oracle; its Ep is the mixture's
        assert g.loc["oracle-mix(p=0.5)", "ep"] == pytest.approx(
            -(0.5 + 0.5 / m) * np.log2(0.5 + 0.5 / m) - (m - 1) * (0.5 / m) * np.log2(0.5 / m))
        assert g.loc["oracle-mix(p=0.5)", "mu"] <= g.loc["oracle", "mu"]
        # its CI is over the expected score per prompt, p * best + (1 - p) * row mean
        mix = g.loc["oracle-mix(p=0.5)"]
        assert mix["mu_low"] - 0.02 <= mix["mu"] <= mix["mu_high"] + 0.02
        assert np.isnan(mix["hit@1"])
        assert g.loc["best-single", "mu_low"] <= g.loc["best-single", "mu"] \
            <= g.loc["best-single", "mu_high"]


def test_routereval_pools_and_determinism(rec, re_result):
    pools = re_result.details["pools"]
    assert set(pools) == {3, 5} and all(len(v) == m for m in pools for v in pools[m].values())
    again = routereval_protocol(rec, ["best-single", "knn", "oracle", "random",
                                      ("oracle-mix", {"p": 0.5})],
                                sizes=(3, 5), groups=("all_strong", "strong_to_weak"),
                                encoder=enc(), n_boot=50, reference=0.8, seed=3)
    pd.testing.assert_frame_equal(_drop_timing(again.tidy), _drop_timing(re_result.tidy))


def test_cold_prompt(rec):
    with pytest.warns(UserWarning, match="broken"):
        res = cold_prompt_protocol(rec, ["best-single", "knn", "als", "oracle",
                                         ("broken", "knn", {"k": 0})],
                                   encoder=enc(), n_boot=50, seed=0)
    t = res.table
    assert t.loc["oracle", "hit@1"] == 1.0 and t.loc["oracle", "mrr"] == 1.0
    assert t.loc["oracle", "mu"] >= t["mu"].max() - 1e-12
    assert "k must be >= 1" in t.loc["broken", "error"] and np.isnan(t.loc["broken", "mu"])
    for c in ("recall@3", "ndcg@3", "cascade@3_success_rate", "cascade@3_mean_calls",
              "cascade@3_mean_cost", "aiq", "p_vs_best_single", "hit@3_low"):
        assert c in t, c
    assert np.isnan(t.loc["best-single", "p_vs_best_single"])
    assert 0 <= t.loc["oracle", "p_vs_best_single"] < 0.05
    shares = res.details["selection_share"]
    assert set(shares) == {"best-single", "knn", "als", "oracle"}
    assert all(abs(sum(v) - 1) < 1e-9 for v in shares.values())
    assert max(shares["best-single"]) == 1.0
    assert set(res.details["cost_curves"]["knn"].columns) == {"lambda", "cost", "quality"}
    assert 0 < t.loc["knn", "aiq"] <= 1


def test_cold_llm(rec):
    res = cold_llm_protocol(rec, ["best-single", "knn", "oracle"], held_out=2, n_probe=30,
                            encoder=enc(), n_boot=0, seed=0)
    t = res.table
    assert t["adds_llms"].tolist() == [True, False, True]
    assert t.loc["knn", "new_llm_share"] == 0.0  # cannot add LLMs: routes among kept ones
    assert t.loc["oracle", "new_llm_share"] == t.loc["oracle", "oracle_new_share"]
    assert len(res.details["held_out"]) == 2 and res.details["n_probe"] == 30


def test_scaling_curve(rec):
    res = scaling_curve(rec, ["best-single", "knn"], sizes=[2, 4, 8], n_repeats=2,
                        encoder=enc(), seed=0)
    tidy = res.tidy
    assert set(tidy.router) == {"oracle", "random", "best-single", "knn"}
    assert len(tidy) == 4 * (2 + 2 + 1)  # one pool when m is every LLM
    for _, g in tidy.groupby(["m", "repeat"]):
        g = g.set_index("router")
        assert g.loc["oracle", "mu"] >= g["mu"].max() - 1e-12
        assert g.loc["random", "mu"] <= g.loc["oracle", "mu"]
    assert ("mu", "mean") in res.table.columns
    again = scaling_curve(rec, ["best-single", "knn"], sizes=[2, 4, 8], n_repeats=2,
                          encoder=enc(), seed=0)
    pd.testing.assert_frame_equal(again.tidy, tidy)
    with pytest.raises(ConfigError, match="sizes"):
        scaling_curve(rec, ["best-single"], sizes=[9])
    with pytest.raises(ConfigError, match="n_repeats"):
        scaling_curve(rec, ["best-single"], sizes=[2], n_repeats=0)


def test_router_specs_and_no_text():
    assert router_specs("knn") == [("knn", "knn", {})]
    assert router_specs([("my", "knn", {"k": 3})]) == [("my", "knn", {"k": 3})]
    with pytest.raises(ConfigError, match="twice"):
        router_specs(["knn", "knn"])
    with pytest.raises(ConfigError, match="not understood"):
        router_specs([42])
    with pytest.raises(ConfigError, match="no routers"):
        router_specs([])
    base = make_synthetic(120, 4, seed=0)
    notext = PerformanceRecords(base.scores, base.prompts.drop(columns=["text"]), base.llms,
                                observed=base.observed)
    assert shared_encoder(notext, notext) is None
    with pytest.warns(UserWarning):
        res = cold_prompt_protocol(notext, ["best-single", "knn"], n_boot=0)
    assert "needs prompt text" in res.table.loc["knn", "error"]
    assert np.isfinite(res.table.loc["best-single", "mu"])


def test_real_data_routereval_bounds(shared_data):
    """EmbedLLM sample (1,000 MMLU prompts x 24 LLMs, no text): bounds on RouterEval pools."""
    from llmrec.datasets import load
    rec = load(shared_data / "llm2vec" / "triple_correctness.csv")
    assert rec.shape == (1000, 24)
    res = routereval_protocol(rec, ["best-single", "random", "oracle",
                                    ("oracle-mix", {"p": 0.5})], sizes=(3, 10),
                              n_boot=0, n_draws=200, seed=42, reference="mmlu")
    for _, g in res.tidy.groupby(["m", "group"]):
        g = g.set_index("router")
        assert g.loc["random", "mu"] < g.loc["oracle-mix(p=0.5)", "mu"] < g.loc["oracle", "mu"]
        assert g.loc["best-single", "mu"] <= g.loc["oracle", "mu"]
    assert res.table.loc["oracle", ("vr", 10)] == pytest.approx(
        res.table.loc["oracle", ("mu", 10)] / 0.864)


def test_real_data_apgr_routellm(shared_data):
    """RouteLLM GSM8K (Mixtral vs GPT-4): an oracle router recovers the gap fastest."""
    from llmrec.datasets import load
    from llmrec.evaluation.metrics import apgr
    rec = load(shared_data / "routellm" / "gsm8k_gsm8k_responses.csv")
    T = rec.dense()
    T = T[~np.isnan(T).any(axis=1)]
    strong = int(np.argmax(T.mean(axis=0)))
    s, w = T[:, strong], T[:, 1 - strong]
    orc = apgr(s - w, s, w)
    rnd = apgr(np.random.default_rng(0).random(len(s)), s, w)
    assert orc["apgr"] > 0.9 and orc["cpt50"] < 0.5 * rnd["cpt50"]
    assert abs(rnd["apgr"] - 0.55) < 0.1  # random: PGR(f) ~ f, mean over 0.1..1 = 0.55


def test_cold_prompt_two_llms_apgr():
    rec = make_synthetic(300, 2, n_topics=3, seed=5, topic_spread=2.5)
    res = cold_prompt_protocol(rec, ["best-single", "knn", "oracle"], encoder=enc(),
                               n_boot=0, test=0.3)
    t = res.table
    assert {"apgr", "cpt50", "cpt80"} <= set(t.columns)
    assert t.loc["oracle", "apgr"] >= t.loc["best-single", "apgr"]
    assert t.loc["oracle", "cpt50"] <= t.loc["best-single", "cpt50"]
