"""add_llm on LLMs held out of MMLU-Pro (real data), 50 probe prompts each.

Routers that support new LLMs fit on the kept LLMs, then add each held-out LLM from
its 50 probe prompts with everything else frozen. The added LLM's predicted scores on
the test prompts must separate its right answers from its wrong ones (AUC clearly
above 0.5), and adding it to the pool must not lower mu. A 4,000-prompt subset and
a small TF-IDF encoder keep this under a minute; benchmarks/RESULTS.md has the
full-data figures (`python benchmarks/bench_realdata.py --jobs mmlu-cold-llm`).
"""

import numpy as np
import pytest

from llmrec.datasets import load
from llmrec.encoders import TfidfEncoder
from llmrec.evaluation.protocols import cold_llm_protocol

ROUTERS = [("als", "als", {"factors": 16, "iterations": 10}), ("linear", "linear", {}),
           ("textmf", "textmf", {"epochs": 10}), ("twotower", "twotower", {"epochs": 10}),
           ("lightfm", "lightfm", {"no_components": 16, "epochs": 3}),
           ("best-single", "best-single", {})]
# three held-out LLMs of different strength (by mean score on MMLU-Pro)
HELD_OUT = ["Llama-2-13b-hf", "Meta-Llama-3-8B", "Qwen1.5-72B-Chat"]


@pytest.fixture(scope="module")
def result(shared_data):
    rec = load("mmlu-pro", data_dir=shared_data)
    rec = rec.select_prompts(np.random.default_rng(0).permutation(rec.n_prompts)[:4000])
    return cold_llm_protocol(rec, ROUTERS, held_out=HELD_OUT, n_probe=50, n_boot=0, seed=42,
                             encoder=TfidfEncoder(dim=64, n_features=2 ** 16))


@pytest.mark.parametrize("router", ["als", "linear", "textmf", "twotower", "lightfm"])
def test_added_llm_scores_separate_right_from_wrong(result, router):
    row = result.table.loc[router]
    assert row["adds_llms"]
    assert row["new_llm_auc"] > 0.55, row["new_llm_auc"]


@pytest.mark.parametrize("router", ["als", "linear", "textmf", "twotower", "lightfm",
                                    "best-single"])
def test_adding_llms_does_not_lower_mu(result, router):
    row = result.table.loc[router]
    # a tolerance of one standard error of mu on 800 test prompts would be ~0.016;
    # we ask for no drop beyond 0.01
    assert row["mu_gain_new"] >= -0.01, row["mu_gain_new"]
