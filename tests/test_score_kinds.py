"""Score kinds: records carry them, readers set them, routers read them."""

import warnings

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords, infer_score_kind
from llmrec.data.formats import read_long, write_long
from llmrec.datasets import make_synthetic
from llmrec.errors import DataFormatError, UnknownIdError
from llmrec.routers import make_router
from llmrec.routers.signal import (ConstantScoreWarning, default_threshold, implicit_feedback,
                                   warn_constant_llms)

from .router_conformance import small_encoder

KINDS = ("binary", "graded", "judge", "preference")


def _rec(Y, **kw):
    Y = np.asarray(Y, dtype=np.float32)
    return PerformanceRecords(Y, pd.DataFrame({"prompt_id": [f"p{i}" for i in range(len(Y))]}),
                              pd.DataFrame({"name": [f"m{j}" for j in range(Y.shape[1])]}), **kw)


def test_kind_is_inferred_and_validated():
    assert _rec([[0, 1], [1, 1]]).score_kind == "binary"
    assert _rec([[0.2, 1], [1, 0.5]]).score_kind == "graded"
    assert _rec([[3, 9], [1, 10]]).score_kind == "judge"
    assert _rec([[0.5, 0.7]], reference_llm="m0").score_kind == "preference"
    assert infer_score_kind([0.0, 0.5], score_range=(0, 10)) == "judge"
    with pytest.raises(DataFormatError, match="score_kind"):
        _rec([[0, 1]], score_kind="likert")
    with pytest.raises(DataFormatError, match="preference"):
        _rec([[0, 1]], score_kind="binary", reference_llm="m0")
    with pytest.raises(UnknownIdError, match="reference_llm"):
        _rec([[0.5, 1]], score_kind="preference", reference_llm="nope")


@pytest.mark.parametrize("kind", KINDS)
def test_kind_survives_subsets_save_and_long_tables(kind, tmp_path):
    rec = make_synthetic(60, 4, seed=0, kind=kind)
    assert rec.score_kind == kind
    assert (rec.reference_llm is not None) == (kind == "preference")
    # a subset that happens to be all 0/1 keeps the declared kind
    sub = rec.select_prompts([0, 1])
    assert sub.score_kind == kind and sub.reference_llm == rec.reference_llm
    back = PerformanceRecords.load(rec.save(tmp_path / "r"))
    assert (back.score_kind, back.reference_llm) == (kind, rec.reference_llm)
    back = read_long(write_long(rec, tmp_path / "long"))
    assert (back.score_kind, back.reference_llm) == (kind, rec.reference_llm)
    assert rec.score_kind in rec.summary()


def test_reference_dropped_with_its_llm_and_concat():
    rec = make_synthetic(30, 4, seed=0, kind="preference")
    other = [n for n in rec.llm_names if n != rec.reference_llm]
    assert rec.select_llms(other).reference_llm is None
    mixed = PerformanceRecords.concat([make_synthetic(20, 3, seed=0),
                                       _rec([[0.2, 0.7]], score_kind="graded")])
    assert mixed.score_kind == "graded"


def test_long_reader_option_and_default(tmp_path):
    f = tmp_path / "r.csv"
    pd.DataFrame({"prompt_id": ["a", "a", "b", "b"], "llm": ["x", "ref", "x", "ref"],
                  "score": [0.9, 0.5, 0.2, 0.5]}).to_csv(f, index=False)
    assert read_long(f).score_kind == "graded"  # inferred
    rec = read_long(f, score_kind="preference", reference_llm="ref")
    assert (rec.score_kind, rec.reference_llm) == ("preference", "ref")
    g = tmp_path / "j.csv"
    pd.DataFrame({"prompt_id": ["a", "b"], "llm": ["x", "x"], "score": [7, 9]}).to_csv(g)
    assert read_long(g).score_kind == "judge"


def test_readers_declare_their_kind(shared_data):
    from llmrec.data.formats import read_mt_bench, read_routerdc
    assert read_mt_bench(shared_data / "routellm").score_kind == "judge"
    files = sorted((shared_data / "routerdc" / "split2_model7").glob("*.json"))[:1]
    assert read_routerdc(files[0]).score_kind == "graded"


