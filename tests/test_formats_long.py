import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.data.formats import read_long, write_long
from llmrec.datasets import make_synthetic


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_write_read_round_trip(tmp_path, fmt):
    rec = make_synthetic(40, 4, density=0.7, seed=1)
    out = write_long(rec, tmp_path / "mine", format=fmt)
    back = read_long(out)
    assert back.equals(rec, check_tables=False)
    assert back.score_range == rec.score_range
    assert list(back.texts) == list(rec.texts)
    assert list(back.llms["name"]) == rec.llm_names


def test_round_trip_with_cost_and_string_ids(tmp_path):
    df = pd.DataFrame({"prompt_id": ["001", "001", "002"], "llm": ["a", "b", "a"],
                       "score": [1.0, 0.0, 0.5], "cost": [0.1, 0.2, 0.3]})
    rec = PerformanceRecords.from_long(df)
    back = read_long(write_long(rec, tmp_path / "d", format="csv"))
    assert list(back.prompt_ids) == ["001", "002"]
    assert np.allclose(back.cost_dense(0), rec.cost_dense(0))


def test_configurable_columns_and_side_files(tmp_path):
    pd.DataFrame({"q": ["x", "y", "x"], "model": ["m", "m", "n"], "acc": [1, 0, 1]}).to_csv(
        tmp_path / "r.csv", index=False)
    pd.DataFrame({"q": ["y", "x"], "text": ["why", "ex"], "benchmark": ["b", "b"]}).to_parquet(
        tmp_path / "p.parquet")
    pd.DataFrame({"name": ["n", "m"], "params_b": [7, 70]}).to_json(
        tmp_path / "l.jsonl", orient="records", lines=True)
    rec = read_long(tmp_path / "r.csv", tmp_path / "p.parquet", tmp_path / "l.jsonl",
                    prompt_col="q", llm_col="model", score_col="acc", score_range=(0, 1))
    assert list(rec.prompt_ids) == ["y", "x"] and rec.llm_names == ["n", "m"]
    assert rec.texts == ["why", "ex"]
    assert rec.dense()[1].tolist() == [1.0, 1.0]


def test_directory_of_user_records(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    pd.DataFrame({"prompt_id": [1, 2], "llm": ["a", "a"], "score": [0.2, 0.4]}).to_json(
        d / "records.jsonl", orient="records", lines=True)
    pd.DataFrame({"prompt_id": [1, 2], "text": ["t1", "t2"]}).to_csv(d / "prompts.csv",
                                                                     index=False)
    rec = read_long(d)
    assert rec.name == "mine" and rec.texts == ["t1", "t2"]


def test_single_file_with_text_column_gives_prompt_table(tmp_path):
    import pandas as pd
    from llmrec.data.formats import read_long
    pd.DataFrame({"prompt_id": ["a", "a", "b"], "llm": ["x", "y", "x"], "score": [1, 0, 1],
                  "text": ["hi there", "hi there", "yo"], "benchmark": ["m", "m", "n"]}
                 ).to_csv(tmp_path / "r.csv", index=False)
    rec = read_long(tmp_path / "r.csv")
    assert rec.texts == ["hi there", "yo"]
    assert list(rec.prompts.benchmark) == ["m", "n"]
