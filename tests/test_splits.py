"""Cold-prompt, RouterEval and cold-LLM splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.data.splits import (ColdLLMSplit, Split, cold_llm_split, cold_prompt_split,
                                routereval_split, split_from_indices, stratified_order)
from llmrec.data.synthetic import make_synthetic
from llmrec.errors import ConfigError, UnknownIdError


def _check_partition(split: Split, n: int):
    tr, va, te = split.train_idx, split.val_idx, split.test_idx
    allidx = np.concatenate([tr, va, te])
    assert sorted(allidx.tolist()) == list(range(n))
    assert not set(tr) & set(te) and not set(tr) & set(va) and not set(va) & set(te)


def test_cold_prompt_split_disjoint_and_sizes(synth):
    s = cold_prompt_split(synth, val=0.1, test=0.2, seed=0)
    _check_partition(s, synth.n_prompts)
    assert (len(s.train_idx), len(s.val_idx), len(s.test_idx)) == (280, 40, 80)
    # no test (or val) prompt is in training, by id too
    assert not set(s.test.prompt_ids) & set(s.train.prompt_ids)
    assert not set(s.val.prompt_ids) & set(s.train.prompt_ids)
    # the parts are the records at those positions, with all LLMs
    assert list(s.test.prompt_ids) == list(synth.prompt_ids[s.test_idx])
    np.testing.assert_array_equal(s.test.dense(), synth.dense()[s.test_idx])
    assert s.train.llm_names == synth.llm_names
    train, val, test = s            # unpacks
    assert train is s.train and test is s.test


def test_cold_prompt_split_stratified(synth):
    s = cold_prompt_split(synth, val=0.1, test=0.2, seed=3, stratify="benchmark")
    bench = synth.prompts["benchmark"].to_numpy()
    total = pd.Series(bench).value_counts()
    got = pd.Series(bench[s.test_idx]).value_counts()
    for b, n_b in total.items():
        assert abs(got.get(b, 0) - 0.2 * n_b) <= 1, (b, got.get(b, 0), n_b)


def test_cold_prompt_split_seeded(synth):
    a = cold_prompt_split(synth, seed=7)
    b = cold_prompt_split(synth, seed=7)
    c = cold_prompt_split(synth, seed=8)
    np.testing.assert_array_equal(a.test_idx, b.test_idx)
    assert not np.array_equal(a.test_idx, c.test_idx)


@pytest.mark.parametrize("stratify", ["category", None])
def test_cold_prompt_split_other_strata(synth, stratify):
    s = cold_prompt_split(synth, val=0.0, test=0.25, seed=0, stratify=stratify)
    _check_partition(s, synth.n_prompts)
    assert len(s.val_idx) == 0 and s.val.n_prompts == 0
    assert len(s.test_idx) == 100


def test_stratified_order_handles_missing_labels():
    df = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(10)],
                       "benchmark": ["a"] * 5 + [None] * 5})
    rec = PerformanceRecords(np.ones((10, 2)), df, pd.DataFrame({"name": ["x", "y"]}))
    s = cold_prompt_split(rec, val=0.0, test=0.4, seed=0)
    bench = rec.prompts["benchmark"].to_numpy()[s.test_idx]
    assert pd.isna(bench).sum() == 2 and (bench == "a").sum() == 2


def test_stratified_order_prefixes():
    strata = np.repeat([0, 1, 2], [50, 30, 20])
    order = stratified_order(strata, seed=1)
    assert sorted(order.tolist()) == list(range(100))
    for k in (10, 33, 70):
        counts = np.bincount(strata[order[:k]], minlength=3)
        assert np.all(np.abs(counts - k * np.array([0.5, 0.3, 0.2])) <= 1), (k, counts)


def test_cold_prompt_split_errors(synth):
    with pytest.raises(ConfigError, match="val \\+ test"):
        cold_prompt_split(synth, val=0.5, test=0.5)
    with pytest.raises(ConfigError, match="test must be in"):
        cold_prompt_split(synth, test=1.5)
    with pytest.raises(ConfigError, match="stratify"):
        cold_prompt_split(synth, stratify="difficulty")
    with pytest.raises(ConfigError, match="too few"):
        cold_prompt_split(make_synthetic(2, 2, seed=0), val=0.4, test=0.4)


def test_routereval_split():
    rec = make_synthetic(101, 3, seed=0)
    s = routereval_split(rec, seed=0)
    _check_partition(s, 101)
    assert (len(s.train_idx), len(s.val_idx), len(s.test_idx)) == (80, 10, 11)
    perm = np.random.RandomState(0).permutation(101)
    assert set(s.test_idx) == set(perm[90:])
    np.testing.assert_array_equal(routereval_split(rec, seed=0).test_idx, s.test_idx)


def test_split_from_indices_errors(synth):
    with pytest.raises(ConfigError, match="overlap"):
        split_from_indices(synth, [0, 1], [1], [2])
    with pytest.raises(UnknownIdError, match="out of range"):
        split_from_indices(synth, [0, 1], [2], [synth.n_prompts])
    with pytest.raises(ConfigError, match="twice"):
        split_from_indices(synth, [0, 0], [], [])


def test_cold_llm_split_by_names(synth):
    held = ["llm-02", "llm-06"]
    s = cold_llm_split(synth, held_out=held, n_probe=20, seed=0, test=0.25)
    assert isinstance(s, ColdLLMSplit)
    assert s.held_out == held
    assert s.kept == [n for n in synth.llm_names if n not in held]
    # train: training prompts x kept LLMs; no held-out LLM, no test prompt
    assert s.train.llm_names == s.kept
    assert not set(s.train.prompt_ids) & set(s.test.prompt_ids)
    assert len(s.train_idx) + len(s.test_idx) == synth.n_prompts
    assert len(s.test_idx) == 100
    # probe: n_probe training prompts x held-out LLMs, values as in the records
    assert s.probe.shape == (20, 2) and s.probe.llm_names == held
    assert set(s.probe_idx) <= set(s.train_idx)
    np.testing.assert_array_equal(
        s.probe.dense(), synth.dense()[np.ix_(s.probe_idx, synth.llm_index(held))])
    # test: test prompts x all LLMs
    assert s.test.llm_names == synth.llm_names
    np.testing.assert_array_equal(s.test.dense(), synth.dense()[s.test_idx])


@pytest.mark.parametrize("held_out, k", [(3, 3), (0.25, 2)])
def test_cold_llm_split_count_and_fraction(synth, held_out, k):
    a = cold_llm_split(synth, held_out=held_out, n_probe=5, seed=4)
    b = cold_llm_split(synth, held_out=held_out, n_probe=5, seed=4)
    assert len(a.held_out) == k and len(a.kept) == synth.n_llms - k
    assert a.held_out == b.held_out
    np.testing.assert_array_equal(a.probe_idx, b.probe_idx)


def test_cold_llm_split_probe_needs_observed_records():
    rec = make_synthetic(200, 5, seed=1, density=0.05)
    s = cold_llm_split(rec, held_out=["llm-00"], n_probe=3, seed=0)
    assert (s.probe.observed.sum(axis=1) > 0).all()    # each probe shows the new LLM
    with pytest.raises(ConfigError, match="training prompts observe"):
        cold_llm_split(rec, held_out=["llm-00"], n_probe=150, seed=0)


def test_cold_llm_split_errors(synth):
    with pytest.raises(ConfigError, match="at least one LLM"):
        cold_llm_split(synth, held_out=synth.n_llms)
    with pytest.raises(ConfigError, match="at least one LLM"):
        cold_llm_split(synth, held_out=synth.llm_names)
    with pytest.raises(ConfigError, match="fraction"):
        cold_llm_split(synth, held_out=1.5)
    with pytest.raises(UnknownIdError, match="nope"):
        cold_llm_split(synth, held_out=["nope"])
    with pytest.raises(ConfigError, match="n_probe"):
        cold_llm_split(synth, held_out=1, n_probe=-1)
    with pytest.raises(ConfigError, match="test must be > 0"):
        cold_llm_split(synth, held_out=1, test=0.0)


def test_real_llm2vec_cold_llm_split(shared_data):
    """llm2vec's 1,000 x 24 MMLU records: hold out 4 LLMs, probe 50 prompts."""
    from llmrec.data.formats.embedllm import read_embedllm
    rec = read_embedllm(shared_data / "llm2vec")
    s = cold_llm_split(rec, held_out=4, n_probe=50, seed=42, test=0.2)
    assert s.train.shape == (800, 20) and s.probe.shape == (50, 4)
    assert s.test.shape == (200, 24)
    assert not set(s.held_out) & set(s.train.llm_names)
    assert not set(s.train.prompt_ids) & set(s.test.prompt_ids)
    r = cold_prompt_split(rec, seed=42)
    assert (len(r.train_idx), len(r.val_idx), len(r.test_idx)) == (800, 100, 100)
