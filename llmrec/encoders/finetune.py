"""Contrastive fine-tuning of a sentence encoder on evaluation records.

RouterDC (Chen et al., NeurIPS 2024) trains its prompt encoder with a *sample-LLM*
contrastive loss: each LLM ``j`` gets a learnable embedding ``k_j``, and a prompt's
embedding ``e_i`` is pulled towards the LLMs that did well on it and pushed away from
those that did not. :func:`finetune_sentence_encoder` does the same on a CPU budget:

* **Targets, relative to the prompt.** For prompt ``i`` the positives are the LLMs
  scoring above the prompt's mean over its observed LLMs, the negatives those below
  (binary, graded, judge and preference scores alike: only the order within a prompt
  counts). Prompts on which every observed LLM scores the same carry no signal and are
  skipped.
* **Loss.** With ``s_ij = cos(e_i, k_j) / temperature``, each (prompt, positive) pair
  costs ``-log(exp(s_ip) / (exp(s_ip) + sum_n exp(s_in)))`` over the prompt's negatives,
  averaged per prompt, then over the batch.
* **What trains.** The last ``layers`` transformer layers (the lower ones stay frozen,
  so no gradient flows through them) and the LLM embeddings, with AdamW; batches are
  length-bucketed and the prompts are truncated to ``max_seq_length`` tokens while
  training (encoding afterwards uses the model's own limit).
* **Budget.** Training stops after ``epochs`` passes over the usable prompts or at
  ``max_seconds`` of wall time, whichever comes first, so it is bounded on CPU.

The result is an ordinary sentence-transformers folder plus ``llmrec_finetune.json``
(base model, records, settings, steps, seconds, the loss curve and the SHA-256 of the
weights). Because :class:`~llmrec.encoders.SentenceTransformerEncoder` hashes the
JSON files of a model folder into its fingerprint, every fine-tuned model has its own
fingerprint (and its own embedding-cache entries), and a router fitted with it copies
the folder into its model directory when saved (:meth:`llmrec.routers.Router.save`).

Only the records given are read: fine-tune on the training prompts, never on the
prompts you will evaluate on.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataFormatError

__all__ = ["finetune_sentence_encoder", "contrastive_targets", "FINETUNE_INFO"]

#: name of the metadata file written into a fine-tuned model folder
FINETUNE_INFO = "llmrec_finetune.json"


def contrastive_targets(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positive and negative LLMs of each prompt, relative to the prompt's mean.

    Parameters
    ----------
    scores : ndarray, shape (n_prompts, n_llms)
        Scores with NaN for unobserved cells.

    Returns
    -------
    (rows, pos, neg)
        ``rows``: the prompts with at least one positive and one negative; ``pos`` and
        ``neg``: boolean masks (len(rows), n_llms).

    Examples
    --------
    >>> import numpy as np
    >>> rows, pos, neg = contrastive_targets(np.array([[1, 0, 1.], [1, 1, 1.], [0.2, np.nan, 0.8]]))
    >>> rows.tolist(), pos.astype(int).tolist(), neg.astype(int).tolist()
    ([0, 2], [[1, 0, 1], [0, 0, 1]], [[0, 1, 0], [1, 0, 0]])
    """
    S = np.asarray(scores, dtype=np.float64)
    obs = ~np.isnan(S)
    n_obs = obs.sum(axis=1)
    mean = np.where(n_obs > 0, np.nansum(S, axis=1) / np.maximum(n_obs, 1), np.nan)
    tol = 1e-9 * np.maximum(1.0, np.abs(mean))
    with np.errstate(invalid="ignore"):
        pos = obs & (S > (mean + tol)[:, None])
        neg = obs & (S < (mean - tol)[:, None])
    rows = np.flatnonzero(pos.any(axis=1) & neg.any(axis=1))
    return rows, pos[rows], neg[rows]


def _check(name, value, kind, low, low_open=False):
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if ok:
        ok = value > low if low_open else value >= low
    if not ok:
        rel = ">" if low_open else ">="
        raise ConfigError(f"finetune: {name} must be a number {rel} {low}, got {value!r}")


def _refuse_non_model(path: Path) -> None:
    if path.is_file() or (path.is_dir() and any(path.iterdir())
                          and not (path / FINETUNE_INFO).is_file()):
        raise ConfigError(f"{path} exists and is not a fine-tuned encoder folder; choose "
                          "a new --out (an earlier fine-tuned folder is replaced)")


