"""An on-disk embedding cache and an encoder wrapper that uses it.

Layout under the cache directory::

    <directory>/<encoder fingerprint, made file-safe>/shard-<time>-<random>.npz

Each shard holds one batch of new vectors: ``keys`` (sha256 of the prompt text, as
32 raw bytes per row), ``vectors`` (float32), ``fingerprint`` and ``checksum``
(sha256 of keys + vectors). The index is the set of shards itself, read when the
cache is opened and refreshed on each lookup; there is no separate index file to
fall out of step. A shard is written to a temporary file and moved into place with
``os.replace``, so a crash leaves either the whole shard or none of it, and several
processes may share a cache (at worst a batch is encoded twice). A shard that cannot
be read, has the wrong checksum or belongs to another fingerprint is reported with a
warning, deleted, and its prompts are encoded again.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError
from .base import Encoder, _check_texts, register_encoder

SHARD_GLOB = "shard-*.npz"


def text_key(text: str) -> bytes:
    """The cache key of a prompt: sha256 of its utf-8 text (32 bytes).

    Examples
    --------
    >>> text_key("hello").hex()[:16]
    '2cf24dba5fb0a30e'
    """
    return hashlib.sha256(text.encode("utf-8")).digest()


def cache_root() -> Path:
    """llmrec's cache root: ``$LLMREC_CACHE``, else ``$XDG_CACHE_HOME/llmrec``, else
    ``~/.cache/llmrec``. Embeddings live under ``emb/`` (:func:`default_cache_dir`);
    the benchmarks keep fine-tuned encoders under ``finetuned/``.

    Examples
    --------
    >>> cache_root().name != ""
    True
    """
    env = os.environ.get("LLMREC_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "llmrec"


def default_cache_dir() -> Path:
    """Where the command line keeps embeddings: ``emb/`` under llmrec's cache root,
    ``$LLMREC_CACHE``, else ``$XDG_CACHE_HOME/llmrec``, else ``~/.cache/llmrec``.

    Examples
    --------
    >>> default_cache_dir().name != ""
    True
    """
    return cache_root() / "emb"


def _safe_dirname(fingerprint: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", fingerprint).strip("._") or "encoder"
    if len(safe) > 80 or safe != fingerprint:
        safe = safe[:60] + "-" + hashlib.sha256(fingerprint.encode()).hexdigest()[:12]
    return safe


def _checksum(keys: np.ndarray, vectors: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(keys).tobytes())
    h.update(str(vectors.shape).encode())
    h.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Vectors on disk, keyed by (encoder fingerprint, sha256 of the prompt text).

    Parameters
    ----------
    directory : path
        Created on the first write.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> cache = EmbeddingCache(tempfile.mkdtemp())
    >>> keys = [text_key("a"), text_key("b")]
    >>> cache.put("enc:1", keys, np.ones((2, 3), np.float32))
    2
    >>> found, X = cache.get("enc:1", [text_key("b"), text_key("c")], dim=3)
    >>> found.tolist(), X[0].tolist()
    ([True, False], [1.0, 1.0, 1.0])
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = directory

    # ------------------------------------------------------------------ index
    def _dir(self, fingerprint: str) -> Path:
        if not isinstance(fingerprint, str) or not fingerprint:
            raise ConfigError(f"encoder fingerprint must be a non-empty string, got "
                              f"{fingerprint!r}")
        return Path(self.directory) / _safe_dirname(fingerprint)

    def _state(self, fingerprint: str) -> dict:
        states = self.__dict__.setdefault("_states", {})
        return states.setdefault(fingerprint, {"shards": set(), "index": {}})

    def _corrupt(self, path: Path, why: str, fingerprint: str) -> None:
        warnings.warn(f"embedding cache: {path} is corrupt ({why}); deleting it, its prompts "
                      "will be encoded again", RuntimeWarning, stacklevel=4)
        try:
            path.unlink()
        except OSError:
            pass
        st = self._state(fingerprint)
        st["shards"].discard(path.name)
        st["index"] = {k: v for k, v in st["index"].items() if v[0] != path.name}

    def _refresh(self, fingerprint: str) -> dict:
        """Read the keys of shards written since the last look (by us or others)."""
        st = self._state(fingerprint)
        d = self._dir(fingerprint)
        if not d.is_dir():
            st["shards"], st["index"] = set(), {}
            return st["index"]
        present = {p.name for p in d.glob(SHARD_GLOB)}
        gone = st["shards"] - present
        if gone:  # deleted by someone else
            st["index"] = {k: v for k, v in st["index"].items() if v[0] not in gone}
            st["shards"] -= gone
        for name in sorted(present - st["shards"]):
            path = d / name
            try:
                with np.load(path, allow_pickle=False) as z:
                    keys = z["keys"]
                    fp = str(z["fingerprint"])
            except FileNotFoundError:
                continue
            except Exception as e:  # noqa: BLE001 - any unreadable shard is corrupt
                self._corrupt(path, f"{type(e).__name__}: {e}", fingerprint)
                continue
            if fp != fingerprint or keys.ndim != 2 or keys.shape[1] != 32:
                self._corrupt(path, "wrong fingerprint or key layout", fingerprint)
                continue
            st["shards"].add(name)
            for r, k in enumerate(keys):
                st["index"].setdefault(k.tobytes(), (name, r))
        return st["index"]

    def _read_shard(self, path: Path, fingerprint: str, dim: int | None):
        try:
            with np.load(path, allow_pickle=False) as z:
                keys, vectors, checksum = z["keys"], z["vectors"], str(z["checksum"])
        except FileNotFoundError:
            return None
        except Exception as e:  # noqa: BLE001
            self._corrupt(path, f"{type(e).__name__}: {e}", fingerprint)
            return None
        if vectors.ndim != 2 or vectors.shape[0] != keys.shape[0] or \
                (dim is not None and vectors.shape[1] != dim) or vectors.dtype != np.float32:
            self._corrupt(path, f"vectors of shape {vectors.shape}, dtype {vectors.dtype}",
                          fingerprint)
            return None
        if _checksum(keys, vectors) != checksum:
            self._corrupt(path, "checksum mismatch", fingerprint)
            return None
        return vectors

    # -------------------------------------------------------------------- api
    def get(self, fingerprint: str, keys: Sequence[bytes], dim: int | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
        """Look keys up: ``(found mask, vectors)``; rows not found are zeros.

        ``vectors`` is None when nothing was found and ``dim`` is not given.
        """
        keys = list(keys)
        found = np.zeros(len(keys), dtype=bool)
        index = self._refresh(fingerprint)
        by_shard: dict[str, list[tuple[int, int]]] = {}
        for j, k in enumerate(keys):
            hit = index.get(bytes(k))
            if hit is not None:
                by_shard.setdefault(hit[0], []).append((j, hit[1]))
        out = None if dim is None else np.zeros((len(keys), dim), np.float32)
        d = self._dir(fingerprint)
        for name, pairs in by_shard.items():
            V = self._read_shard(d / name, fingerprint, dim)
            if V is None:
                continue
            if out is None:
                dim = V.shape[1]
                out = np.zeros((len(keys), dim), np.float32)
            js = np.array([p[0] for p in pairs])
            rs = np.array([p[1] for p in pairs])
            out[js] = V[rs]
            found[js] = True
        return found, out

    def put(self, fingerprint: str, keys: Sequence[bytes], vectors: np.ndarray) -> int:
        """Store one shard; returns the number of rows written."""
        V = np.ascontiguousarray(vectors, dtype=np.float32)
        K = np.frombuffer(b"".join(bytes(k) for k in keys), dtype=np.uint8)
        if V.ndim != 2 or K.size != 32 * V.shape[0]:
            raise ConfigError(f"put: {len(keys)} keys of 32 bytes for vectors of shape "
                              f"{V.shape}")
        if V.shape[0] == 0:
            return 0
        K = K.reshape(V.shape[0], 32)
        d = self._dir(fingerprint)
        d.mkdir(parents=True, exist_ok=True)
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, keys=K, vectors=V, fingerprint=np.array(fingerprint),
                         checksum=np.array(_checksum(K, V)))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, d / name)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        st = self._state(fingerprint)
        st["shards"].add(name)
        for r, k in enumerate(K):
            st["index"].setdefault(k.tobytes(), (name, r))
        return int(V.shape[0])

    def count(self, fingerprint: str) -> int:
        """Number of distinct prompts cached for this encoder."""
        return len(self._refresh(fingerprint))

    def clear(self, fingerprint: str | None = None) -> None:
        """Delete the entries of one encoder, or of all encoders."""
        import shutil
        root = Path(self.directory)
        targets = [self._dir(fingerprint)] if fingerprint is not None else (
            [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else [])
        for t in targets:
            shutil.rmtree(t, ignore_errors=True)
        self.__dict__["_states"] = {} if fingerprint is None else {
            k: v for k, v in self.__dict__.get("_states", {}).items() if k != fingerprint}

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.directory)!r})"


@register_encoder
class CachedEncoder(Encoder):
    """Wrap an encoder with an on-disk cache: each distinct prompt is encoded once.

    Vectors are stored under the wrapped encoder's fingerprint, so a refitted or
    reconfigured encoder never reads stale vectors. The wrapper is transparent: same
    ``dim``, ``fingerprint`` and outputs as the wrapped encoder.

    Parameters
    ----------
    encoder : Encoder
    cache_dir : path
    shard_size : int
        New vectors are encoded and written in batches of this many prompts, so an
        interrupted run keeps what it finished.

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.encoders import TfidfEncoder
    >>> base = TfidfEncoder(dim=2).fit(["add two numbers", "capital of France", "sum 3 4"])
    >>> enc = CachedEncoder(base, tempfile.mkdtemp())
    >>> enc.encode(["capital of Spain"]).shape, enc.last_hits_
    ((1, 2), 0)
    >>> _ = enc.encode(["capital of Spain"]); enc.last_hits_
    1
    """

    type = "cached"

    def __init__(self, encoder: Encoder, cache_dir: str | os.PathLike, shard_size: int = 4096):
        self.encoder = encoder
        self.cache_dir = cache_dir
        self.shard_size = shard_size

    @property
    def requires_fit(self) -> bool:  # type: ignore[override]
        return self.encoder.requires_fit

    @property
    def is_fitted(self) -> bool:
        return self.encoder.is_fitted

    def fit(self, texts) -> "CachedEncoder":
        self.encoder.fit(texts)
        return self

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def name(self) -> str:
        return self.encoder.name

    @property
    def fingerprint(self) -> str:
        return self.encoder.fingerprint

    @property
    def cache_(self) -> EmbeddingCache:
        c = self.__dict__.get("_cache")
        if c is None or str(c.directory) != str(self.cache_dir):
            c = self.__dict__["_cache"] = EmbeddingCache(self.cache_dir)
        return c

    def encode(self, texts, show_progress: bool | None = None) -> np.ndarray:
        texts = _check_texts(texts)
        if self.encoder.requires_fit and not self.encoder.is_fitted:
            return self.encoder.encode(texts)  # raises the wrapped encoder's NotFittedError
        if not isinstance(self.shard_size, (int, np.integer)) or self.shard_size < 1:
            raise ConfigError(f"shard_size must be a positive integer, got {self.shard_size!r}")
        self.last_hits_ = 0
        self.last_encoded_ = 0
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        fp = self.encoder.fingerprint
        keys = [text_key(t) for t in texts]
        found, X = self.cache_.get(fp, keys)
        self.last_hits_ = int(found.sum())
        if found.all():
            return X
        # distinct missing texts, in first-seen order
        first: dict[bytes, int] = {}
        for j in np.flatnonzero(~found):
            first.setdefault(keys[j], int(j))
        todo = list(first.values())
        parts = []
        for s in range(0, len(todo), int(self.shard_size)):
            chunk = todo[s:s + int(self.shard_size)]
            V = np.asarray(self.encoder.encode([texts[j] for j in chunk],
                                               show_progress=show_progress), dtype=np.float32)
            self.cache_.put(fp, [keys[j] for j in chunk], V)
            parts.append(V)
        self.last_encoded_ = len(todo)
        newV = np.vstack(parts)
        if X is None:
            X = np.zeros((len(texts), newV.shape[1]), np.float32)
        row = {keys[j]: i for i, j in enumerate(todo)}
        miss = np.flatnonzero(~found)
        X[miss] = newV[[row[keys[j]] for j in miss]]
        return X

    def get_config(self) -> dict:
        return {"type": self.type, "encoder": self.encoder.get_config(),
                "cache_dir": str(self.cache_dir), "shard_size": int(self.shard_size)}

    def get_arrays(self) -> dict[str, np.ndarray]:
        return self.encoder.get_arrays()

    @classmethod
    def from_state(cls, config, arrays):
        from .base import encoder_from_state
        return cls(encoder_from_state(config["encoder"], arrays), config["cache_dir"],
                   shard_size=config.get("shard_size", 4096))

    def __repr__(self) -> str:
        return f"CachedEncoder({self.encoder!r}, cache_dir={str(self.cache_dir)!r})"


__all__ = ["EmbeddingCache", "CachedEncoder", "text_key", "cache_root", "default_cache_dir"]
