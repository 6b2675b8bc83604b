"""RouterEval candidate pools: a hand-checked example, brute-force checks, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.data.pools import (GROUPS, candidate_pools, oracle_score, routereval_levels,
                               select_candidates, valid_llms)
from llmrec.errors import ConfigError, DataFormatError


def _hand_matrix() -> np.ndarray:
    """6 prompts x 8 LLMs. Column 0 always fails (mean 0 < 0.1: invalid), column 7
    always succeeds (mean 1 > 0.9: invalid). Columns 1..6 are v1..v6, solving:
        v1 {0}        mean 1/6      v2 {5}        mean 1/6
        v3 {1, 2}     mean 2/6      v4 {3, 4}     mean 2/6
        v5 {0, 1, 2}  mean 3/6      v6 {2, 3, 4}  mean 3/6
    Valid LLMs sorted by mean (ties by column): v1 v2 v3 v4 v5 v6.
    """
    solves = {1: {0}, 2: {5}, 3: {1, 2}, 4: {3, 4}, 5: {0, 1, 2}, 6: {2, 3, 4}}
    x = np.zeros((6, 8))
    x[:, 7] = 1.0
    for col, rows in solves.items():
        x[list(rows), col] = 1.0
    return x


def test_valid_llms_sorted_and_filtered():
    x = _hand_matrix()
    assert valid_llms(x).tolist() == [1, 2, 3, 4, 5, 6]
    # bounds are inclusive
    assert valid_llms(np.array([[0.1, 0.9, 0.5]])).tolist() == [0, 2, 1]


def test_hand_checked_pools():
    x = _hand_matrix()
    # all_strong, m=2, region=0.5: region = top max(2, ceil(0.5*6)) = 3 -> v4 v5 v6.
    #   windows (v4,v5): prompts {0,1,2,3,4} -> 5/6 ; (v5,v6): {0,1,2,3,4} -> 5/6.
    #   A tie: the first (weaker) window wins -> v4 v5 = columns 4, 5.
    assert select_candidates(x, 2, "all_strong", region=0.5) == [4, 5]
    # all_weak, m=2, region=0.5: v1 v2 v3; (v1,v2) -> 2/6, (v2,v3) -> {1,2,5} 3/6.
    assert select_candidates(x, 2, "all_weak", region=0.5) == [2, 3]
    # strong_to_weak, m=3: strata [v1 v2] [v3 v4] [v5 v6]; of the 8 combinations only
    #   v2 v4 v5 covers all 6 prompts (oracle 1.0) -> columns 2, 4, 5.
    assert select_candidates(x, 3, "strong_to_weak", seed=0) == [2, 4, 5]
    # default region 0.2: ceil(0.2*6) = 2 = m, so the region is the window itself
    assert select_candidates(x, 2, "all_strong") == [5, 6]
    assert select_candidates(x, 2, "all_weak") == [1, 2]
    # 20% of 6 is fewer than m=3: the region widens to m
    assert select_candidates(x, 3, "all_strong") == [4, 5, 6]
    assert select_candidates(x, 3, "all_weak") == [1, 2, 3]
    # the always-right column 7 is never a candidate, even though it is the best
    for g in GROUPS:
        assert 7 not in select_candidates(x, 6, g)
        assert 0 not in select_candidates(x, 6, g)


def test_oracle_score_hand():
    x = _hand_matrix()
    assert oracle_score(x, [2, 4, 5]) == 1.0
    assert oracle_score(x, [1, 3, 5]) == pytest.approx(0.5)
    assert oracle_score(x, [0]) == 0.0


def _brute_window(x, reg, m):
    xf = np.where(np.isnan(x), -np.inf, x)
    best, arg = -np.inf, None
    for s in range(len(reg) - m + 1):
        b = xf[:, reg[s:s + m]].max(axis=1)
        b = b[np.isfinite(b)]
        v = b.mean() if b.size else -np.inf
        if v > best:
            best, arg = v, sorted(reg[s:s + m])
    return arg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_windows_match_brute_force_with_missing_cells(seed):
    rng = np.random.default_rng(seed)
    x = rng.random((40, 30))
    x[rng.random(x.shape) < 0.2] = np.nan
    order = valid_llms(x)
    for m in (1, 2, 4, 7):
        k = max(m, int(np.ceil(0.2 * len(order))))
        strong = select_candidates(x, m, "all_strong")
        weak = select_candidates(x, m, "all_weak")
        assert strong == [int(j) for j in _brute_window(x, order[len(order) - k:], m)]
        assert weak == [int(j) for j in _brute_window(x, order[:k], m)]


def test_strong_to_weak_exhaustive_small():
    """With few strata, 1,000 draws see every combination: result = exhaustive best."""
    rng = np.random.default_rng(5)
    x = (rng.random((50, 9)) < rng.uniform(0.2, 0.8, 9)).astype(float)
    order = valid_llms(x)
    strata = np.array_split(order, 3)
    best = max(itertools.product(*strata), key=lambda c: oracle_score(x, list(c)))
    got = select_candidates(x, 3, "strong_to_weak", seed=1)
    assert oracle_score(x, got) == pytest.approx(oracle_score(x, list(best)))
    # one LLM from each stratum
    for st in strata:
        assert len(set(got) & set(st.tolist())) == 1


def test_deterministic_under_seed():
    rng = np.random.default_rng(0)
    x = rng.random((30, 40))
    a = select_candidates(x, 5, "strong_to_weak", seed=3, n_draws=20)
    b = select_candidates(x, 5, "strong_to_weak", seed=3, n_draws=20)
    assert a == b


def test_records_input_gives_names_and_ignores_unobserved():
    # LLM "b" has one observed 0.5 and one unobserved cell: its mean is 0.5, not 0.25.
    df = pd.DataFrame({"prompt_id": ["p1", "p1", "p1", "p2", "p2"],
                       "llm": ["a", "b", "c", "a", "c"],
                       "score": [0.2, 0.5, 0.95, 0.2, 0.95]})
    rec = PerformanceRecords.from_long(df)
    assert valid_llms(rec).tolist() == [0, 1]
    assert select_candidates(rec, 1, "all_strong") == ["b"]
    pools = candidate_pools(rec, sizes=(1, 3))
    assert sorted(pools) == [1, 2]      # 3 capped at the 2 valid LLMs
    assert pools[2]["all_weak"] == ["a", "b"]


def test_candidate_pools_shape(synth):
    pools = candidate_pools(synth, sizes=(3, 5, 10, 100, 1000), n_draws=100)
    n_valid = len(valid_llms(synth))
    assert sorted(pools) == sorted({3, 5, min(10, n_valid)})
    for size, by_group in pools.items():
        assert set(by_group) == set(GROUPS)
        for names in by_group.values():
            assert len(names) == size and len(set(names)) == size
            assert set(names) <= set(synth.llm_names)


def test_errors():
    x = _hand_matrix()
    with pytest.raises(ConfigError, match="group"):
        select_candidates(x, 2, "medium")
    with pytest.raises(ConfigError, match="only 6 of 8 are valid"):
        select_candidates(x, 7, "all_strong")
    with pytest.raises(ConfigError, match="positive integer"):
        select_candidates(x, 0, "all_weak")
    with pytest.raises(DataFormatError, match="2-D"):
        select_candidates(np.zeros(5), 1, "all_weak")
    with pytest.raises(ConfigError, match="no LLM"):
        candidate_pools(np.ones((3, 3)))
    with pytest.raises(ConfigError, match="group"):
        candidate_pools(x, groups=("strong",))


def test_routereval_levels_feed_the_writer(synth, tmp_path):
    from llmrec.data.formats.routereval import read_routereval, routereval_pools, \
        write_routereval
    from llmrec.data.splits import routereval_split
    pools = candidate_pools(synth, sizes=(3, 5, 6), n_draws=50)
    nested = routereval_levels(pools)
    assert sorted(nested) == ["easy", "hard"] and sorted(nested["hard"]) == [6]
    s = routereval_split(synth, seed=0)
    split = {"train": s.train_idx, "val": s.val_idx, "test": s.test_idx}
    f = write_routereval(synth, tmp_path / "synth_router_dataset.pkl", split=split,
                         pools=nested)
    found = routereval_pools(f)
    assert len(found) == 9
    assert read_routereval(f).n_prompts == synth.n_prompts


def test_real_mmlu_pro_pools(shared_data):
    """MMLU-Pro (12,032 x 29, 1,713 empty cells): pools chosen on the training part."""
    from llmrec.data.formats.mmlu_pro import read_mmlu_pro
    from llmrec.data.splits import cold_prompt_split
    rec = read_mmlu_pro(shared_data / "mmlu_pro")
    train = cold_prompt_split(rec, seed=42, stratify="category").train
    pools = candidate_pools(train, sizes=(3, 5, 10, 100), n_draws=100)
    n_valid = len(valid_llms(train))
    assert sorted(pools) == [3, 5, 10, n_valid]
    x = train.dense()
    for size in (3, 5, 10):
        strong, weak = pools[size]["all_strong"], pools[size]["all_weak"]
        cols_s, cols_w = train.llm_index(strong), train.llm_index(weak)
        # strong pools are made of stronger LLMs and have the higher oracle
        assert np.nanmean(x[:, cols_s]) > np.nanmean(x[:, cols_w])
        assert oracle_score(x, cols_s) > oracle_score(x, cols_w)
