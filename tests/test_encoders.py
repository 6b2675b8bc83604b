"""Encoders: sentence-transformers (offline MiniLM), precomputed vectors, side
features, make_encoder and encode_records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

from llmrec.encoders import (PrecomputedEncoder, PromptFeaturizer, SentenceTransformerEncoder,
                             TfidfEncoder, encode_records, encoder_from_state, make_encoder)
from llmrec.encoders.precomputed import ids_path_for
from llmrec.errors import ConfigError, DataFormatError, ModelFormatError, UnknownIdError

TEXTS = ["What is 2 + 2?", "Name the capital of France.",
         "Explain how a transformer attends to earlier tokens.", ""]


# --------------------------------------------------------------- make_encoder
def test_make_encoder_names():
    assert isinstance(make_encoder(), TfidfEncoder)
    assert isinstance(make_encoder("tfidf", dim=8), TfidfEncoder)
    enc = make_encoder("minilm", batch_size=8)
    assert isinstance(enc, SentenceTransformerEncoder) and enc.is_default
    assert enc.batch_size == 8
    other = make_encoder("/some/model/folder")
    assert isinstance(other, SentenceTransformerEncoder) and other.model == "/some/model/folder"
    assert make_encoder(enc) is enc
    with pytest.raises(ConfigError):
        make_encoder(3)


def test_sentence_encoder_init_loads_nothing_and_round_trips():
    enc = SentenceTransformerEncoder(batch_size=16, normalize=False, max_seq_length=32)
    assert getattr(enc, "_st", None) is None
    cfg = enc.get_config()
    assert cfg["model"] == "default" and json.loads(json.dumps(cfg)) == cfg
    back = encoder_from_state(cfg, {})
    assert isinstance(back, SentenceTransformerEncoder) and back.model is None
    assert back.get_config() == cfg
    assert getattr(back, "_st", None) is None
    # fingerprint: no model load, depends on output-changing settings only
    fp = enc.fingerprint
    assert fp.startswith("sentence:all-MiniLM-L6-v2:")
    assert getattr(enc, "_st", None) is None
    assert SentenceTransformerEncoder(batch_size=3, device="cuda", normalize=False,
                                      max_seq_length=32).fingerprint == fp
    assert SentenceTransformerEncoder(normalize=True, max_seq_length=32).fingerprint != fp
    assert SentenceTransformerEncoder(normalize=False).fingerprint != fp


def test_sentence_encoder_bad_settings():
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceTransformerEncoder(batch_size=0).encode(["x"])
    with pytest.raises(ConfigError, match="max_seq_length"):
        SentenceTransformerEncoder(max_seq_length=-1).encode(["x"])


# ------------------------------------------------------- sentence-transformers
@pytest.fixture(scope="module")
def st_module():
    return pytest.importorskip("sentence_transformers")


@pytest.fixture(scope="module")
def minilm(st_module):
    enc = SentenceTransformerEncoder(batch_size=4, show_progress=False)
    enc.encode(["warm up"])
    return enc


@pytest.mark.embed
def test_minilm_matches_sentence_transformers_directly(minilm, st_module):
    from llmrec.encoders.sentence import default_model_path
    direct = st_module.SentenceTransformer(default_model_path(), device="cpu")
    want = direct.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    got = minilm.encode(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), 384) == want.shape
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert minilm.dim == 384
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.embed
def test_minilm_batching_and_normalisation(minilm):
    # all-MiniLM-L6-v2 ends in a Normalize module: its vectors are unit-length even with
    # normalize=False; batch size must not change them
    small = SentenceTransformerEncoder(batch_size=1, normalize=False, show_progress=False)
    small._st = minilm._st  # same weights, no second load
    raw = small.encode(TEXTS[:3])
    np.testing.assert_allclose(raw, minilm.encode(TEXTS[:3]), atol=1e-5)


@pytest.mark.embed
def test_minilm_reports_truncation_once(minilm):
    enc = SentenceTransformerEncoder(max_seq_length=16, show_progress=False)
    enc._load()
    long_texts = ["word " * 40, "short", "token " * 30]
    with pytest.warns(UserWarning, match="2 of 3 prompts are longer than max_seq_length=16"):
        enc.encode(long_texts)
    assert enc.last_truncated_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second time it is quiet
        enc.encode(long_texts[:1])
    assert enc.last_truncated_ == 1
    enc.encode(["short"])
    assert enc.last_truncated_ == 0
    # a prompt within the default 256 tokens is not counted
    minilm.encode(["word " * 100])
    assert minilm.last_truncated_ == 0


@pytest.mark.embed
def test_unknown_model_is_a_clear_error(st_module, tmp_path):
    with pytest.raises(ConfigError, match="could not load sentence-transformers model"):
        SentenceTransformerEncoder(model=str(tmp_path / "nothing-here")).encode(["x"])


@pytest.mark.embed
def test_minilm_loads_offline_in_a_fresh_process(minilm, tmp_path, st_module):
    """No network: a broken proxy and a socket guard, and it still loads and encodes."""
    out = tmp_path / "v.npy"
    script = textwrap.dedent(f"""
        import socket, sys
        _connect = socket.socket.connect
        def guard(self, addr):
            if self.family in (socket.AF_INET, socket.AF_INET6):
                raise RuntimeError(f"network access attempted: {{addr}}")
            return _connect(self, addr)
        socket.socket.connect = guard
        socket.create_connection = lambda *a, **k: guard(socket.socket(), a[0])
        import numpy as np, os
        from llmrec.encoders import make_encoder
        enc = make_encoder("minilm", show_progress=False)
        X = enc.encode({TEXTS!r})
        assert os.environ["HF_HUB_OFFLINE"] == "1"
        np.save({str(out)!r}, X)
        """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HTTPS_PROXY="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", ALL_PROXY="http://127.0.0.1:9",
               https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9",
               OMP_NUM_THREADS="1", HF_HOME=str(tmp_path / "hf_home"))
    env.pop("TRANSFORMERS_OFFLINE", None)
    r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                       text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_allclose(np.load(out), minilm.encode(TEXTS), atol=1e-5)


# ----------------------------------------------------------------- precomputed
def test_precomputed_by_id_and_text(synth):
    rng = np.random.default_rng(0)
    V = rng.normal(size=(synth.n_prompts, 5)).astype(np.float32)
    enc = PrecomputedEncoder.from_records_embeddings(synth, V)
    assert enc.dim == 5 and len(enc) == synth.n_prompts
    rows = [3, 0, 7]
    np.testing.assert_array_equal(enc.encode_ids(synth.prompt_ids[rows]), V[rows])
    np.testing.assert_array_equal(enc.encode([synth.texts[r] for r in rows]), V[rows])
    # auto: ids are accepted by encode() too; text is tried first
    np.testing.assert_array_equal(enc.encode(list(synth.prompt_ids[rows])), V[rows])
    assert enc.encode([]).shape == (0, 5)
    with pytest.raises(UnknownIdError, match="'nope'"):
        enc.encode_ids(["s0000", "nope"])
    with pytest.raises(UnknownIdError, match="prompt 1 .'a brand new prompt'."):
        enc.encode([synth.texts[0], "a brand new prompt"])
    by_text = PrecomputedEncoder(V, ids=synth.prompt_ids, texts=synth.texts, key="text")
    with pytest.raises(UnknownIdError, match="looked up by text"):
        by_text.encode(["s0000"])


def test_precomputed_in_a_featurizer(synth):
    V = np.arange(synth.n_prompts * 2, dtype=np.float32).reshape(-1, 2)
    f = PromptFeaturizer(PrecomputedEncoder.from_records_embeddings(synth, V),
                         side_features=("length",)).fit(synth)
    X = f.transform(synth.select_prompts([5, 6]))
    np.testing.assert_array_equal(X[:, :2], V[[5, 6]])


def test_precomputed_bad_input():
    V = np.ones((2, 3))
    with pytest.raises(ConfigError, match="ids=, texts="):
        PrecomputedEncoder(V).encode(["x"])
    with pytest.raises(DataFormatError,
                       match=r"duplicate prompt id 'a' at row 2 \(first at row 1, 1-based\)"):
        PrecomputedEncoder(V, ids=["a", "a"]).encode(["a"])
    with pytest.raises(DataFormatError, match="3 ids for 2 vectors"):
        PrecomputedEncoder(V, ids=["a", "b", "c"]).dim
    with pytest.raises(DataFormatError, match=r"row 2 \(1-based\) has NaN"):
        PrecomputedEncoder(np.array([[1.0], [np.nan]]), ids=["a", "b"]).dim
    with pytest.raises(DataFormatError, match="2-D"):
        PrecomputedEncoder(np.ones(3), ids=["a", "b", "c"]).dim
    with pytest.raises(ConfigError, match="key must be"):
        PrecomputedEncoder(V, ids=["a", "b"], key="name").dim


def test_precomputed_persistence_round_trip(tmp_path):
    V = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    enc = PrecomputedEncoder(V, ids=["p1", "p2", "p3"], texts=["héllo", "wörld ✓", "x"])
    arrays = enc.get_arrays()
    assert all(a.dtype != object for a in arrays.values())
    np.savez(tmp_path / "enc.npz", **arrays)  # what a router's save() does
    with np.load(tmp_path / "enc.npz", allow_pickle=False) as z:
        back = encoder_from_state(json.loads(json.dumps(enc.get_config())), dict(z))
    np.testing.assert_array_equal(back.encode(["wörld ✓", "p3"]), V[[1, 2]])
    assert back.fingerprint == enc.fingerprint
    only_ids = PrecomputedEncoder(V, ids=["a", "b", "c"])
    back = encoder_from_state(only_ids.get_config(), only_ids.get_arrays())
    assert back.texts is None and back.encode_ids(["c"]).tolist() == V[[2]].tolist()
    with pytest.raises(ModelFormatError):
        encoder_from_state({"type": "precomputed"}, {})


# -------------------------------------------------------------- encode_records
def test_encode_records_writes_npy_and_ids(synth, tmp_path):
    info = encode_records(synth, TfidfEncoder(dim=16, n_features=2 ** 12),
                          tmp_path / "emb.npy")
    X = np.load(tmp_path / "emb.npy")
    meta = json.loads((tmp_path / "emb.ids.json").read_text())
    assert X.shape == (synth.n_prompts, info["dim"]) and X.dtype == np.float32
    assert meta["prompt_ids"] == list(synth.prompt_ids) and meta["texts"] == synth.texts
    assert meta["encoder"] == info["encoder"] and meta["encoder"].startswith("tfidf:")
    assert not list(tmp_path.glob("*.tmp"))
    # the same encoder again gives the same fingerprint and vectors
    enc = TfidfEncoder(dim=16, n_features=2 ** 12).fit(synth.texts)
    assert enc.fingerprint == meta["encoder"]
    np.testing.assert_allclose(enc.encode(synth.texts), X, atol=1e-6)
    back = PrecomputedEncoder.from_file(tmp_path / "emb.npy")
    np.testing.assert_array_equal(back.encode_ids(["s0003"]), X[[3]])
    np.testing.assert_array_equal(back.encode([synth.texts[4]]), X[[4]])
    encode_records(synth, enc, tmp_path / "b.npy", with_texts=False)
    assert json.loads((tmp_path / "b.ids.json").read_text())["texts"] is None


def test_encode_records_texts_and_cache(tmp_path):
    texts = ["alpha beta", "gamma delta", "alpha gamma"]
    info = encode_records(texts, TfidfEncoder(dim=2), tmp_path / "out",
                          cache_dir=tmp_path / "cache")
    assert info["npy"].endswith("out.npy") and ids_path_for(info["npy"]).is_file()
    back = PrecomputedEncoder.from_file(info["npy"])
    assert back.ids is None and back.encode(["gamma delta"]).shape == (1, info["dim"])
    assert list((tmp_path / "cache").rglob("shard-*.npz"))


def test_encode_records_errors(tmp_path):
    from llmrec.data import PerformanceRecords
    no_text = PerformanceRecords.from_long(pd.DataFrame(
        {"prompt_id": ["a", "b"], "llm": ["m", "m"], "score": [1.0, 0.0]}))
    with pytest.raises(DataFormatError, match="no prompt text"):
        encode_records(no_text, "tfidf", tmp_path / "e.npy")
    with pytest.raises(DataFormatError, match="prompt 1 is a int"):
        encode_records(["a", 3], "tfidf", tmp_path / "e.npy")
    with pytest.raises(DataFormatError, match="no prompts"):
        encode_records([], "tfidf", tmp_path / "e.npy")


def test_from_file_errors(tmp_path):
    np.save(tmp_path / "e.npy", np.ones((2, 3), np.float32))
    with pytest.raises(DataFormatError, match="e.ids.json: the prompt ids"):
        PrecomputedEncoder.from_file(tmp_path / "e.npy")
    (tmp_path / "e.ids.json").write_text(json.dumps(["a", "b", "c"]))
    with pytest.raises(DataFormatError, match="3 prompt_ids for 2 rows"):
        PrecomputedEncoder.from_file(tmp_path / "e.npy")
    (tmp_path / "ids.txt").write_text("a\nb\n")
    enc = PrecomputedEncoder.from_file(tmp_path / "e.npy", tmp_path / "ids.txt")
    assert enc.encode_ids(["b"]).shape == (1, 3)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(DataFormatError, match="bad.npy: not a readable"):
        PrecomputedEncoder.from_file(tmp_path / "bad.npy", tmp_path / "ids.txt")
    with pytest.raises(DataFormatError, match="no such"):
        PrecomputedEncoder.from_file(tmp_path / "missing.npy")


# --------------------------------------------------------------- side features
def _frame():
    return pd.DataFrame({"text": ["a b c", "longer prompt " * 10, "x", "y y"],
                         "benchmark": ["mmlu", "gsm8k", "mmlu", None],
                         "category": ["law", "math", "bio", "law"]})


def test_side_features_one_hot_and_length():
    enc = TfidfEncoder(dim=2)
    f = PromptFeaturizer(enc, side_features=("benchmark", "category", "length")).fit(_frame())
    assert f.levels_ == {"benchmark": ["gsm8k", "mmlu"], "category": ["bio", "law", "math"]}
    assert f.dim == enc.dim + 2 + 3 + 1
    X = f.transform(_frame())
    d = enc.dim
    np.testing.assert_array_equal(X[:, d:d + 2], [[0, 1], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(X[:, d + 2:d + 5], [[0, 1, 0], [0, 0, 1], [1, 0, 0],
                                                      [0, 1, 0]])
    lengths = _frame()["text"].str.len().to_numpy()
    np.testing.assert_allclose(X[:, -1], np.log1p(lengths) / 10, rtol=1e-6)
    assert X.dtype == np.float32


def test_side_features_unknown_levels_are_zeros():
    f = PromptFeaturizer(TfidfEncoder(dim=2), side_features=("benchmark", "category")).fit(
        _frame())
    new = pd.DataFrame({"text": ["q"], "benchmark": ["never seen"], "category": [None]})
    X = f.transform(new)
    assert not X[:, f.encoder.dim:].any()
    # plain texts have no benchmark or category: zeros as well
    assert not f.transform(["just text"])[:, f.encoder.dim:].any()


def test_side_features_records_config_and_errors(synth):
    f = PromptFeaturizer(TfidfEncoder(dim=4), side_features=("benchmark", "length")).fit(synth)
    X = f.transform(synth.select_prompts(range(10)))
    cfg = json.loads(json.dumps(f.get_config()))
    back = PromptFeaturizer.from_state(cfg, f.encoder.get_arrays())
    np.testing.assert_allclose(back.transform(synth.select_prompts(range(10))), X, atol=1e-6)
    np.testing.assert_array_equal(f.transform(X), X)  # precomputed features pass through
    with pytest.raises(ConfigError, match="expected"):
        f.transform(X[:, :-1])
    with pytest.raises(ConfigError, match="unknown side feature"):
        PromptFeaturizer(TfidfEncoder(), side_features=("colour",)).fit(synth)
    with pytest.raises(DataFormatError, match="no 'text' column"):
        f.transform(pd.DataFrame({"prompt": ["x"]}))


def test_importing_encoders_does_not_import_torch():
    code = ("import sys, llmrec.encoders as e; e.make_encoder('minilm').get_config(); "
            "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


# ------------------------------------------------------------------- real data
@pytest.mark.realdata
def test_encode_records_on_mmlu_pro(shared_data, tmp_path):
    from llmrec.data.formats.mmlu_pro import read_mmlu_pro
    rec = read_mmlu_pro(shared_data / "mmlu_pro").select_prompts(range(0, 12000, 200))
    info = encode_records(rec, TfidfEncoder(dim=16), tmp_path / "mmlu.npy")
    assert info["n"] == rec.n_prompts == 60
    back = PrecomputedEncoder.from_file(info["npy"])
    X = np.load(info["npy"])
    np.testing.assert_array_equal(back.encode_ids(rec.prompt_ids[[0, 59]]), X[[0, 59]])
    np.testing.assert_array_equal(back.encode([rec.texts[7]]), X[[7]])
    f = PromptFeaturizer(back, side_features=("category",)).fit(rec)
    assert f.transform(rec).shape == (60, info["dim"] + len(f.levels_["category"]))


def test_union_encoder_roundtrip_and_parts(tmp_path):
    from llmrec.encoders import UnionEncoder, encoder_from_state, make_encoder
    from llmrec.encoders.union import text_statistics
    texts = ["add two numbers", "capital of France", "def f(x): return x + 1",
             "What is $x^2$ if x = 3?", "sum of 3 and 4\nand 5"]
    enc = UnionEncoder(parts=["tfidf", TfidfEncoder(dim=3, min_df=1)], weights=[1.0, 2.0])
    enc.fit(texts)
    V = enc.encode(texts)
    assert V.shape == (5, enc.dim) and enc.dim == enc.parts[0].dim + 3 + 8
    np.testing.assert_allclose(np.linalg.norm(V[:, 4:7], axis=1), 2.0, rtol=1e-5)
    back = encoder_from_state(enc.get_config(), enc.get_arrays())
    np.testing.assert_array_equal(back.encode(texts), V)
    assert back.fingerprint == enc.fingerprint
    other = UnionEncoder(parts=["tfidf"], stats=False).fit(texts)
    assert other.fingerprint != enc.fingerprint and other.dim == other.parts[0].dim
    S = text_statistics(texts)
    assert S[2, 5] > 0 and S[3, 6] > 0 and S[4, 7] > 0 and S[0, 5] == 0
    assert isinstance(make_encoder("union", parts=["tfidf"]), UnionEncoder)
