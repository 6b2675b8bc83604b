import numpy as np
import pytest

from llmrec.data.formats import read_mmlu_pro, read_mmlu_pro_zips
from llmrec.data.formats.mmlu_pro import question_text


def test_question_text():
    assert question_text("Q?", ["a", "b"]) == "Q?\nA. a\nB. b"


@pytest.fixture(scope="module")
def matrix(shared_data):
    return read_mmlu_pro(shared_data / "mmlu_pro")


def test_matrix_shape_and_gaps(matrix):
    assert matrix.shape == (12032, 29)
    assert matrix.n_prompts * matrix.n_llms - matrix.n_observed == 1713
    assert not any(n.endswith("shots") for n in matrix.llm_names)
    assert matrix.prompts["category"].nunique() == 14
    assert set(matrix.prompts["benchmark"]) == {"mmlu_pro"}
    assert matrix.texts[0].split("\n")[1].startswith("A. ")
    assert matrix.score_range == (0.0, 1.0)


def test_zips_reproduce_matrix_columns(matrix, shared_data):
    z = read_mmlu_pro_zips(shared_data / "mmlu_pro" / "eval_results")
    assert sorted(z.llm_names) == sorted(["Llama-2-7b-hf", "Phi-3-mini-4k-instruct",
                                          "gemini-1.5-pro-002"])
    sub = matrix.select_llms(z.llm_names).select_prompts(list(z.prompt_ids))
    a, b = sub.dense(), z.dense()
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.array_equal(np.nan_to_num(a, nan=-1), np.nan_to_num(b, nan=-1))
    # the same categories (texts differ in a few spaces between the two releases)
    assert list(sub.prompts["category"]) == list(z.prompts["category"])
    # and every observed cell of those columns in the matrix is covered by the zips
    assert matrix.select_llms(z.llm_names).n_observed == z.n_observed
