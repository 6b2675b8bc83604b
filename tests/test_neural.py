"""Neural routers: textmf and twotower (torch on the CPU, small settings)."""

import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from llmrec.datasets import make_synthetic
from llmrec.errors import ConfigError, DataFormatError
from llmrec.routers import TextMFRouter, TwoTowerRouter, load_router, make_router

from .router_conformance import RouterConformance, small_encoder

torch = pytest.importorskip("torch")


class TestTextMF(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("textmf", dim=8, epochs=8, batch_size=64, random_state=1)


class TestTextMFHidden(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("textmf", dim=8, hidden=16, dropout=0.1, epochs=5, batch_size=64)


class TestTwoTower(RouterConformance):
    fit_kwargs = {"encoder": small_encoder(), "side_features": ("length",)}

    def make(self):
        return make_router("twotower", dim=8, hidden=16, llm_hidden=8, epochs=8,
                           batch_size=64, inbatch_softmax_weight=0.5, random_state=2)


# ------------------------------------------------------------------ helpers
@pytest.fixture(scope="module")
def heldout():
    """700 training + 2,000 test synthetic prompts x 9 LLMs; one LLM is held out.

    The test set is large so that mu is not at the mercy of a few coin flips.
    """
    rec = make_synthetic(2700, 9, n_topics=4, seed=3)
    perm = np.random.default_rng(0).permutation(rec.n_prompts)
    train, test = rec.select_prompts(perm[:700]), rec.select_prompts(perm[700:])
    new = "llm-01"  # a specialist: strong on two of the four topics
    old = [n for n in rec.llm_names if n != new]
    return train, test, new, old


def _mu(router, test, candidates=None):
    ids, _ = router.recommend_ids(test.texts, k=1, candidates=candidates)
    truth = test.select_llms(router.llm_names_).dense()
    return float(truth[np.arange(test.n_prompts), ids[:, 0]].mean())


@pytest.mark.parametrize("name,params", [
    ("textmf", {"dim": 16, "epochs": 15}),
    ("twotower", {"dim": 16, "hidden": 32, "epochs": 15}),
])
def test_add_llm_from_probes(heldout, name, params, tmp_path):
    train, test, new, old = heldout
    router = make_router(name, batch_size=64, **params).fit(
        train.select_llms(old), encoder=small_encoder())
    mu_before = _mu(router, test)
    probe = train.select_prompts(np.arange(50))  # 50 answered probe prompts
    router.add_llm(new, probe)
    assert router.llm_names_[-1] == new and router.n_llms_ == 9
    S = router.score(test.texts)
    y = test.select_llms([new]).dense()[:, 0]
    assert roc_auc_score(y, S[:, -1]) > 0.6
    assert _mu(router, test) >= mu_before
    # the added LLM survives a save/load round trip, and recommend still equals score
    router.save(tmp_path / "m")
    loaded = load_router(tmp_path / "m")
    np.testing.assert_array_equal(loaded.score(test.texts[:5]), router.score(test.texts[:5]))
    ids, vals = loaded.recommend_ids(test.texts, k=2)
    np.testing.assert_allclose(vals, np.take_along_axis(S, ids, 1), rtol=1e-4, atol=1e-5)


def test_twotower_metadata_vector(heldout):
    train, test, new, old = heldout
    r = TwoTowerRouter(dim=8, hidden=16, epochs=3).fit(train.select_llms(old),
                                                       encoder=small_encoder())
    assert r.meta_spec_["numeric"] == ["params_b", "price_input", "price_output"]
    assert len(r.meta_spec_["providers"]) == 5
    meta = train.llms.set_index("name").loc[new].to_dict()
    v, b = r.llm_metadata_vector(meta)
    assert v.shape == (8,) and np.isfinite(b)
    v2, _ = r.llm_metadata_vector({"params_b": 500.0, "provider": "unknown-provider"})
    assert not np.allclose(v, v2)  # metadata moves the vector
    # without metadata columns, the tower is the ID embedding alone
    bare = train.select_llms(old)
    bare.llms = bare.llms[["name"]]
    r2 = TwoTowerRouter(dim=8, hidden=16, epochs=2).fit(bare, encoder=small_encoder())
    assert r2.meta_layers_ == []


def test_early_stopping_and_history(synth_split):
    train, test = synth_split
    r = TextMFRouter(dim=8, epochs=40, lr=0.05, patience=2).fit(
        train, val_records=test, encoder=small_encoder())
    assert len(r.history_["val_loss"]) == len(r.history_["train_loss"]) <= 40
    assert 1 <= r.best_epoch_ <= len(r.history_["val_loss"])
    assert r.history_["val_loss"][r.best_epoch_ - 1] == min(r.history_["val_loss"])


def test_predict_proba_is_sigmoid_of_score(synth_split):
    train, test = synth_split
    r = TextMFRouter(dim=8, epochs=3).fit(train, encoder=small_encoder())
    S, P = r.score(test.texts[:10]), r.predict_proba(test.texts[:10])
    np.testing.assert_allclose(P, 1 / (1 + np.exp(-S)), rtol=1e-5)
    assert ((P > 0) & (P < 1)).all()
    np.testing.assert_array_equal(np.argsort(S, 1), np.argsort(P, 1))


def test_continuous_scores_and_global_torch_state_restored():
    rec = make_synthetic(150, 4, n_topics=3, seed=1, binary=False)
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    state = torch.get_rng_state()
    TwoTowerRouter(dim=4, hidden=8, epochs=2).fit(rec, encoder=small_encoder())
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.get_rng_state(), state)


def test_errors(synth):
    enc = small_encoder()
    with pytest.raises(ConfigError, match="dim"):
        TextMFRouter(dim=0).fit(synth, encoder=enc)
    with pytest.raises(ConfigError, match="lr"):
        TwoTowerRouter(lr=0).fit(synth, encoder=enc)
    with pytest.raises(ConfigError, match="id_dropout"):
        TwoTowerRouter(id_dropout=1.5).fit(synth, encoder=enc)
    with pytest.raises(ConfigError, match="hidden"):
        TextMFRouter(hidden="wide").fit(synth, encoder=enc)
    bad = synth.select_prompts(np.arange(50))
    bad.scores.data[3] = 2.0
    with pytest.raises(DataFormatError, match=r"outside \[0, 1\].*rescale"):
        TextMFRouter(epochs=1).fit(bad, encoder=enc)
    r = TextMFRouter(dim=4, epochs=1).fit(synth, encoder=enc)
    with pytest.raises(ConfigError, match="already known"):
        r.add_llm(synth.llm_names[0], synth)


def test_missing_torch_is_a_config_error(synth, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(ConfigError, match="needs torch"):
        TextMFRouter(epochs=1).fit(synth.select_prompts(np.arange(40)), encoder=small_encoder())
