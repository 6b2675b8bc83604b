"""Bad input: every reader says which file, row / column / field is wrong."""

import json
import pickle
import zipfile
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.data.formats import (read_embedllm, read_llmrouter, read_long, read_mmlu_pro,
                                 read_mmlu_pro_zips, read_mt_bench, read_routerbench,
                                 read_routerdc, read_routereval, read_routellm_csv, write_long)
from llmrec.datasets import make_synthetic
from llmrec.errors import DataFormatError, LLMRecError, UnknownIdError


def _csv(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------- columns
def test_missing_column_long(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt,llm,score\np1,a,1\n")
    with pytest.raises(DataFormatError, match=r"r\.csv.*missing column.*'prompt_id'"):
        read_long(f)


def test_misnamed_id_column_in_prompts_file(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\n")
    p = _csv(tmp_path / "p.csv", "id,text\np1,hello\n")
    with pytest.raises(DataFormatError, match=r"p\.csv.*no id column 'prompt_id'"):
        read_long(f, prompts=p)


def test_missing_column_routerbench(tmp_path):
    f = _csv(tmp_path / "x_train.csv", "sample_id,eval_name,m\na,x,1\n")
    with pytest.raises(DataFormatError, match=r"x_train\.csv.*missing column.*'prompt'"):
        read_routerbench(f)


def test_missing_field_routerdc(tmp_path):
    f = tmp_path / "mmlu_train.json"
    f.write_text(json.dumps([{"question": "q", "scores": {"a": 1}}, {"question": "q2"}]))
    with pytest.raises(DataFormatError, match=r"mmlu_train\.json, element 1.*'scores'"):
        read_routerdc(f)


def test_missing_field_mt_bench(tmp_path):
    f = tmp_path / "j.jsonl"
    f.write_text(json.dumps({"question_id": 1, "model": "m", "score": 9}) + "\n")
    with pytest.raises(DataFormatError, match=r"j\.jsonl.*missing column.*'turn'"):
        read_mt_bench(f)


# -------------------------------------------------------------- values
def test_non_numeric_score(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\np2,a,high\n")
    with pytest.raises(DataFormatError, match=r"r\.csv, line 3, column 'score': score 'high' is"):
        read_long(f)


def test_nan_score(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,\n")
    with pytest.raises(DataFormatError, match=r"r\.csv, line 2, column 'score': score \(empty\) is"):
        read_long(f)


def test_non_numeric_in_matrix_and_json(tmp_path):
    f = _csv(tmp_path / "correctness_matrix.csv", "question_id,m_5shots\n1,1\n2,yes\n")
    with pytest.raises(DataFormatError, match=r"line 3, column 'm_5shots'.*'yes'"):
        read_mmlu_pro(f)
    j = tmp_path / "gsm8k-test.json"
    j.write_text(json.dumps([{"question": "q", "scores": {"a": "0.5"}}]))
    with pytest.raises(DataFormatError, match=r"element 0, field 'scores', LLM 'a'"):
        read_routerdc(j)
    c = _csv(tmp_path / "mmlu_x.csv", "prompt,m\nq,maybe\n")
    with pytest.raises(DataFormatError, match=r"mmlu_x\.csv, line 2, column 'm'"):
        read_routellm_csv(c)


def test_score_out_of_range(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,0.5\np2,a,1.5\n")
    with pytest.raises(DataFormatError, match=r"line 3, column 'score'.*outside.*\[0, 1\]"):
        read_long(f, score_range=(0, 1))
    j = tmp_path / "arc_test.json"
    j.write_text(json.dumps([{"question": "q", "scores": {"a": 2.0}}]))
    with pytest.raises(DataFormatError, match="outside the declared range"):
        read_routerdc(j)


def test_conflicting_duplicates(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\np1,b,0\np1,a,0\n")
    with pytest.raises(DataFormatError, match=r"r\.csv: lines 2 and 4.*'p1'.*'a'"):
        read_long(f)
    assert read_long(f, on_duplicate="mean").dense()[0, 0] == 0.5


def test_empty_inputs(tmp_path):
    with pytest.raises(DataFormatError, match="empty"):
        read_long(_csv(tmp_path / "e.csv", ""))
    with pytest.raises(DataFormatError, match="no records"):
        read_long(_csv(tmp_path / "h.csv", "prompt_id,llm,score\n"))
    j = tmp_path / "mmlu_test.json"
    j.write_text("[]")
    with pytest.raises(DataFormatError, match=r"mmlu_test\.json: empty list"):
        read_routerdc(j)
    with pytest.raises(DataFormatError, match="no model_outputs"):
        read_mmlu_pro_zips(tmp_path)
    with pytest.raises(DataFormatError, match="no rows"):
        read_embedllm(_csv(tmp_path / "t.csv", "model_id,prompt_id,label\n"))


# ----------------------------------------------------------- unknown ids
def test_unknown_prompt_in_records(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\np9,a,1\n")
    p = _csv(tmp_path / "p.csv", "prompt_id,text\np1,x\n")
    with pytest.raises(UnknownIdError, match=r"line 3: prompt id 'p9'"):
        read_long(f, prompts=p)


def test_prompt_in_prompts_file_unknown_to_records(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\n")
    p = _csv(tmp_path / "p.csv", "prompt_id,text\np1,x\np2,y\n")
    with pytest.raises(UnknownIdError, match=r"p\.csv, line 3: prompt id 'p2' has no record"):
        read_long(f, prompts=p)
    assert read_long(f, prompts=p, unknown_ids="keep").n_prompts == 2


def test_llm_in_llm_file_unknown_to_records(tmp_path):
    f = _csv(tmp_path / "r.csv", "prompt_id,llm,score\np1,a,1\n")
    m = _csv(tmp_path / "llms.csv", "name,params_b\na,7\ngpt-9,1000\n")
    with pytest.raises(UnknownIdError, match=r"llms\.csv, line 3: LLM 'gpt-9'"):
        read_long(f, llms=m)


def test_mmlu_question_missing_from_questions_file(tmp_path):
    _csv(tmp_path / "correctness_matrix.csv", "question_id,m_5shots\n1,1\n2,0\n")
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"question_id": "1", "question": "q", "options": ["a"]}) + "\n")
    with pytest.raises(DataFormatError, match=r"line 3: question_id '2' is not in"):
        read_mmlu_pro(tmp_path)


# ----------------------------------------------------- corrupt / truncated
def test_truncated_parquet(tmp_path):
    d = write_long(make_synthetic(30, 3, seed=0), tmp_path / "d", format="parquet")
    raw = (d / "records.parquet").read_bytes()
    (d / "records.parquet").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"records\.parquet: cannot read"):
        read_long(d)


def test_truncated_zip(tmp_path):
    f = tmp_path / "model_outputs_m_5shots.zip"
    with zipfile.ZipFile(f, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model_outputs_m_5shots.json", json.dumps(
            [{"question_id": i, "answer": "A", "pred": "A"} for i in range(500)]))
    raw = f.read_bytes()
    f.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"model_outputs_m_5shots\.zip: corrupt or "
                                              "truncated zip"):
        read_mmlu_pro_zips(f)


def test_broken_json(tmp_path):
    j = tmp_path / "dcrouter_train.json"
    j.write_text('[{"question": "q", "scores": {"a": 1.0}}, {"question": ')
    with pytest.raises(DataFormatError, match=r"dcrouter_train\.json: broken JSON at line 1"):
        read_llmrouter(j)
    bad = tmp_path / "r.jsonl"
    bad.write_text('{"prompt_id": "p", "llm": "a", "score": 1}\n{"prompt_id": \n')
    with pytest.raises(DataFormatError, match=r"r\.jsonl: cannot read"):
        read_long(bad)


def test_truncated_pickle(tmp_path):
    f = tmp_path / "t_router_dataset.pkl"
    f.write_bytes(pickle.dumps({"data": {"train_score": np.zeros((3, 2))}})[:40])
    with pytest.raises(DataFormatError, match=r"t_router_dataset\.pkl: corrupt or truncated"):
        read_routereval(f)


def test_pickle_with_non_plain_data(tmp_path):
    f = tmp_path / "df_router_dataset.pkl"
    f.write_bytes(pickle.dumps({"data": pd.DataFrame({"a": [1]}), "model": ["m"]}))
    with pytest.raises(DataFormatError, match=r"df_router_dataset\.pkl: refused to load global "
                                              r"'pandas"):
        read_routereval(f)
    g = tmp_path / "od.pkl"
    g.write_bytes(pickle.dumps(OrderedDict(a=1)))
    with pytest.raises(DataFormatError, match="collections.OrderedDict"):
        read_routereval(g)


def test_pickle_wrong_layout(tmp_path):
    f = tmp_path / "w.pkl"
    f.write_bytes(pickle.dumps({"easy": {3: {"all_strong": {"model": ["a"]}}}}))
    with pytest.raises(DataFormatError, match=r"\['easy'\]\[3\]\['all_strong'\] needs keys"):
        read_routereval(f)
    g = tmp_path / "s.pkl"
    g.write_bytes(pickle.dumps({"data": {"train_score": np.zeros((2, 3)),
                                         "val_score": np.zeros((1, 2)),
                                         "test_score": np.zeros((1, 2))}, "model": ["a", "b"]}))
    with pytest.raises(DataFormatError, match="train_score has shape"):
        read_routereval(g)


# ---------------------------------------------------------- constructors
def test_constructor_errors():
    with pytest.raises(DataFormatError, match="no column 'prompt_id'"):
        PerformanceRecords(np.ones((1, 1)), pd.DataFrame({"id": ["p"]}),
                           pd.DataFrame({"name": ["a"]}))
    with pytest.raises(DataFormatError, match="outside the declared range"):
        PerformanceRecords(np.array([[2.0]]), pd.DataFrame({"prompt_id": ["p"]}),
                           pd.DataFrame({"name": ["a"]}), score_range=(0, 1))
    with pytest.raises(DataFormatError, match="shape"):
        PerformanceRecords(np.ones((2, 1)), pd.DataFrame({"prompt_id": ["p"]}),
                           pd.DataFrame({"name": ["a"]}))


def test_all_errors_are_llmrec_errors(tmp_path):
    with pytest.raises(LLMRecError):
        read_long(tmp_path / "absent.csv")
