"""The synthetic generator: routing structure, determinism, sparsity, scale.

The full RouterEval-sized run (40,000 x 8,500) is in
``benchmarks/bench_synthetic_scale.py``; here a 4,000 x 8,500 slice keeps it quick.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from llmrec.data.synthetic import make_synthetic
from llmrec.errors import ConfigError


@pytest.fixture(scope="module")
def rec():
    return make_synthetic(2000, 20, n_topics=8, seed=0)


def test_oracle_beats_best_single(rec):
    x = rec.dense()
    oracle = x.max(axis=1).mean()
    best_single = x.mean(axis=0).max()
    assert oracle - best_single > 0.15, (oracle, best_single)


def test_different_llms_win_on_different_topics(rec):
    x = rec.dense()
    topics = rec.prompts["benchmark"].to_numpy()
    winners, topic_best = set(), []
    for t in np.unique(topics):
        means = x[topics == t].mean(axis=0)
        winners.add(int(means.argmax()))
        topic_best.append(means.max() * (topics == t).mean())
    assert len(winners) >= 3, winners
    # routing by topic alone beats the best single LLM clearly
    assert sum(topic_best) - x.mean(axis=0).max() > 0.08


def test_topic_recoverable_from_text(rec):
    topics = rec.prompts["benchmark"].to_numpy()
    texts = rec.texts
    vec = TfidfVectorizer()
    a = vec.fit_transform(texts[:1500])
    clf = LogisticRegression(max_iter=300).fit(a, topics[:1500])
    acc = (clf.predict(vec.transform(texts[1500:])) == topics[1500:]).mean()
    assert acc > 0.9, acc


def test_tables(rec):
    assert {"prompt_id", "text", "benchmark", "category", "difficulty"} <= set(rec.prompts)
    assert {"name", "params_b", "price_input", "price_output", "provider"} <= set(rec.llms)
    assert rec.prompts["prompt_id"].is_unique and rec.llms["name"].is_unique
    assert all(t.endswith("?") and len(t.split()) >= 8 for t in rec.texts[:50])
    assert set(np.unique(rec.scores.data)) <= {0.0, 1.0}


def test_deterministic_under_seed():
    a = make_synthetic(300, 7, n_topics=3, seed=11, density=0.5)
    b = make_synthetic(300, 7, n_topics=3, seed=11, density=0.5)
    c = make_synthetic(300, 7, n_topics=3, seed=12, density=0.5)
    assert a.equals(b)
    assert not a.equals(c)


def test_density_leaves_cells_unobserved():
    r = make_synthetic(1000, 10, seed=2, density=0.3)
    assert abs(r.density - 0.3) < 0.02
    d = r.dense()
    assert np.isnan(d).sum() == r.n_prompts * r.n_llms - r.n_observed
    # observed failures are explicit zeros, kept apart from unobserved cells
    assert (r.scores.data == 0).sum() > 0
    assert r.observed.nnz == r.scores.nnz
    np.testing.assert_array_equal(r.observed_dense(), ~np.isnan(d))


def test_continuous_scores():
    r = make_synthetic(200, 5, seed=0, binary=False)
    d = r.scores.data
    assert d.min() >= 0 and d.max() <= 1
    assert len(np.unique(d)) > 100


def test_topics_beyond_the_named_ones():
    r = make_synthetic(200, 3, n_topics=20, seed=0)
    assert r.prompts["benchmark"].nunique() > 16
    assert any(b.startswith("topic") for b in r.prompts["benchmark"])


@pytest.mark.parametrize("kwargs", [dict(n_prompts=0), dict(n_llms=0), dict(n_topics=0),
                                    dict(density=0.0), dict(density=1.5)])
def test_errors(kwargs):
    args = dict(n_prompts=10, n_llms=3, n_topics=2)
    args.update(kwargs)
    with pytest.raises(ConfigError):
        make_synthetic(**args)


def test_scale_slice():
    """4,000 prompts x 8,500 LLMs at 5% density (the full 40,000 is a benchmark)."""
    r = make_synthetic(4000, 8500, n_topics=16, seed=0, density=0.05)
    assert r.shape == (4000, 8500)
    expected = 0.05 * 4000 * 8500
    assert abs(r.n_observed - expected) < 0.01 * expected
    assert r.scores.format == "csr" and r.scores.dtype == np.float32
