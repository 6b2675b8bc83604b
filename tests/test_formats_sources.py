"""Readers of the public router datasets, on the real files (shared_data)."""

import numpy as np

from llmrec.data.formats import (read_embedllm, read_llmrouter, read_mt_bench,
                                 read_routellm_csv, read_routerbench, read_routerdc)
from llmrec.data.formats.routerbench import unwrap_prompt


def test_unwrap_prompt():
    assert unwrap_prompt("['a', 'b']") == "a\nb"
    assert unwrap_prompt("[not python") == "[not python"


def test_routerbench(shared_data):
    rec = read_routerbench(shared_data / "routerdc" / "routerbench_zs")
    assert rec.shape == (3178, 11)
    assert rec.cost is not None and rec.cost.nnz == rec.n_observed
    assert set(rec.prompts["benchmark"]) == {"arc-challenge", "mbpp", "winogrande"}
    assert set(rec.prompts["split"]) == {"train", "test"}
    assert not rec.texts[0].startswith("['")
    assert rec.n_observed < rec.n_prompts * rec.n_llms  # empty cells stay unobserved
    test = read_routerbench(shared_data / "routerdc" / "routerbench_zs", split="test")
    assert set(test.prompts["split"]) == {"test"} and test.n_prompts == 445 + 128 + 380


def test_routerdc(shared_data):
    rec = read_routerdc(shared_data / "routerdc" / "split2_model7", split="train")
    assert rec.n_llms == 7 and rec.density == 1.0
    assert set(rec.prompts["split"]) == {"train"}
    assert {"mmlu", "gsm8k", "cmmlu", "arc_challenge", "humaneval"} <= set(rec.prompts.benchmark)
    assert rec.prompts["cluster_id"].notna().any()
    d = rec.scores.data
    assert d.min() >= 0 and d.max() <= 1


def test_llmrouter(shared_data):
    rec = read_llmrouter(shared_data / "llmrouter")
    assert rec.shape == (5608 + 500, 9)
    assert rec.llms["price_input"].notna().all() and rec.llms["params_b"].notna().all()
    assert rec.prompts["split"].value_counts().to_dict() == {"train": 5608, "test": 500}


def test_routellm(shared_data):
    mmlu = read_routellm_csv(shared_data / "routellm" / "mmlu_responses")
    assert mmlu.shape == (14042, 2) and mmlu.prompts["category"].nunique() == 57
    gsm = read_routellm_csv(shared_data / "routellm" / "gsm8k_gsm8k_responses.csv",
                            benchmark="gsm8k")
    assert gsm.shape == (1319, 2) and set(gsm.prompts.benchmark) == {"gsm8k"}
    mt = read_mt_bench(shared_data / "routellm")
    assert mt.shape == (160, 2) and mt.score_range == (1.0, 10.0)
    assert mt.has_text and mt.prompts["category"].notna().all()


def test_embedllm_long_equals_wide(shared_data):
    long = read_embedllm(shared_data / "llm2vec" / "triple_correctness.csv")
    wide = read_embedllm(shared_data / "llm2vec" / "mmlu_correctness_1k.csv")
    assert long.shape == (1000, 24)
    assert list(long.prompt_ids) == list(wide.prompt_ids)
    assert long.llm_names == wide.llm_names
    assert np.array_equal(long.dense(), wide.dense())
