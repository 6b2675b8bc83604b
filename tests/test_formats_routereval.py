import io
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from llmrec.data import PerformanceRecords
from llmrec.data.formats import (RestrictedUnpickler, load_pickle_safely, read_routereval,
                                 routereval_pools, write_routereval)
from llmrec.datasets import make_synthetic
from llmrec.errors import ConfigError, DataFormatError


def _with_split(rec, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.choice(["train", "val", "test"], size=rec.n_prompts, p=[0.8, 0.1, 0.1])
    s[:3] = ["train", "val", "test"]
    rec.prompts["split"] = s
    return rec


def test_round_trip_exact(tmp_path):
    rec = _with_split(make_synthetic(60, 6, seed=3, binary=False))
    pools = {"easy": {3: {"all_strong": rec.llm_names[:3], "all_weak": rec.llm_names[3:]}},
             "hard": {6: {"all": rec.llm_names}}}
    f = write_routereval(rec, tmp_path / "syn_router_dataset.pkl", pools=pools,
                         embeddings=np.ones((60, 4)))
    back = read_routereval(f)
    assert back.equals(rec)
    assert back.name == rec.name and back.score_range == rec.score_range
    assert routereval_pools(f) == {"easy/3/all_strong": rec.llm_names[:3],
                                   "easy/3/all_weak": rec.llm_names[3:],
                                   "hard/6/all": rec.llm_names}
    assert read_routereval(f, pool="easy/3/all_weak").llm_names == rec.llm_names[3:]
    raw = load_pickle_safely(f)
    assert raw["easy"][3]["all_strong"]["data"]["train_score"].shape[1] == 3
    assert raw["embedding"]["test_embed"].shape[1] == 4


def test_round_trip_from_three_parts_and_cost(tmp_path):
    df = pd.DataFrame({"prompt_id": list("aabbcc"), "llm": list("xyxyxy"),
                       "score": [1, 0, 0.5, 1, 0, 0], "cost": [1, 2, 3, 4, 5, 6]})
    rec = PerformanceRecords.from_long(df)
    parts = [rec.select_prompts([i]) for i in range(3)]
    f = write_routereval(parts, tmp_path / "x.pkl")
    back = read_routereval(f)
    assert back.equals(rec, check_tables=False)
    assert list(back.prompts["split"]) == ["train", "val", "test"]


def test_plain_routereval_layout_without_meta(tmp_path):
    obj = {"easy": {2: {"all_strong": {"data": {
        "train_score": np.array([[1.0, 0.0], [0.0, 1.0]]),
        "val_score": np.array([[1.0, 1.0]]), "test_score": np.array([[0.0, 0.0]])},
        "model": ["m1", "m2"]}}},
        "split_index": {"train_indices": np.array([3, 0]), "val_indices": np.array([1]),
                        "test_indices": np.array([2])},
        "prompt": {"train_prompt": ["p3", "p0"], "val_prompt": ["p1"], "test_prompt": ["p2"]}}
    f = tmp_path / "arc_router_dataset.pkl"
    f.write_bytes(pickle.dumps(obj, protocol=2))  # protocol 2: arrays via _codecs.encode
    rec = read_routereval(f)
    assert list(rec.prompt_ids) == ["0", "1", "2", "3"]
    assert rec.texts == ["p0", "p1", "p2", "p3"]
    assert list(rec.prompts["split"]) == ["train", "val", "test", "train"]
    assert set(rec.prompts["benchmark"]) == {"arc"}
    assert rec.dense()[3].tolist() == [1.0, 0.0]


def test_writer_refuses_sparse_pools_and_bad_split(tmp_path):
    rec = _with_split(make_synthetic(30, 3, density=0.6, seed=0))
    with pytest.raises(DataFormatError, match="RouterEval arrays are dense"):
        write_routereval(rec, tmp_path / "x.pkl", pools={"hard/3/all": rec.llm_names})
    with pytest.raises(DataFormatError, match="no LLM is observed on every prompt"):
        write_routereval(rec, tmp_path / "x.pkl")
    with pytest.raises(ConfigError, match="split must be"):
        write_routereval(make_synthetic(10, 2, seed=0), tmp_path / "y.pkl", split=[1, 2])
    with pytest.raises(ConfigError, match="covers 3 of 10"):
        write_routereval(make_synthetic(10, 2, seed=0), tmp_path / "y.pkl",
                         split={"train": [0], "val": [1], "test": [2]})


def test_writer_defaults_routereval_split_and_dense_pool(tmp_path):
    from llmrec.data.splits import routereval_split
    rec = make_synthetic(50, 3, seed=0)
    # make LLM 2 miss one prompt: the default pool keeps the fully observed LLMs
    long = rec.to_long()
    long = long[~((long.prompt_id == rec.prompt_ids[0]) & (long.llm == rec.llm_names[2]))]
    sparse = PerformanceRecords.from_long(long, rec.prompts, rec.llms)
    f = write_routereval(sparse, tmp_path / "d.pkl")
    assert list(routereval_pools(f)) == ["hard/2/all"]
    back = read_routereval(f)
    s = routereval_split(sparse)
    assert (back.prompts["split"] == "test").sum() == len(s.test_idx) == 5
    assert back.equals(sparse.select_llms([0, 1]), check_tables=False)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + str(_Evil.target),))


def test_malicious_pickle_executes_nothing(tmp_path):
    target = tmp_path / "pwned"
    _Evil.target = target
    f = tmp_path / "evil_router_dataset.pkl"
    f.write_bytes(pickle.dumps({"data": _Evil()}))
    with pytest.raises(DataFormatError) as e:
        read_routereval(f)
    assert "system" in str(e.value) and str(f) in str(e.value)
    assert not target.exists()
    # eval / exec / getattr are refused too
    blob = b"cbuiltins\neval\n(S'1+1'\ntR."
    with pytest.raises(DataFormatError, match="builtins.eval"):
        RestrictedUnpickler(io.BytesIO(blob), source="mem").load()


def test_sample_pickle(shared_data):
    f = shared_data / "routereval_sample" / "router_extended_data.pkl"
    rec = read_routereval(f)
    assert rec.shape == (20, 2)
    assert rec.llm_names == ["mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"]
    assert rec.prompts["split"].value_counts().to_dict() == {"train": 16, "val": 2, "test": 2}
    assert rec.has_text
    raw = load_pickle_safely(f)
    assert np.allclose(rec.dense()[:16], raw["data"]["train_score"])
