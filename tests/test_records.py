"""Unit tests of PerformanceRecords itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from llmrec.data import FORMAT_VERSION, PerformanceRecords
from llmrec.errors import DataFormatError, LLMRecError, UnknownIdError


def _long():
    return pd.DataFrame({
        "prompt_id": ["p1", "p1", "p2", "p3", "p3"],
        "llm": ["a", "b", "a", "b", "c"],
        "score": [1.0, 0.0, 0.5, 0.0, 1.0],
        "cost": [0.1, 0.2, 0.1, 0.2, 0.3],
    })


@pytest.fixture
def rec():
    prompts = pd.DataFrame({"prompt_id": ["p1", "p2", "p3"], "text": ["x y", "z", ""],
                            "benchmark": ["m", "g", "m"], "extra": [1, 2, 3]})
    llms = pd.DataFrame({"name": ["a", "b", "c"], "params_b": [7.0, 70.0, 8.0]})
    return PerformanceRecords.from_long(_long(), prompts, llms, score_range=(0, 1), name="t")


# ------------------------------------------------------------------ from_long
def test_from_long_basic(rec):
    assert rec.shape == (3, 3) and rec.n_observed == 5
    d = rec.dense()
    np.testing.assert_array_equal(np.isnan(d), [[False, False, True],
                                                [False, True, True],
                                                [True, False, False]])
    assert d[0, 1] == 0.0          # an observed failure is an explicit 0, not missing
    assert rec.scores.nnz == 5 and rec.observed.nnz == 5
    np.testing.assert_allclose(rec.cost_dense()[2, 2], 0.3)
    assert rec.prompts["extra"].tolist() == [1, 2, 3]
    assert "category" in rec.prompts.columns
    assert rec.density == pytest.approx(5 / 9)
    assert rec.has_text and rec.texts == ["x y", "z", ""]


def test_from_long_order_without_tables():
    df = pd.DataFrame({"q": ["b", "a", "b"], "m": ["y", "x", "x"], "s": [1, 0, 1]})
    r = PerformanceRecords.from_long(df, prompt_col="q", llm_col="m", score_col="s")
    assert list(r.prompt_ids) == ["b", "a"] and r.llm_names == ["y", "x"]
    assert r.cost is None and not r.has_text


def test_from_long_keeps_table_only_ids(rec):
    prompts = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"]})
    r = PerformanceRecords.from_long(_long(), prompts)
    assert r.n_prompts == 4 and np.isnan(r.dense()[3]).all()


def test_from_long_duplicates():
    df = pd.DataFrame({"prompt_id": ["p", "p", "p"], "llm": ["a", "a", "a"],
                       "score": [1.0, 0.0, 0.5]})
    with pytest.raises(DataFormatError, match="rows 1 and 2.*conflicting"):
        PerformanceRecords.from_long(df)
    mean = PerformanceRecords.from_long(df, on_duplicate="mean")
    assert mean.dense()[0, 0] == pytest.approx(0.5)
    assert PerformanceRecords.from_long(df, on_duplicate="first").dense()[0, 0] == 1.0
    same = pd.DataFrame({"prompt_id": ["p", "p"], "llm": ["a", "a"], "score": [1.0, 1.0]})
    assert PerformanceRecords.from_long(same).n_observed == 1
    with pytest.raises(DataFormatError, match="on_duplicate"):
        PerformanceRecords.from_long(df, on_duplicate="last")


@pytest.mark.parametrize("df, match", [
    (pd.DataFrame({"prompt_id": ["p"], "model": ["a"], "score": [1.0]}), "missing column"),
    (pd.DataFrame({"prompt_id": [], "llm": [], "score": []}), "empty"),
    (pd.DataFrame({"prompt_id": ["p", "q"], "llm": ["a", "a"], "score": [1.0, "x"]}),
     "row 2, column 'score': score 'x'"),
    (pd.DataFrame({"prompt_id": ["p", "q"], "llm": ["a", "a"], "score": [1.0, np.inf]}),
     "row 2, column 'score': score inf"),
    (pd.DataFrame({"prompt_id": ["p", None], "llm": ["a", "a"], "score": [1.0, 0.0]}),
     "empty id at row 2"),
    (pd.DataFrame({"prompt_id": ["p"], "llm": ["a"], "score": [1.0], "cost": ["?"]}),
     "column 'cost'"),
])
def test_from_long_format_errors(df, match):
    with pytest.raises(DataFormatError, match=match):
        PerformanceRecords.from_long(df, source="f.csv")


def test_from_long_range_and_unknown_ids():
    df = _long()
    df.loc[3, "score"] = 2.0
    with pytest.raises(DataFormatError, match="row 4.*outside the declared range"):
        PerformanceRecords.from_long(df, score_range=(0, 1), source="f.csv")
    with pytest.raises(UnknownIdError, match="prompt id 'p3'"):
        PerformanceRecords.from_long(_long(), pd.DataFrame({"prompt_id": ["p1", "p2"]}))
    with pytest.raises(UnknownIdError, match="LLM 'c'"):
        PerformanceRecords.from_long(_long(), llms=pd.DataFrame({"name": ["a", "b"]}))
    with pytest.raises(DataFormatError, match="DataFrame"):
        PerformanceRecords.from_long([1, 2])


def test_constructor_errors():
    llms = pd.DataFrame({"name": ["a", "b"]})
    with pytest.raises(DataFormatError, match="shape"):
        PerformanceRecords(np.ones((3, 2)), pd.DataFrame({"prompt_id": ["p", "q"]}), llms)
    with pytest.raises(DataFormatError, match="duplicate prompt_id 'p' at row 2"):
        PerformanceRecords(np.ones((2, 2)), pd.DataFrame({"prompt_id": ["p", "p"]}), llms)
    with pytest.raises(DataFormatError, match="no column 'name'"):
        PerformanceRecords(np.ones((1, 2)), pd.DataFrame({"prompt_id": ["p"]}),
                           pd.DataFrame({"llm": ["a", "b"]}))
    with pytest.raises(DataFormatError, match="NaN or infinite.*prompt 'p'.*LLM 'b'"):
        PerformanceRecords(sp.csr_matrix(np.array([[1.0, np.inf]])),
                           pd.DataFrame({"prompt_id": ["p"]}), llms)
    with pytest.raises(DataFormatError, match="outside the declared range"):
        PerformanceRecords(np.array([[1.0, 3.0]]), pd.DataFrame({"prompt_id": ["p"]}), llms,
                           score_range=(0, 1))


def test_sparse_explicit_zeros_and_observed_mask():
    scores = sp.csr_matrix((np.array([0.0, 1.0], np.float32), ([0, 1], [1, 0])), shape=(2, 2))
    r = PerformanceRecords(scores, pd.DataFrame({"prompt_id": ["p", "q"]}),
                           pd.DataFrame({"name": ["a", "b"]}))
    assert r.n_observed == 2 and r.dense()[0, 1] == 0.0 and np.isnan(r.dense()[0, 0])
    # an observed mask wider than the stored values observes explicit zeros there
    obs = np.array([[True, True], [True, False]])
    r2 = PerformanceRecords(scores, r.prompts, r.llms, observed=obs)
    assert r2.n_observed == 3 and r2.dense()[0, 0] == 0.0 and np.isnan(r2.dense()[1, 1])


# ------------------------------------------------------------------- to_long
def test_to_long_round_trip(rec):
    long = rec.to_long(with_text=True)
    assert list(long.columns) == ["prompt_id", "llm", "score", "cost", "text", "benchmark"]
    assert len(long) == rec.n_observed
    back = PerformanceRecords.from_long(long.drop(columns=["text", "benchmark"]),
                                        rec.prompts, rec.llms, score_range=(0, 1), name="t")
    assert back.equals(rec)


# ------------------------------------------------------------------- select
def test_select_prompts(rec):
    s = rec.select_prompts(["p3", "p1"])
    assert list(s.prompt_ids) == ["p3", "p1"]
    np.testing.assert_array_equal(s.dense(), rec.dense()[[2, 0]])
    np.testing.assert_array_equal(s.cost_dense(), rec.cost_dense()[[2, 0]])
    assert s.prompts["extra"].tolist() == [3, 1]
    assert rec.select_prompts(np.array([True, False, True])).n_prompts == 2
    assert list(rec.select_prompts([-1]).prompt_ids) == ["p3"]
    assert rec.select_prompts(slice(0, 2)).n_prompts == 2
    assert rec.select_prompts(np.array([], dtype=np.int64)).shape == (0, 3)
    with pytest.raises(UnknownIdError, match="prompt id 'zz'"):
        rec.select_prompts(["zz"])
    with pytest.raises(UnknownIdError, match="out of range"):
        rec.select_prompts([3])
    with pytest.raises(DataFormatError, match="mask has length 2"):
        rec.select_prompts(np.array([True, False]))


def test_select_llms(rec):
    s = rec.select_llms(["c", "a"])
    assert s.llm_names == ["c", "a"]
    np.testing.assert_array_equal(s.dense(), rec.dense()[:, [2, 0]])
    assert s.llms["params_b"].tolist() == [8.0, 7.0]
    assert s.n_observed == 3
    assert rec.select_llms(np.array([False, True, False])).llm_names == ["b"]
    with pytest.raises(UnknownIdError, match="LLM 'zz'.*known LLMs: a, b, c"):
        rec.select_llms(["zz"])
    with pytest.raises(DataFormatError, match="selected twice"):
        rec.select_llms(["a", "a"])


def test_select_benchmarks(rec):
    m = rec.select_benchmarks("m")
    assert list(m.prompt_ids) == ["p1", "p3"]
    assert rec.select_benchmarks(["m", "g"]).n_prompts == 3
    with pytest.raises(UnknownIdError, match="benchmark.*known: \\['g', 'm'\\]"):
        rec.select_benchmarks("x")


def test_drop_empty(rec):
    r = rec.select_llms(["c"]).drop_empty()
    assert r.shape == (1, 1) and list(r.prompt_ids) == ["p3"]


# ------------------------------------------------------------------- concat
def test_concat_keeps_unobserved_unobserved():
    a = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["p1", "p2"], "llm": ["x", "x"], "score": [1.0, 0.0]}))
    b = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["p3", "p2"], "llm": ["y", "y"], "score": [0.0, 1.0]}))
    c = PerformanceRecords.concat([a, b], name="ab")
    assert list(c.prompt_ids) == ["p1", "p2", "p3"] and c.llm_names == ["x", "y"]
    d = c.dense()
    assert np.isnan(d[0, 1]) and np.isnan(d[2, 0])        # never seen: stays unknown
    assert d[1, 0] == 0.0 and d[1, 1] == 1.0 and d[2, 1] == 0.0
    assert c.n_observed == 4 and c.name == "ab"


def test_concat_conflict_and_empty():
    a = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["p"], "llm": ["x"], "score": [1.0]}))
    b = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["p"], "llm": ["x"], "score": [0.0]}))
    with pytest.raises(DataFormatError, match="conflicting"):
        PerformanceRecords.concat([a, b])
    with pytest.raises(DataFormatError, match="at least one"):
        PerformanceRecords.concat([])
    assert PerformanceRecords.concat([a, a]).n_observed == 1


def test_concat_drops_cost_unless_all_have_it(rec):
    other = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["q"], "llm": ["a"], "score": [1.0]}))
    assert PerformanceRecords.concat([rec, other]).cost is None
    assert PerformanceRecords.concat([rec, rec]).cost is not None


# --------------------------------------------------------------- save/load
def test_save_load_round_trip(rec, tmp_path):
    rec.prompts.loc[0, "category"] = "cat"
    path = rec.save(tmp_path / "r")
    back = PerformanceRecords.load(path)
    assert back.equals(rec)
    assert back.score_range == (0, 1) and back.name == "t"
    # saving over an existing directory replaces it
    rec.select_prompts(["p1"]).save(path)
    assert PerformanceRecords.load(path).n_prompts == 1
    assert not list(tmp_path.glob(".r.*"))            # no temporary leftovers


def test_load_corrupt_dirs(rec, tmp_path):
    with pytest.raises(DataFormatError, match="no meta.json"):
        PerformanceRecords.load(tmp_path / "missing")
    path = rec.save(tmp_path / "r")
    meta_p = path / "meta.json"
    meta = json.loads(meta_p.read_text())

    meta_p.write_text("{not json")
    with pytest.raises(DataFormatError, match="corrupt JSON"):
        PerformanceRecords.load(path)

    meta_p.write_text(json.dumps({**meta, "format": "other"}))
    with pytest.raises(DataFormatError, match="not a PerformanceRecords directory"):
        PerformanceRecords.load(path)

    meta_p.write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(DataFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        PerformanceRecords.load(path)

    meta_p.write_text(json.dumps({**meta, "n_observed": 99}))
    with pytest.raises(DataFormatError, match="meta.json says 99"):
        PerformanceRecords.load(path)

    meta_p.write_text(json.dumps(meta))
    (path / "records.parquet").write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="cannot read parquet"):
        PerformanceRecords.load(path)


# ---------------------------------------------------------------- summaries
def test_summaries(rec):
    ls = rec.llm_summary()
    assert ls["llm"].tolist() == ["a", "b", "c"]
    assert ls["n_observed"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(ls["mean_score"], [0.75, 0.0, 1.0])
    np.testing.assert_allclose(ls["mean_cost"], [0.1, 0.2, 0.3], rtol=1e-6)
    ps = rec.prompt_summary()
    assert ps["n_observed"].tolist() == [2, 1, 2]
    np.testing.assert_allclose(ps["mean_score"], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(ps["best_score"], [1.0, 0.5, 1.0])
    text = rec.summary()
    assert "3 prompts x 3 LLMs" in text and "benchmarks: m (2), g (1)" in text
    assert "per-record cost: yes" in text
    assert repr(rec) == "<PerformanceRecords 't': 3 prompts x 3 LLMs, 55.6% observed>"


def test_llm_summary_with_unobserved_llm():
    r = PerformanceRecords.from_long(pd.DataFrame({"prompt_id": ["p"], "llm": ["a"],
                                                   "score": [1.0]}),
                                     llms=pd.DataFrame({"name": ["a", "b"]}))
    s = r.llm_summary()
    assert s["n_observed"].tolist() == [1, 0] and np.isnan(s["mean_score"].iloc[1])


def test_errors_share_one_family():
    assert issubclass(DataFormatError, LLMRecError) and issubclass(DataFormatError, ValueError)
    assert issubclass(UnknownIdError, LookupError)
    assert str(UnknownIdError("x 'y'")) == "x 'y'"


def test_prompt_summary_with_prompts_without_records():
    """Prompts with no record (first, middle, last) get NaN, the others their own figures."""
    import numpy as np
    import pandas as pd
    from llmrec.data import PerformanceRecords
    long = pd.DataFrame({"prompt_id": ["b", "b", "d"], "llm": ["x", "y", "x"],
                         "score": [0.2, 0.8, 1.0]})
    rec = PerformanceRecords.from_long(long, prompts=pd.DataFrame(
        {"prompt_id": ["a", "b", "c", "d", "e"]}))
    s = rec.prompt_summary()
    assert s.n_observed.tolist() == [0, 2, 0, 1, 0]
    np.testing.assert_allclose(s.mean_score, [np.nan, 0.5, np.nan, 1.0, np.nan])
    np.testing.assert_allclose(s.best_score, [np.nan, 0.8, np.nan, 1.0, np.nan])
