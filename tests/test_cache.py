"""On-disk embedding cache: hits skip the encoder, writes are atomic, corrupt shards
are detected, deleted and recomputed."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from llmrec.encoders import (CachedEncoder, EmbeddingCache, Encoder, TfidfEncoder,
                             encoder_from_state)
from llmrec.encoders.base import register_encoder
from llmrec.encoders.cache import text_key
from llmrec.errors import ConfigError, NotFittedError


@register_encoder
class CountingEncoder(Encoder):
    """Deterministic toy encoder that counts the prompts it encodes."""

    type = "test-counting"

    def __init__(self, dim: int = 3, salt: int = 0):
        self.dim_param = dim
        self.salt = salt
        self.calls = 0
        self.n_encoded = 0

    @property
    def dim(self):
        return self.dim_param

    def _encode(self, texts, show_progress):
        self.calls += 1
        self.n_encoded += len(texts)
        out = np.zeros((len(texts), self.dim_param), np.float32)
        for i, t in enumerate(texts):
            out[i] = [len(t) + self.salt, t.count("a"), sum(map(ord, t)) % 97][:self.dim_param]
        return out

    def get_config(self):
        return {"type": self.type, "dim": self.dim_param, "salt": self.salt}

    @classmethod
    def from_state(cls, config, arrays):
        return cls(config["dim"], config["salt"])


TEXTS = [f"prompt number {i} about {'a' * (i % 4)} topic" for i in range(25)]


def shards(root):
    return sorted(p for p in root.rglob("shard-*.npz"))


def test_second_run_does_not_reencode(tmp_path):
    base = CountingEncoder()
    enc = CachedEncoder(base, tmp_path, shard_size=10)
    X1 = enc.encode(TEXTS)
    assert base.n_encoded == 25 and base.calls == 3  # batches of 10, 10, 5
    assert enc.last_hits_ == 0 and enc.last_encoded_ == 25
    assert len(shards(tmp_path)) == 3
    np.testing.assert_array_equal(X1, base.encode(TEXTS))
    base.n_encoded = base.calls = 0

    # a fresh wrapper (a new process) over the same directory
    base2 = CountingEncoder()
    enc2 = CachedEncoder(base2, tmp_path, shard_size=10)
    X2 = enc2.encode(TEXTS[::-1])
    assert base2.calls == 0 and enc2.last_hits_ == 25
    np.testing.assert_array_equal(X2, X1[::-1])

    # a mix: only the new prompts are encoded, duplicates once
    X3 = enc2.encode([TEXTS[0], "new one", "new one", TEXTS[5]])
    assert base2.n_encoded == 1 and enc2.last_hits_ == 2 and enc2.last_encoded_ == 1
    np.testing.assert_array_equal(X3, base.encode([TEXTS[0], "new one", "new one", TEXTS[5]]))
    assert EmbeddingCache(tmp_path).count(base.fingerprint) == 26


def test_keyed_by_fingerprint(tmp_path):
    a = CachedEncoder(CountingEncoder(salt=0), tmp_path)
    b_base = CountingEncoder(salt=100)
    b = CachedEncoder(b_base, tmp_path)
    Xa = a.encode(TEXTS[:3])
    Xb = b.encode(TEXTS[:3])
    assert b_base.n_encoded == 3  # another encoder never reads a's vectors
    assert not np.array_equal(Xa, Xb)
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 2
    assert a.fingerprint == a.encoder.fingerprint != b.fingerprint


def test_refitted_tfidf_gets_new_entries(tmp_path):
    enc = CachedEncoder(TfidfEncoder(dim=2, n_features=2 ** 10), tmp_path)
    with pytest.raises(NotFittedError):
        enc.encode(["x"])
    enc.fit(TEXTS[:10])
    X = enc.encode(TEXTS)
    np.testing.assert_allclose(X, enc.encoder.encode(TEXTS), atol=1e-6)
    fp1 = enc.fingerprint
    enc.fit(TEXTS[10:])
    assert enc.fingerprint != fp1
    enc.encode(TEXTS)
    assert enc.last_hits_ == 0


def test_corrupt_shard_is_reported_deleted_and_recomputed(tmp_path):
    base = CountingEncoder()
    enc = CachedEncoder(base, tmp_path, shard_size=10)
    X = enc.encode(TEXTS)
    victim = shards(tmp_path)[1]
    victim.write_bytes(victim.read_bytes()[:100])  # a torn write
    base.n_encoded = 0
    fresh = CachedEncoder(base, tmp_path, shard_size=10)
    with pytest.warns(RuntimeWarning, match="is corrupt"):
        X2 = fresh.encode(TEXTS)
    assert base.n_encoded == 10 and not victim.exists()
    np.testing.assert_array_equal(X2, X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CachedEncoder(base, tmp_path).encode(TEXTS)  # clean again


def test_flipped_vector_fails_the_checksum(tmp_path):
    base = CountingEncoder()
    enc = CachedEncoder(base, tmp_path)
    X = enc.encode(TEXTS[:4])
    (path,) = shards(tmp_path)
    with np.load(path) as z:
        parts = dict(z)
    parts["vectors"] = parts["vectors"] + 1.0  # readable, but wrong
    np.savez(path, **parts)
    base.n_encoded = 0
    with pytest.warns(RuntimeWarning, match="checksum mismatch"):
        X2 = enc.encode(TEXTS[:4])  # the same wrapper: its in-memory index is stale too
    assert base.n_encoded == 4
    np.testing.assert_array_equal(X2, X)


def test_writes_are_atomic(tmp_path, monkeypatch):
    base = CountingEncoder()
    enc = CachedEncoder(base, tmp_path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        enc.encode(TEXTS[:3])
    monkeypatch.undo()
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []  # neither a half shard nor a temp file
    enc.encode(TEXTS[:3])
    assert len(shards(tmp_path)) == 1


def test_stray_files_and_foreign_shards(tmp_path):
    base = CountingEncoder()
    cache = EmbeddingCache(tmp_path)
    fp = base.fingerprint
    cache.put(fp, [text_key("a")], np.ones((1, 3), np.float32))
    d = shards(tmp_path)[0].parent
    (d / ".tmp-abandoned.npz").write_bytes(b"partial")  # a crash mid-write: ignored
    other = EmbeddingCache(tmp_path / "elsewhere")
    other.put("another:fp", [text_key("b")], np.zeros((1, 3), np.float32))
    (src,) = shards(tmp_path / "elsewhere")
    os.replace(src, d / src.name)  # a shard of another encoder in our folder
    with pytest.warns(RuntimeWarning, match="wrong fingerprint"):
        found, X = EmbeddingCache(tmp_path).get(fp, [text_key("a"), text_key("b")])
    assert found.tolist() == [True, False] and X[0].tolist() == [1, 1, 1]


def test_cache_api_errors_and_clear(tmp_path):
    cache = EmbeddingCache(tmp_path / "c")
    found, X = cache.get("fp:1", [text_key("x")])
    assert found.tolist() == [False] and X is None
    found, X = cache.get("fp:1", [text_key("x")], dim=2)
    assert X.shape == (1, 2)
    with pytest.raises(ConfigError, match="keys of 32 bytes"):
        cache.put("fp:1", [b"short"], np.ones((1, 2)))
    with pytest.raises(ConfigError, match="fingerprint"):
        cache.get("", [])
    assert cache.put("fp:1", [], np.zeros((0, 2))) == 0
    cache.put("fp:1", [text_key("x")], np.ones((1, 2)))
    cache.put("fp:2", [text_key("x")], np.ones((1, 2)))
    assert cache.count("fp:1") == 1
    cache.clear("fp:1")
    assert cache.count("fp:1") == 0 and cache.count("fp:2") == 1
    cache.clear()
    assert cache.count("fp:2") == 0
    with pytest.raises(ConfigError, match="shard_size"):
        CachedEncoder(CountingEncoder(), tmp_path, shard_size=0).encode(["a"])


def test_cached_encoder_round_trips(tmp_path):
    tf = TfidfEncoder(dim=2, n_features=2 ** 10).fit(TEXTS)
    enc = CachedEncoder(tf, tmp_path / "c", shard_size=7)
    cfg = json.loads(json.dumps(enc.get_config()))
    back = encoder_from_state(cfg, enc.get_arrays())
    assert isinstance(back, CachedEncoder) and back.fingerprint == tf.fingerprint
    assert back.shard_size == 7 and back.dim == tf.dim
    assert enc.encode([]).shape == (0, tf.dim)


def test_cache_root_follows_llmrec_cache_then_xdg_then_home(monkeypatch, tmp_path):
    from llmrec.encoders.cache import cache_root, default_cache_dir
    monkeypatch.setenv("LLMREC_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    assert default_cache_dir() == tmp_path / "mine" / "emb"
    monkeypatch.delenv("LLMREC_CACHE")
    assert cache_root() == tmp_path / "xdg" / "llmrec"
    assert default_cache_dir() == tmp_path / "xdg" / "llmrec" / "emb"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "llmrec"


def test_benchmarks_find_the_cache_where_the_cli_writes_it():
    # the benchmark scripts read embeddings from the directory `llmrec encode` fills,
    # also when only XDG_CACHE_HOME is set (they used to spell the path by hand)
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent / "benchmarks"
    for p in sorted(root.glob("*.py")):
        src = p.read_text()
        assert not re.search(r'"\.cache"\s*\)?\s*/\s*"llmrec"', src), p.name