def finetune_sentence_encoder(records, out, base: str | None = None, *, layers: int = 2,
                              max_seconds: float = 600.0, epochs: float = 1.0,
                              batch_size: int = 32, lr: float = 5e-5, llm_lr: float = 5e-3,
                              temperature: float = 0.1, max_seq_length: int = 128,
                              seed: int = 0, show_progress: bool | None = None):
    """Fine-tune a sentence-transformers encoder on ``records`` and save it to ``out``.

    Parameters
    ----------
    records : PerformanceRecords
        Training records with prompt text (fine-tune on training prompts only).
    out : path
        Folder to write (created atomically; an earlier fine-tuned folder there is
        replaced, any other non-empty folder is refused).
    base : str, optional
        The model to start from: ``None``/``"minilm"`` for the packaged
        all-MiniLM-L6-v2, or a local sentence-transformers folder.
    layers : int
        Transformer layers trained, counted from the top (BERT-style models); the
        rest stay frozen.
    max_seconds : float
        Wall-time budget of the training loop (loading and saving excluded).
    epochs : float
        Passes over the usable prompts (fractions allowed), if the budget allows.
    batch_size, lr, llm_lr, temperature, max_seq_length, seed
        Prompts per step; AdamW learning rates of the transformer layers and of the LLM
        embeddings; the softmax temperature of the cosine similarities; tokens kept per
        prompt while training; the seed of the order and of the LLM embeddings.
    show_progress : bool, optional
        A progress display of the steps (see :func:`llmrec._progress.progress`).

    Returns
    -------
    SentenceTransformerEncoder
        Encoding with the fine-tuned weights at ``out``; its ``finetune_info_`` holds
        what ``llmrec_finetune.json`` holds.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> enc = finetune_sentence_encoder(make_synthetic(64, 4, seed=0), "ft-model",
    ...                                 max_seconds=30)  # doctest: +SKIP
    >>> enc.encode(["What is 2 + 2?"]).shape  # doctest: +SKIP
    (1, 384)
    """
    from .._atomic import sha256_file
    from .sentence import SentenceTransformerEncoder, _DEFAULT_ALIASES, hf_progress_bars_off
    _check("layers", layers, (int, np.integer), 1)
    _check("max_seconds", max_seconds, (int, float), 0, low_open=True)
    _check("epochs", epochs, (int, float), 0, low_open=True)
    _check("batch_size", batch_size, (int, np.integer), 2)
    _check("lr", lr, (int, float), 0, low_open=True)
    _check("llm_lr", llm_lr, (int, float), 0, low_open=True)
    _check("temperature", temperature, (int, float), 0, low_open=True)
    _check("max_seq_length", max_seq_length, (int, np.integer), 8)
    if Path(out).exists():  # before any training, not after the budget is spent
        _refuse_non_model(Path(out))
    if records.n_llms < 2:
        raise DataFormatError(f"finetune: the records have {records.n_llms} LLM; contrastive "
                              "fine-tuning needs at least two to compare")
    texts = list(records.texts)
    if any(not t.strip() for t in texts):
        raise DataFormatError("finetune: some prompts have no text; fine-tuning reads "
                              "every prompt's text (drop those records or add text)")
    rows, pos, neg = contrastive_targets(records.dense())
    if len(rows) < batch_size:
        raise DataFormatError(
            f"finetune: only {len(rows)} prompts have LLMs both above and below their "
            f"mean score (at least batch_size={batch_size} are needed); the records "
            "carry too little contrast to fine-tune on")

    import torch
    import torch.nn.functional as F

    src = SentenceTransformerEncoder(model=None if base in _DEFAULT_ALIASES else base,
                                     show_progress=False)
    base_fp = src.fingerprint
    st = src._load()
    src._st = None  # the instance below is trained in place; the encoder must not reuse it
    model_limit = st.max_seq_length
    auto = getattr(st[0], "auto_model", None)
    blocks = getattr(getattr(auto, "encoder", None), "layer", None)
    if blocks is None:
        raise ConfigError(f"finetune: {src.name} is not a BERT-style transformer (no "
                          "encoder.layer blocks); only such models can be fine-tuned here")
    if layers > len(blocks):
        raise ConfigError(f"finetune: layers={layers} but {src.name} has {len(blocks)}")
    torch.manual_seed(int(seed))
    for p in st.parameters():
        p.requires_grad_(False)
    trainable = [p for blk in list(blocks)[-layers:] for p in blk.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    get_dim = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    dim = int(get_dim())
    tokenize = getattr(st, "preprocess", None) or st.tokenize
    K = torch.nn.Parameter(0.1 * torch.randn(records.n_llms, dim))
    opt = torch.optim.AdamW([{"params": trainable, "lr": float(lr)},
                             {"params": [K], "lr": float(llm_lr), "weight_decay": 0.0}])
    st.max_seq_length = min(int(max_seq_length), model_limit or int(max_seq_length))

    rng = np.random.default_rng(int(seed))
    n_steps_plan = max(1, int(math.ceil(epochs * len(rows) / batch_size)))
    lengths = np.array([len(texts[i]) for i in rows])

    def batches():
        while True:  # length-bucketed batches from a fresh permutation per epoch
            perm = rng.permutation(len(rows))
            chunk = batch_size * 16
            for c in range(0, len(perm), chunk):
                part = perm[c:c + chunk]
                part = part[np.argsort(lengths[part], kind="stable")]
                bs = [part[b:b + batch_size] for b in range(0, len(part), batch_size)]
                for k in rng.permutation(len(bs)):
                    if len(bs[k]) >= 2:
                        yield bs[k]

    from .._progress import progress
    curve, losses = [], []
    steps = seen = 0
    t0 = time.monotonic()
    stopped = "epochs"
    st.train()
    bar = progress(total=n_steps_plan, desc="fine-tune encoder", show=show_progress,
                   unit="step")
    try:
        for b in batches():
            if steps >= n_steps_plan:
                break
            elapsed = time.monotonic() - t0
            if steps and elapsed + elapsed / steps > max_seconds:
                stopped = "max_seconds"
                break
            feats = tokenize([texts[rows[i]] for i in b])
            e = F.normalize(st(feats)["sentence_embedding"], dim=-1)
            s = e @ F.normalize(K, dim=-1).T / float(temperature)
            P = torch.from_numpy(pos[b])
            N = torch.from_numpy(neg[b])
            lse_neg = torch.logsumexp(s.masked_fill(~N, float("-inf")), dim=1, keepdim=True)
            pair = F.softplus(lse_neg - s) * P
            loss = (pair.sum(1) / P.sum(1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            seen += len(b)
            losses.append(float(loss.detach()))
            if steps % 10 == 0:
                curve.append([steps, float(np.mean(losses[-10:]))])
            bar.update(1)
    finally:
        bar.close()
    seconds = time.monotonic() - t0
    st.eval()
    st.max_seq_length = model_limit
    if losses and (not curve or curve[-1][0] != steps):
        curve.append([steps, float(np.mean(losses[-10:]))])
    info = {
        "format": "llmrec.finetune", "base": src.name, "base_fingerprint": base_fp,
        "records": getattr(records, "name", None), "n_prompts": int(records.n_prompts),
        "n_prompts_used": int(len(rows)), "llms": list(records.llm_names),
        "settings": {"layers": int(layers), "max_seconds": float(max_seconds),
                     "epochs": float(epochs), "batch_size": int(batch_size),
                     "lr": float(lr), "llm_lr": float(llm_lr),
                     "temperature": float(temperature),
                     "max_seq_length": int(max_seq_length), "seed": int(seed)},
        "steps": steps, "prompts_seen": seen, "epochs_done": seen / len(rows),
        "seconds": round(seconds, 3), "stopped_by": stopped,
        "loss_first": losses[0] if losses else None,
        "loss_last": float(np.mean(losses[-10:])) if losses else None,
        "loss_curve": curve,
    }
    from .._atomic import atomic_directory
    with atomic_directory(Path(out), check_existing=_refuse_non_model) as tmp:
        with hf_progress_bars_off():
            st.save(str(tmp))
        weights = sorted(p for p in tmp.rglob("*.safetensors")) or sorted(tmp.rglob("*.bin"))
        info["weights_sha256"] = {p.relative_to(tmp).as_posix(): sha256_file(p) for p in weights}
        (tmp / FINETUNE_INFO).write_text(json.dumps(info, indent=2))
    enc = SentenceTransformerEncoder(model=str(Path(out)))
    enc.finetune_info_ = info
    return enc