def test_synthetic_modes():
    pref = make_synthetic(200, 5, seed=0, kind="preference")
    ref = pref.llm_index(pref.reference_llm)[0]
    assert np.all(pref.dense()[:, ref] == 0.5)
    judge = make_synthetic(200, 5, seed=0, kind="judge")
    d = judge.dense()
    assert d.min() >= 1 and d.max() <= 10 and np.all(d == np.round(d))
    graded = make_synthetic(200, 5, seed=0, kind="graded")
    assert graded.score_kind == "graded" and not np.isin(graded.dense(), (0, 1)).all()
    np.testing.assert_array_equal(make_synthetic(50, 3, seed=0).dense(),
                                  make_synthetic(50, 3, seed=0, kind="binary").dense())


def test_feedback_rules_per_kind():
    assert default_threshold(make_synthetic(20, 3, seed=0, kind="judge")) == (5.5, False)
    assert default_threshold(make_synthetic(20, 3, seed=0)) == (0.5, False)
    # a preference row: the reference (0.5) is not a success by either rule
    rec = _rec([[0.5, 0.95, 0.1, 0.6]], score_kind="preference", reference_llm="m0")
    rel = implicit_feedback(rec)
    assert rel.positive.tolist() == [False, True, False, False]  # 0.6 is not near the best
    thr = implicit_feedback(rec, "threshold")
    assert thr.positive.tolist() == [False, True, False, True]
    rec = _rec([[0.5, 0.9, 0.1, 0.5]], score_kind="preference", reference_llm="m0")
    rel = implicit_feedback(rec)
    assert rel.weight[[0, 3]].tolist() == [0, 0]  # exactly the prompt mean: no signal
    assert implicit_feedback(rec, "threshold").positive.tolist() == [False, True, False, False]
    # binary: relative = "succeeded where some LLM failed"; all-solved rows carry nothing
    b = implicit_feedback(_rec([[1, 0, 1], [1, 1, 1]]))
    assert b.positive.tolist() == [True, False, True, False, False, False]
    assert b.weight[3:].tolist() == [0, 0, 0]


