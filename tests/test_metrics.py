"""Every metric against values computed by hand on tiny arrays."""

import math

import numpy as np
import pytest

from llmrec.errors import ConfigError, DataFormatError, UnknownIdError
from llmrec.evaluation import metrics as M

NAN = np.nan


def h_bits(p):
    return -sum(x * math.log2(x) for x in p if x > 0)


def softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


# ------------------------------------------------------------- RouterEval view
TRUTH = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
PRED = np.array([[3.0, 1.0, 2.0], [0.0, 0.0, 0.0], [0.0, 1.0, 2.0]])


def test_routereval_metrics_by_hand():
    m = M.routereval_metrics(PRED, TRUTH, reference=0.5)
    # picks: 0, 0 (tie -> lowest position), 2 -> true scores 1, 0, 0
    assert m["mu"] == pytest.approx(1 / 3)
    assert m["vr"] == pytest.approx((1 / 3) / 0.5)
    # column means 2/3, 2/3, 1/3 -> best 2/3
    assert m["vb"] == pytest.approx((1 / 3) / (2 / 3))
    # softmax([3,1,2]) has entropy 1.200893 bits; uniform over 3 has log2(3)
    assert h_bits(softmax([3, 1, 2])) == pytest.approx(1.200893, abs=1e-5)
    assert m["ep"] == pytest.approx((2 * 1.200893 + math.log2(3)) / 3, abs=1e-5)
    assert m["n_prompts"] == 3


def test_routereval_reference_by_name_and_override():
    m = M.routereval_metrics(PRED, TRUTH, reference="mmlu")
    assert m["vr"] == pytest.approx((1 / 3) / 0.864)
    assert np.isnan(M.routereval_metrics(PRED, TRUTH)["vr"])
    with pytest.raises(ConfigError, match="no reference score"):
        M.routereval_metrics(PRED, TRUTH, reference="nope")


def test_routereval_probs_for_oracle_and_unobserved_pick():
    onehot = np.eye(3)
    assert M.routereval_metrics(TRUTH, TRUTH, probs=onehot)["ep"] == 0.0
    # a pick on an unobserved cell is left out of mu, never read as 0
    truth = np.array([[NAN, 1.0], [1.0, 0.0]])
    assert M.routereval_metrics(np.array([[1.0, 0.0], [1.0, 0.0]]), truth)["mu"] == 1.0


def test_routereval_errors():
    with pytest.raises(DataFormatError, match="shape"):
        M.routereval_metrics(PRED[:, :2], TRUTH)
    with pytest.raises(DataFormatError, match="2-D"):
        M.routereval_metrics(PRED, TRUTH[0])
    with pytest.raises(DataFormatError, match="no prompts"):
        M.routereval_metrics(np.zeros((0, 3)), np.zeros((0, 3)))
    with pytest.raises(DataFormatError, match="no finite"):
        M.softmax_entropy_bits(np.array([[-np.inf, -np.inf]]))


def test_oracle_mix_by_hand():
    truth = np.array([[1.0, 0.0], [0.0, 1.0]])
    m = M.oracle_mix_metrics(truth, p=0.5, n_draws=4000, seed=1)
    # p * 1 + (1 - p) * 1/2 = 0.75; mixture [0.75, 0.25] -> 0.811278 bits
    assert m["mu"] == pytest.approx(0.75, abs=0.02)
    assert m["ep"] == pytest.approx(h_bits([0.75, 0.25]))
    assert m["ep"] == pytest.approx(0.811278, abs=1e-6)
    one = M.oracle_mix_metrics(truth, p=1.0, n_draws=10)
    assert (one["mu"], one["ep"], one["vb"]) == (1.0, 0.0, 2.0)
    assert M.oracle_mix_metrics(truth, p=0.0, n_draws=10)["ep"] == pytest.approx(1.0)
    # same seed, same answer
    assert M.oracle_mix_metrics(truth, 0.3, 50, seed=3)["mu"] == \
        M.oracle_mix_metrics(truth, 0.3, 50, seed=3)["mu"]
    with pytest.raises(ConfigError):
        M.oracle_mix_metrics(truth, p=1.5)


def test_selection_share_and_entropy():
    np.testing.assert_allclose(M.selection_share([0, 2, 2, 2], 3), [0.25, 0, 0.75])
    assert M.selection_entropy_bits([0, 2, 2, 2], 3) == pytest.approx(h_bits([0.25, 0.75]))
    with pytest.raises(UnknownIdError):
        M.selection_share([3], 3)


# -------------------------------------------------------- recommendation view
RT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
RP = np.array([[0.1, 0.9, 0.5], [0.1, 0.9, 0.5], [1.0, 2.0, 3.0]])
# rankings: [1, 2, 0], [1, 2, 0], [2, 1, 0]; the third prompt has no success (left out)


