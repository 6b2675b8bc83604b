"""Serve precomputed prompt vectors, and write them: :func:`encode_records`.

RouterEval publishes an embedding for every prompt, and users often bring their own.
:class:`PrecomputedEncoder` looks vectors up by prompt id or by exact prompt text.
:func:`encode_records` is the other direction (``llmrec encode``): it encodes the
prompts of a dataset once and writes ``<out>.npy`` plus ``<out>.ids.json`` (prompt
ids, encoder fingerprint), which :meth:`PrecomputedEncoder.from_file` reads back.

File layout written by :func:`encode_records` for ``out_path="emb.npy"``:

* ``emb.npy``: float32 array ``(n_prompts, dim)``, row ``i`` for prompt ``i``.
* ``emb.ids.json``: ``{"format_version": 1, "n": ..., "dim": ..., "prompt_ids":
  [...] or null, "texts": [...] or null, "encoder": "<fingerprint>",
  "encoder_config": {...}}``; ``prompt_ids`` is null when plain texts were encoded,
  ``texts`` is null when ``with_texts=False``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from ..data.records import PerformanceRecords
from ..errors import ConfigError, DataFormatError, ModelFormatError, UnknownIdError
from .base import Encoder, register_encoder

IDS_FORMAT_VERSION = 1


def _pack_strings(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Strings as one utf-8 byte array plus offsets (no object arrays, no pickle)."""
    raw = [str(v).encode("utf-8") for v in values]
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(b) for b in raw])
    data = np.frombuffer(b"".join(raw), dtype=np.uint8).copy()
    return data, offsets


def _unpack_strings(data: np.ndarray, offsets: np.ndarray) -> list[str]:
    buf = np.asarray(data, dtype=np.uint8).tobytes()
    off = np.asarray(offsets, dtype=np.int64)
    return [buf[off[i]:off[i + 1]].decode("utf-8") for i in range(len(off) - 1)]


def ids_path_for(out_path: str | os.PathLike) -> Path:
    """The sidecar of ``emb.npy``: ``emb.ids.json``.

    Examples
    --------
    >>> ids_path_for("out/emb.npy").as_posix()
    'out/emb.ids.json'
    """
    p = Path(out_path)
    return p.with_name((p.name[:-4] if p.name.endswith(".npy") else p.name) + ".ids.json")