def test_constant_llm_warns_but_not_the_reference():
    Y = np.array([[1, 0.3, 0.5], [0, 0.3, 0.5], [1, 0.3, 0.5]], np.float32)
    with pytest.warns(ConstantScoreWarning, match="m1"):
        assert warn_constant_llms(_rec(Y, score_kind="preference", reference_llm="m2")) == ["m1"]
    with pytest.warns(ConstantScoreWarning):
        make_router("best-single").fit(_rec(Y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_constant_llms(make_synthetic(50, 4, seed=0, kind="preference"))


@pytest.mark.parametrize("chunk", [1, 2, 5, 1 << 22])
def test_constant_check_reads_every_chunk_it_needs(monkeypatch, chunk):
    """The min/max pass stops early only once every LLM is known to vary: a column
    that varies (m1) or is first seen (m2) only in the last records is decided right."""
    import llmrec.routers.signal as sig
    monkeypatch.setattr(sig, "_CONST_CHUNK", chunk)
    Y = np.array([[1, 0.3, np.nan, 2], [0, 0.3, np.nan, 2], [1, 0.3, 0.7, 2],
                  [0, 0.4, 0.7, 2]], np.float32)
    with pytest.warns(ConstantScoreWarning, match=r"m2 \(0.7\), m3 \(2\)"):
        assert warn_constant_llms(_rec(Y)) == ["m2", "m3"]


@pytest.fixture(scope="module")
def pref_split():
    rec = make_synthetic(700, 6, n_topics=4, seed=1, kind="preference")
    return rec.select_prompts(range(560)), rec.select_prompts(range(560, 700))


def _picks_mu(router, test):
    picks = router.score(test.texts).argmax(axis=1)
    truth = test.dense()
    return picks, float(np.nanmean(truth[np.arange(len(picks)), picks]))


@pytest.mark.parametrize("name,params", [
    ("als", {"factors": 8}), ("bpr", {"factors": 8, "iterations": 50}),
    ("lightfm", {"no_components": 8, "epochs": 5}), ("mlc", {}), ("knn", {"k": 20}),
    ("linear", {}), ("auto", {})])
def test_reference_at_constant_half_is_not_picked_everywhere(pref_split, name, params):
    train, test = pref_split
    ref = train.llm_index(train.reference_llm)[0]
    best_single = float(np.nanmean(test.dense(), axis=0).max())
    r = make_router(name, **params).fit(train, encoder=small_encoder())
    picks, mu = _picks_mu(r, test)
    assert (picks == ref).mean() < 0.2, name
    assert mu > best_single, (name, mu, best_single)


def test_threshold_rule_reproduces_the_reference_trap(pref_split):
    """With a hard 0.5 threshold the constant-0.5 reference is a success everywhere;
    the old default made mlc route every prompt to it (why the default is relative)."""
    train, test = pref_split
    ref = train.llm_index(train.reference_llm)[0]
    r = make_router("mlc", label_rule="threshold", threshold=0.5).fit(
        train, encoder=small_encoder())
    picks, _ = _picks_mu(r, test)
    assert (picks == ref).mean() > 0.9


def test_tune_router_picks_on_training_prompts_only():
    from llmrec.routers.tuning import tune_router
    rec = make_synthetic(500, 5, n_topics=3, seed=4)
    train, test = rec.select_prompts(range(400)), rec.select_prompts(range(400, 500))
    r = tune_router("linear", train, grid={"alpha": [0.1, 100.0]}, encoder=small_encoder())
    t = r.tuning_
    assert t["n_val"] == 40 and len(t["results"]) == 2
    assert t["chosen"]["alpha"] == max(t["results"], key=lambda x: x["val_mu"])["params"]["alpha"]
    assert r.alpha == t["chosen"]["alpha"]
    # the test prompts played no part: tuning on train alone is reproducible bit for bit
    again = tune_router("linear", train, grid={"alpha": [0.1, 100.0]}, encoder=small_encoder())
    np.testing.assert_array_equal(again.score(test.texts), r.score(test.texts))
    mlp = tune_router("mlp", train, grid={"hidden_layer_sizes": [[16]]},
                      params={"max_epochs": 30, "patience": 3}, encoder=small_encoder())
    assert 1 <= mlp.tuning_["chosen"]["max_epochs"] <= 30

def test_every_default_grid_holds_the_routers_defaults():
    # tuning can then only keep the defaults or find better on validation prompts
    from llmrec.routers import make_router
    from llmrec.routers.tuning import DEFAULT_GRIDS
    norm = lambda v: list(v) if isinstance(v, (list, tuple)) else v  # noqa: E731
    for name, grid in DEFAULT_GRIDS.items():
        r = make_router(name)
        for param, values in grid.items():
            assert norm(getattr(r, param)) in [norm(v) for v in values], (name, param)


def test_mlp_per_prompt_centering_is_chosen_on_validation():
    rec = make_synthetic(500, 5, n_topics=3, seed=6, kind="graded")
    train, val = rec.select_prompts(range(400)), rec.select_prompts(range(400, 500))
    r = make_router("mlp", hidden_layer_sizes=(16,), max_epochs=15, patience=3).fit(
        train, encoder=small_encoder(), val_records=val)
    mus = r.center_val_mu_
    assert set(mus) == {"False", "True"}
    assert r.center_ == (mus["True"] > mus["False"])
    fixed = make_router("mlp", hidden_layer_sizes=(16,), max_epochs=15, patience=3,
                        center=True).fit(train, encoder=small_encoder(), val_records=val)
    assert fixed.center_ is True and set(fixed.center_val_mu_) == {"True"}
    # the centred net regresses score - prompt mean: its outputs average near 0 per prompt
    S = fixed.score(val.texts)
    assert abs(float(S.mean())) < 0.1