def test_hit_recall_mrr_by_hand():
    assert M.hit_at_k(RP, RT, k=1) == 0.0
    assert M.hit_at_k(RP, RT, k=2) == 0.5
    assert M.hit_at_k(RP, RT, k=3) == 1.0
    assert M.recall_at_k(RP, RT, k=2) == 0.5
    assert M.mrr(RP, RT) == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert np.isnan(M.hit_at_k(RP, np.zeros((3, 3))))


def test_ndcg_by_hand():
    # binary: prompt 0 DCG 0; prompt 1 success at rank 2 -> 1/log2(3), ideal 1
    assert M.ndcg_at_k(RP, RT, k=2) == pytest.approx((0 + 1 / math.log2(3)) / 2)
    # graded: ranking [0, 1], gains 0.5, 1.0; ideal order 1.0, 0.5
    truth = np.array([[0.5, 1.0, 0.0]])
    pred = np.array([[3.0, 2.0, 1.0]])
    dcg = 0.5 + 1.0 / math.log2(3)
    idcg = 1.0 + 0.5 / math.log2(3)
    assert M.ndcg_at_k(pred, truth, k=2, graded=True) == pytest.approx(dcg / idcg)


def test_success_relative_and_threshold():
    t = np.array([[0.9, 0.86, 0.5, NAN]])
    np.testing.assert_array_equal(M.success_matrix(t, relative=0.95), [[1, 1, 0, 0]])
    np.testing.assert_array_equal(M.success_matrix(t, threshold=0.86), [[1, 1, 0, 0]])
    with pytest.raises(ConfigError):
        M.success_matrix(t, relative=1.5)


# ------------------------------------------------------------- cascade view
def test_cascade_by_hand():
    truth = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    pred = np.tile([3.0, 2.0, 1.0], (3, 1))
    r = M.cascade_metrics(pred, truth, k=2, costs=[1.0, 2.0, 4.0])
    # calls: 2 (fail, success), 2 (both fail), 1 ; costs 3, 3, 1
    assert r == pytest.approx({"success_rate": 2 / 3, "mean_calls": 5 / 3, "mean_cost": 7 / 3})
    per_record = np.array([[1.0, 2.0, 4.0], [2.0, 2.0, 2.0], [5.0, 1.0, 1.0]])
    assert M.cascade_metrics(pred, truth, k=2, costs=per_record)["mean_cost"] == \
        pytest.approx((3 + 4 + 5) / 3)
    with pytest.raises(DataFormatError, match="per-LLM costs"):
        M.cascade_metrics(pred, truth, costs=[1.0, 2.0])


# ---------------------------------------------------------------- cost view
def test_quality_cost_curve_by_hand():
    truth = np.array([[1.0, 0.0], [1.0, 1.0]])
    df = M.quality_cost_curve(truth, [10.0, 1.0], pred_scores=truth, lambdas=[0.0, 2.0])
    assert df.to_dict("list") == {"lambda": [0.0, 2.0], "cost": [10.0, 1.0],
                                  "quality": [1.0, 0.5]}
    df2 = M.quality_cost_curve(truth, [10.0, 1.0], picks_fn=lambda lam: np.array([1, 1]),
                               lambdas=[0.0])
    assert df2.cost.tolist() == [1.0] and df2.quality.tolist() == [0.5]
    with pytest.raises(ConfigError, match="exactly one"):
        M.quality_cost_curve(truth, [1.0, 1.0])


def test_aiq_convex_hull_by_hand():
    # hull (0, .2) -> (.6, .8) -> (1, .9); (.5, .3) lies below it
    assert M.aiq([0.0, 0.5, 0.6, 1.0], [0.2, 0.3, 0.8, 0.9]) == pytest.approx(
        0.6 * (0.2 + 0.8) / 2 + 0.4 * (0.8 + 0.9) / 2)
    # non-decreasing: a dearer but worse point does not pull the curve down
    assert M.aiq([0.0, 1.0], [0.5, 0.3]) == pytest.approx(0.5)
    # cost axis normalised to [0, 1]: scaling costs does not change AIQ
    assert M.aiq([0.0, 60.0, 100.0], [0.2, 0.8, 0.9]) == pytest.approx(
        M.aiq([0.0, 0.6, 1.0], [0.2, 0.8, 0.9]))
    # nothing reachable below the cheapest point of a wider cost range
    assert M.aiq([0.5], [1.0], cost_range=(0.0, 1.0)) == pytest.approx(0.5)
    assert M.aiq([0.3, 0.3], [0.1, 0.4]) == 0.4
    with pytest.raises(DataFormatError):
        M.aiq([0.0], [1.0, 2.0])