@register_encoder
class PrecomputedEncoder(Encoder):
    """Look prompt vectors up by prompt id or exact text.

    Parameters
    ----------
    vectors : array-like, shape (n, dim)
    ids : sequence of str, optional
        Prompt ids, one per row (unique).
    texts : sequence of str, optional
        Prompt texts, one per row. A text repeated on several rows serves the first.
    key : {"auto", "text", "id"}
        What ``encode`` looks its strings up by: ``auto`` tries the text first,
        then the id (routers pass prompt text, people often pass ids).

    Examples
    --------
    >>> import numpy as np
    >>> enc = PrecomputedEncoder(np.eye(2), ids=["p1", "p2"], texts=["hi", "bye"])
    >>> enc.encode(["bye", "p1"]).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    >>> enc.encode_ids(["p2"]).tolist()
    [[0.0, 1.0]]
    """

    type = "precomputed"
    requires_fit = False

    def __init__(self, vectors, ids: Sequence[str] | None = None,
                 texts: Sequence[str] | None = None, key: str = "auto"):
        self.vectors = vectors
        self.ids = ids
        self.texts = texts
        self.key = key

    # ------------------------------------------------------------- building
    @classmethod
    def from_records_embeddings(cls, records: PerformanceRecords, vectors,
                                key: str = "auto") -> "PrecomputedEncoder":
        """Vectors given row by row for ``records``' prompts (ids and texts from records).

        Examples
        --------
        >>> import numpy as np
        >>> from llmrec.datasets import make_synthetic
        >>> rec = make_synthetic(5, 2, seed=0)
        >>> enc = PrecomputedEncoder.from_records_embeddings(rec, np.ones((5, 3)))
        >>> enc.encode_ids(rec.prompt_ids[:2]).shape
        (2, 3)
        """
        V = np.asarray(vectors)
        if V.ndim != 2 or V.shape[0] != records.n_prompts:
            raise DataFormatError(f"embeddings have shape {V.shape} for {records.n_prompts} "
                                  "prompts; give one row per prompt, in the records' order")
        texts = records.texts if records.has_text else None
        return cls(V, ids=list(records.prompt_ids), texts=texts, key=key)

    @classmethod
    def from_file(cls, npy_path: str | os.PathLike, ids_path: str | os.PathLike | None = None,
                  key: str = "auto") -> "PrecomputedEncoder":
        """Read ``emb.npy`` and its ``emb.ids.json`` (as written by :func:`encode_records`).

        ``ids_path`` may also be a JSON list of prompt ids or a text file with one id
        per line.
        """
        npy_path = Path(npy_path)
        if not npy_path.is_file():
            raise DataFormatError(f"{npy_path}: no such embeddings file")
        try:
            V = np.load(npy_path, allow_pickle=False)
        except Exception as e:  # noqa: BLE001
            raise DataFormatError(f"{npy_path}: not a readable .npy array ({e}); write it "
                                  "with numpy.save or `llmrec encode`") from None
        ids_path = Path(ids_path) if ids_path is not None else ids_path_for(npy_path)
        if not ids_path.is_file():
            raise DataFormatError(f"{ids_path}: the prompt ids of {npy_path.name} are missing; "
                                  "pass ids_path= (JSON list or one id per line)")
        text = ids_path.read_text(encoding="utf-8")
        ids = texts = None
        if ids_path.suffix == ".json":
            try:
                meta = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{ids_path}: invalid JSON ({e})") from None
            if isinstance(meta, list):
                ids = meta
            elif isinstance(meta, dict):
                ids, texts = meta.get("prompt_ids"), meta.get("texts")
                if ids is None and texts is None:
                    raise DataFormatError(f"{ids_path}: has neither 'prompt_ids' nor 'texts'")
            else:
                raise DataFormatError(f"{ids_path}: expected a JSON list or object")
        else:
            ids = [line for line in text.splitlines() if line.strip()]
        n = V.shape[0] if V.ndim >= 1 else 0
        for what, vals in (("prompt_ids", ids), ("texts", texts)):
            if vals is not None and len(vals) != n:
                raise DataFormatError(f"{ids_path}: {len(vals)} {what} for {n} rows in "
                                      f"{npy_path.name}; the two files do not belong together")
        enc = cls(V, ids=ids, texts=texts, key=key)
        enc._lookup()  # validate now, naming the files
        return enc

    def _lookup(self):
        cached = getattr(self, "_maps", None)
        if cached is not None and cached[0] is self.vectors:
            return cached[1]
        if self.key not in ("auto", "text", "id"):
            raise ConfigError(f"key must be 'auto', 'text' or 'id', got {self.key!r}")
        V = np.asarray(self.vectors, dtype=np.float32)
        if V.ndim != 2:
            raise DataFormatError(f"precomputed vectors must be 2-D (prompts x dim), got "
                                  f"shape {V.shape}")
        if not np.isfinite(V).all():
            row = int(np.flatnonzero(~np.isfinite(V).all(axis=1))[0])
            raise DataFormatError(f"precomputed vectors: row {row + 1} (1-based) has NaN or "
                                  "infinite values")
        if self.ids is None and self.texts is None:
            raise ConfigError("PrecomputedEncoder needs ids=, texts= or both to look vectors up")
        id_map, text_map = {}, {}
        if self.ids is not None:
            ids = [str(i) for i in self.ids]
            if len(ids) != V.shape[0]:
                raise DataFormatError(f"{len(ids)} ids for {V.shape[0]} vectors")
            for r, p in enumerate(ids):
                if p in id_map:
                    raise DataFormatError(f"duplicate prompt id '{p}' at row {r + 1} (first at "
                                          f"row {id_map[p] + 1}, 1-based); ids must be unique")
                id_map[p] = r
        if self.texts is not None:
            texts = list(self.texts)
            if len(texts) != V.shape[0]:
                raise DataFormatError(f"{len(texts)} texts for {V.shape[0]} vectors")
            for r, t in enumerate(texts):
                if t is not None and not (isinstance(t, float) and np.isnan(t)):
                    text_map.setdefault(str(t), r)
        maps = (np.ascontiguousarray(V), id_map, text_map)
        self._maps = (self.vectors, maps)
        return maps

    @property
    def dim(self) -> int:
        return int(self._lookup()[0].shape[1])

    def __len__(self) -> int:
        return int(self._lookup()[0].shape[0])

    # --------------------------------------------------------------- lookup
    def _rows(self, keys: Sequence[str], by: str) -> np.ndarray:
        V, id_map, text_map = self._lookup()
        rows = np.empty(len(keys), dtype=np.int64)
        for j, s in enumerate(keys):
            s = str(s)
            r = None
            if by in ("auto", "text"):
                r = text_map.get(s)
            if r is None and by in ("auto", "id"):
                r = id_map.get(s)
            if r is None:
                shown = s if len(s) <= 80 else s[:77] + "..."
                where = {"auto": "text or id", "text": "text", "id": "id"}[by]
                raise UnknownIdError(
                    f"prompt {j} ('{shown}') has no precomputed vector (looked up by {where} "
                    f"among {V.shape[0]} stored prompts); encode it first or use a text encoder")
            rows[j] = r
        return rows

    def probe_prompts(self, n: int = 2) -> list[str]:
        """``n`` strings this encoder can encode (stored texts, else ids): what the
        service's load probe sends, since an arbitrary text has no vector here."""
        keys = self.texts if self.texts is not None and self.key != "id" else self.ids
        keys = [] if keys is None else list(keys[:n])
        return [str(k) for k in keys]

    def _encode(self, texts, show_progress):
        V = self._lookup()[0]
        return V[self._rows(texts, self.key)]

    def encode_ids(self, ids: Sequence[str]) -> np.ndarray:
        """Vectors of the given prompt ids (an unknown id raises :class:`UnknownIdError`)."""
        ids = [ids] if isinstance(ids, str) else list(ids)
        V = self._lookup()[0]
        if not ids:
            return np.zeros((0, V.shape[1]), np.float32)
        return V[self._rows(ids, "id")].copy()

    # ---------------------------------------------------------- persistence
    def get_config(self) -> dict:
        return {"type": self.type, "key": self.key, "has_ids": self.ids is not None,
                "has_texts": self.texts is not None}

    def get_arrays(self) -> dict[str, np.ndarray]:
        V, _, _ = self._lookup()
        out = {"vectors": V}
        if self.ids is not None:
            out["ids_utf8"], out["ids_offsets"] = _pack_strings([str(i) for i in self.ids])
        if self.texts is not None:
            out["texts_utf8"], out["texts_offsets"] = _pack_strings(
                ["" if t is None else str(t) for t in self.texts])
        return out

    @classmethod
    def from_state(cls, config, arrays):
        if "vectors" not in arrays:
            raise ModelFormatError("PrecomputedEncoder state has no 'vectors' array")
        ids = texts = None
        try:
            if config.get("has_ids", "ids_utf8" in arrays):
                ids = _unpack_strings(arrays["ids_utf8"], arrays["ids_offsets"])
            if config.get("has_texts", "texts_utf8" in arrays):
                texts = _unpack_strings(arrays["texts_utf8"], arrays["texts_offsets"])
        except (KeyError, UnicodeDecodeError, IndexError) as e:
            raise ModelFormatError(f"PrecomputedEncoder state is corrupt ({e!r}); "
                                   "save the encoder again") from None
        return cls(np.asarray(arrays["vectors"], dtype=np.float32), ids=ids, texts=texts,
                   key=config.get("key", "auto"))


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def encode_records(records_or_texts, encoder="tfidf",
                   out_path: str | os.PathLike = "emb.npy", *,
                   cache_dir: str | os.PathLike | None = None,
                   show_progress: bool | None = None, with_texts: bool = True) -> dict:
    """Encode the prompts of a dataset (or a list of texts) and write them to disk.

    Writes ``out_path`` (float32 ``.npy``, one row per prompt) and its sidecar
    ``<stem>.ids.json`` (prompt ids, encoder fingerprint); both atomically.
    This is what ``llmrec encode <data> --encoder minilm --out emb.npy`` runs.

    Parameters
    ----------
    records_or_texts : PerformanceRecords or sequence of str
    encoder : str or Encoder
        Anything :func:`llmrec.encoders.make_encoder` accepts. An encoder that needs
        fitting (TF-IDF) is fitted on these prompts when it is not fitted yet.
    out_path : path
        Where the ``.npy`` goes (``.npy`` is appended when missing).
    cache_dir : path, optional
        Wrap the encoder in a :class:`~llmrec.encoders.cache.CachedEncoder` there.
    show_progress : bool, optional
    with_texts : bool
        Also store the prompt texts in the sidecar, so that the vectors can be looked
        up by text (what routers pass); always on when there are no ids.

    Returns
    -------
    dict
        ``{"npy": path, "ids": path, "n": ..., "dim": ..., "encoder": fingerprint}``.

    Examples
    --------
    >>> import tempfile, os
    >>> from llmrec.datasets import make_synthetic
    >>> d = tempfile.mkdtemp()
    >>> from llmrec.encoders import TfidfEncoder
    >>> info = encode_records(make_synthetic(20, 2, seed=0), TfidfEncoder(dim=4),
    ...                       os.path.join(d, "emb.npy"))
    >>> PrecomputedEncoder.from_file(info["npy"]).dim == info["dim"]
    True
    """
    from . import make_encoder
    enc = make_encoder(encoder)
    if isinstance(records_or_texts, PerformanceRecords):
        rec = records_or_texts
        if not rec.has_text:
            raise DataFormatError(f"records{' ' + repr(rec.name) if rec.name else ''} have no "
                                  "prompt text to encode; this source ships ids and scores only")
        texts, ids = rec.texts, [str(p) for p in rec.prompt_ids]
    elif isinstance(records_or_texts, str):
        texts, ids = [records_or_texts], None
    else:
        try:
            texts = list(records_or_texts)
        except TypeError:
            raise DataFormatError(f"expected PerformanceRecords or a list of texts, got "
                                  f"{type(records_or_texts).__name__}") from None
        ids = None
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataFormatError(f"prompt {i} is a {type(t).__name__}, expected text")
    if not texts:
        raise DataFormatError("no prompts to encode")
    if enc.requires_fit and not enc.is_fitted:
        enc.fit(texts)
    if cache_dir is not None:
        from .cache import CachedEncoder
        enc = CachedEncoder(enc, cache_dir)
    X = np.ascontiguousarray(enc.encode(texts, show_progress=show_progress), dtype=np.float32)
    out = Path(out_path)
    if out.suffix != ".npy":
        out = out.with_name(out.name + ".npy")
    meta = {"format_version": IDS_FORMAT_VERSION, "n": int(X.shape[0]), "dim": int(X.shape[1]),
            "prompt_ids": ids, "texts": texts if with_texts or ids is None else None,
            "encoder": enc.fingerprint, "encoder_config": enc.get_config()}
    _atomic_write(out, lambda f: np.save(f, X, allow_pickle=False))
    side = ids_path_for(out)
    _atomic_write(side, lambda f: f.write(json.dumps(meta, ensure_ascii=False).encode("utf-8")))
    return {"npy": str(out), "ids": str(side), "n": meta["n"], "dim": meta["dim"],
            "encoder": meta["encoder"]}


__all__ = ["PrecomputedEncoder", "encode_records", "ids_path_for"]