def test_apgr_by_hand():
    # strong mean .75, weak mean .25; order by score: prompts 0, 3, 2, 1
    # PGR with k strong calls: 0, .5, 1, 1, 1 ; fractions .1..1 -> k 0,1,1,2,2,2,3,3,4,4
    r = M.apgr([0.9, 0.1, 0.5, 0.8], [1, 1, 0, 1], [0, 1, 0, 0])
    assert r["apgr"] == pytest.approx(0.8)
    assert (r["cpt50"], r["cpt80"]) == (0.25, 0.5)
    np.testing.assert_allclose(r["curve"].pgr, [0, 0.5, 1, 1, 1])
    with pytest.raises(DataFormatError, match="swap"):
        M.apgr([1, 2], [0, 0], [1, 1])
    with pytest.raises(DataFormatError, match="NaN"):
        M.apgr([1, 2], [1, NAN], [0, 0])


# ---------------------------------------------------------------- confidence
def test_bootstrap_ci():
    ci = M.bootstrap_ci([0.5, 0.5, 0.5], n_boot=100)
    assert ci == {"estimate": 0.5, "low": 0.5, "high": 0.5}
    v = np.r_[np.ones(30), np.zeros(10)]
    a = M.bootstrap_ci(v, n_boot=500, seed=4)
    assert a == M.bootstrap_ci(v, n_boot=500, seed=4)
    assert a["low"] < 0.75 < a["high"] and a["estimate"] == 0.75
    # Vb: mu / best column mean on the same resample; best column mean is 0.75
    truth = np.column_stack([v, np.zeros(40)])
    b = M.bootstrap_ci(v, n_boot=500, seed=4, truth=truth)
    assert b == {"estimate": 1.0, "low": 1.0, "high": 1.0}
    with pytest.raises(ConfigError):
        M.bootstrap_ci(v, alpha=2)
    with pytest.raises(DataFormatError):
        M.bootstrap_ci(v, truth=truth[:3])


def test_paired_test():
    r = M.paired_test([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])
    # exact: only the identity of 2^6 sign flips reaches mean diff 1
    assert r["p_value"] == pytest.approx(1 / 64) and r["mean_diff"] == 1.0
    assert M.paired_test([1, 0], [1, 0])["p_value"] == 1.0
    worse = M.paired_test([0] * 8, [1] * 8)
    assert worse["p_value"] == 1.0
    with pytest.raises(DataFormatError):
        M.paired_test([1, 2], [1])


def test_picks_errors():
    with pytest.raises(UnknownIdError):
        M.picked_scores([5], np.zeros((1, 2)))
    with pytest.raises(DataFormatError):
        M.picked_scores([0, 1], np.zeros((1, 2)))


def test_routing_never_reads_the_truth():
    """No test-time masking: a router is charged for its choice wherever the truth is
    missing; RouterEval figures use the prompts where every LLM is observed, the same
    prompts for every router, and ranking figures count an unobserved cell as no
    success."""
    import numpy as np
    from llmrec.evaluation.metrics import hit_at_k, route_picks, routereval_metrics
    truth = np.array([[np.nan, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    pred = np.array([[9.0, 0.2, 0.5], [0.1, 0.3, 0.2], [0.0, 1.0, 0.0]])
    # prompt 0 goes to LLM 0 although its outcome is unknown (no peeking)
    assert route_picks(pred, truth).tolist() == [0, 1, 1]
    m = routereval_metrics(pred, truth)
    # prompt 0 has an unobserved cell: left out for every router; 1 -> 0.0, 2 -> 1.0
    assert m["mu"] == 0.5 and m["n_prompts"] == 2 and m["n_excluded"] == 1
    oracle = routereval_metrics(np.nan_to_num(truth, nan=-1.0), truth)
    assert oracle["n_prompts"] == 2 and oracle["mu"] == 1.0
    # top-1 of prompt 0 is LLM 0 (unobserved: no success), of prompt 1 LLM 1 (fails)
    assert hit_at_k(pred, truth, k=1) == 1 / 3
    with pytest.raises(DataFormatError):
        routereval_metrics(pred[:1], truth[:1])  # no complete prompt left


def test_route_picks_follow_the_tie_rank():
    import numpy as np
    from llmrec.evaluation.metrics import route_picks, routereval_metrics
    truth = np.array([[0.0, 1.0, 1.0]])
    pred = np.array([[0.5, 0.5, 0.5]])
    assert route_picks(pred, truth).tolist() == [0]
    assert route_picks(pred, truth, tie_rank=[2, 0, 1]).tolist() == [1]
    assert routereval_metrics(pred, truth, tie_rank=[2, 0, 1])["mu"] == 1.0
    assert routereval_metrics(pred, truth)["mu"] == 0.0
