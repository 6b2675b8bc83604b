"""Neural factorised routers trained with torch on the CPU: ``textmf`` and ``twotower``.

Both routers score a prompt ``x`` against an LLM ``j`` with one inner product plus a
bias, ``s(x, j) = q(x) . v_j + b_j``, so that :meth:`~llmrec.routers.Router.recommend`
is a FAISS search over the LLM vectors (through ``_vectors``). Both are trained
with binary cross-entropy on the *observed* cells only (continuous scores in [0, 1]
are soft targets), so ``s`` is a **logit**: :meth:`~_NeuralRouter.score` returns
logits (the ranking score), :meth:`~_NeuralRouter.predict_proba` returns
``sigmoid(logit)``, the predicted probability that the LLM answers well. The
sigmoid is monotone, so both give the same ranking.

* :class:`TextMFRouter` (``textmf``): EmbedLLM-style matrix factorisation
  conditioned on text: a learned vector and bias per LLM and a learned projection
  (linear, or a small MLP with ``hidden``) of the prompt embedding.
* :class:`TwoTowerRouter` (``twotower``): a prompt tower (MLP over the prompt
  embedding and side features) and an LLM tower (an ID embedding plus an MLP over
  LLM metadata: log size, log prices, provider one-hot), trained with pointwise BCE
  and optionally an in-batch softmax over the LLMs, so that a new LLM with only
  metadata already has a vector.

Torch is needed for ``fit`` only: the fitted routers are plain numpy arrays
(persisted in ``router.npz``; no ``torch.save``, no pickle), scoring is numpy, and
adding an LLM (``add_llm``) is an L2-regularised logistic regression solved by
scipy's L-BFGS with everything else frozen. When torch is missing the routers are
still registered and ``fit`` raises :class:`~llmrec.errors.ConfigError`.

Determinism: ``fit`` seeds torch (``random_state``) inside a forked RNG state,
turns on ``torch.use_deterministic_algorithms`` and runs on one thread; the
previous global settings are restored afterwards.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError
from .base import Router, register_router

__all__ = ["TextMFRouter", "TwoTowerRouter"]


# --------------------------------------------------------------------- helpers
def _import_torch(router: str):
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is installed in the dev env
        raise ConfigError(f"router {router!r} needs torch to fit: pip install torch "
                          "(the CPU build is enough)") from None
    return torch


def _hidden_sizes(hidden) -> list[int]:
    if hidden is None:
        return []
    if isinstance(hidden, (int, np.integer)):
        return [] if int(hidden) == 0 else [int(hidden)]
    try:
        sizes = [int(h) for h in hidden]
    except (TypeError, ValueError):
        raise ConfigError(f"hidden must be an int or a sequence of ints, got {hidden!r}") \
            from None
    return sizes


def _mlp(torch, d_in: int, hidden: Sequence[int], d_out: int, dropout: float):
    """Linear layers with ReLU (and dropout) between them; no activation at the end."""
    nn = torch.nn
    layers, d = [], d_in
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        d = h
    layers.append(nn.Linear(d, d_out))
    return nn.Sequential(*layers)


def _export_mlp(seq) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for layer in seq:
        if hasattr(layer, "weight"):
            out.append((layer.weight.detach().cpu().numpy().astype(np.float32).copy(),
                        layer.bias.detach().cpu().numpy().astype(np.float32).copy()))
    return out


def _forward_np(layers: list[tuple[np.ndarray, np.ndarray]], X: np.ndarray) -> np.ndarray:
    """The numpy forward of an exported MLP (ReLU between layers)."""
    H = np.asarray(X, dtype=np.float32)
    for i, (W, b) in enumerate(layers):
        H = H @ W.T + b
        if i < len(layers) - 1:
            H = np.maximum(H, 0.0)
    return H.astype(np.float32, copy=False)


def _layers_to_arrays(prefix: str, layers) -> dict[str, np.ndarray]:
    out = {}
    for i, (W, b) in enumerate(layers):
        out[f"{prefix}_W{i}"] = W
        out[f"{prefix}_b{i}"] = b
    return out


def _layers_from_arrays(prefix: str, n: int, arrays) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(arrays[f"{prefix}_W{i}"].astype(np.float32), arrays[f"{prefix}_b{i}"]
             .astype(np.float32)) for i in range(n)]


@contextlib.contextmanager
def _torch_session(torch, seed: int):
    """Seeded, deterministic, single-threaded torch; global settings restored on exit."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(det)
            torch.set_num_threads(threads)


def _logit(p):
    p = np.clip(p, 1e-3, 1 - 1e-3)
    return np.log(p / (1 - p))


# ------------------------------------------------------------------ the base
class _NeuralRouter(Router):
    """Shared training loop, scoring, persistence and ``add_llm`` of the neural routers."""

    factorized = True
    supports_new_llms = True
    supports_cold_prompts = True
    needs_text = True

    # ---------------------------------------------------------------- fit
    def fit(self, train, encoder=None, val_records=None, side_features=(),
            show_progress: bool | None = None):
        """Fit on training records (see :meth:`llmrec.routers.Router.fit`).

        ``val_records``, when given, is scored after every epoch (mean BCE over its
        observed cells); training stops after ``patience`` epochs without
        improvement and the best epoch's weights are kept.
        """
        self._show_progress = show_progress
        return super().fit(train, encoder=encoder, val_records=val_records,
                           side_features=side_features, show_progress=show_progress)

    def _check_params(self):
        checks = [("dim", self.dim, 1), ("epochs", self.epochs, 1),
                  ("batch_size", self.batch_size, 1)]
        for what, v, lo in checks:
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ConfigError(f"{self.name}: {what} must be an integer >= {lo}, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"{self.name}: lr must be > 0, got {self.lr!r}")
        if self.weight_decay < 0:
            raise ConfigError(f"{self.name}: weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"{self.name}: dropout must be in [0, 1), got {self.dropout!r}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"{self.name}: patience must be >= 1 or None, got {self.patience!r}")
        if self.new_llm_l2 < 0:
            raise ConfigError(f"{self.name}: new_llm_l2 must be >= 0, got {self.new_llm_l2!r}")
        if any(h < 1 for h in _hidden_sizes(self.hidden)):
            raise ConfigError(f"{self.name}: hidden sizes must be >= 1, got {self.hidden!r}")

    @staticmethod
    def _check_targets(records, what: str):
        d = records.scores.data
        if d.size and (d.min() < 0 or d.max() > 1):
            bad = int(np.flatnonzero((d < 0) | (d > 1))[0])
            r, c = records._cell_of(bad)
            raise DataFormatError(
                f"{what}: score {d[bad]:g} for prompt '{records.prompt_ids[r]}', LLM "
                f"'{records.llm_names[c]}' is outside [0, 1]; the neural routers train with "
                "binary cross-entropy, so rescale the scores to [0, 1] first")

    def _fit(self, records, X, val, X_val):
        self._check_params()
        self._check_targets(records, "training records")
        if val is not None:
            self._check_targets(val, "val_records")
        torch = _import_torch(self.name)
        with _torch_session(torch, self.random_state):
            model = self._build(torch, X, records)
            self._train(torch, model, X, records, X_val, val)
            model.eval()
            self._export(torch, model)

    def _rows(self, torch, records, idx):
        from .classifiers import _csr_rows  # rows of the CSR only (no whole-matrix mask)
        return _csr_rows(torch, records.scores, idx)

    def _loss(self, torch, logits, Y, M):
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, Y, reduction="none")
        return (bce * M).sum() / M.sum().clamp_min(1.0)

    def _train(self, torch, model, X, records, X_val, val):
        from .._progress import progress
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        n = Xt.shape[0]
        opt = torch.optim.Adam(model.parameters(), lr=float(self.lr),
                               weight_decay=float(self.weight_decay))
        gen = torch.Generator().manual_seed(int(self.random_state))
        bs = int(self.batch_size)
        Xv = Yv = Mv = None
        if val is not None and val.n_observed:
            Xv = torch.from_numpy(np.ascontiguousarray(X_val, dtype=np.float32))
            Yv, Mv = self._rows(torch, val, np.arange(val.n_prompts))
        self.history_ = {"train_loss": [], "val_loss": []}
        best, best_state, bad_epochs = np.inf, None, 0
        self.best_epoch_ = int(self.epochs)
        bar = progress(range(int(self.epochs)), desc=f"{self.name} epochs",
                       show=self._show_progress, unit="epochs")
        for epoch in bar:
            model.train()
            perm = torch.randperm(n, generator=gen).numpy()
            total, count = 0.0, 0
            for start in range(0, n, bs):
                idx = np.sort(perm[start:start + bs])
                Y, M = self._rows(torch, records, idx)
                if M.sum() == 0:
                    continue
                logits = model(Xt[idx])
                loss = self._train_loss(torch, logits, Y, M)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
            self.history_["train_loss"].append(total / max(count, 1))
            if Xv is None:
                continue
            model.eval()
            with torch.no_grad():
                vl = float(self._loss(torch, model(Xv), Yv, Mv))
            self.history_["val_loss"].append(vl)
            bar.set_postfix(val_loss=f"{vl:.4f}")
            if vl < best - 1e-6:
                best, bad_epochs = vl, 0
                self.best_epoch_ = epoch + 1
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad_epochs += 1
                if self.patience is not None and bad_epochs >= self.patience:
                    break
        bar.close()
        if best_state is not None:
            model.load_state_dict(best_state)

    def _train_loss(self, torch, logits, Y, M):
        return self._loss(torch, logits, Y, M)

    # -------------------------------------------------------------- score
    def prompt_vectors(self, prompts) -> np.ndarray:
        """The prompt tower's output q(x), shape (n_prompts, dim)."""
        self._check_fitted()
        return _forward_np(self.prompt_layers_, self.features(prompts))

    def _vectors(self, X):
        return _forward_np(self.prompt_layers_, X), self.llm_vectors_, self.llm_bias_

    def _score(self, X, prompts, n):
        Q, V, b = self._vectors(X)
        return Q @ V.T + b[None, :]

    def predict_proba(self, prompts, show_progress: bool | None = None) -> np.ndarray:
        """Predicted probability that each LLM answers each prompt well: sigmoid(score)."""
        from scipy.special import expit
        return expit(self.score(prompts, show_progress)).astype(np.float32)

    # ------------------------------------------------------------ new LLMs
    def _add_llm(self, name, X, y, metadata):
        from scipy.optimize import minimize
        if np.nanmin(y) < 0 or np.nanmax(y) > 1:
            raise DataFormatError(f"probe scores of LLM {name!r} must lie in [0, 1] "
                                  "(binary cross-entropy targets)")
        Q = _forward_np(self.prompt_layers_, X).astype(np.float64)
        v0, b0 = self._llm_prior(metadata)
        w0 = np.append(v0, b0).astype(np.float64)
        A = np.hstack([Q, np.ones((Q.shape[0], 1))])
        y = np.asarray(y, dtype=np.float64)
        lam = float(self.new_llm_l2)

        def f(w):
            z = A @ w
            # mean BCE with logits, computed stably
            loss = np.mean(np.logaddexp(0.0, z) - y * z) + lam * np.sum((w - w0) ** 2)
            p = 0.5 * (1.0 + np.tanh(0.5 * z))
            grad = A.T @ (p - y) / len(y) + 2 * lam * (w - w0)
            return loss, grad

        res = minimize(f, w0.copy(), jac=True, method="L-BFGS-B",
                       options={"maxiter": 500})
        w = res.x.astype(np.float32)
        self.llm_vectors_ = np.vstack([self.llm_vectors_, w[None, :-1]])
        self.llm_bias_ = np.append(self.llm_bias_, w[-1]).astype(np.float32)

    def _llm_prior(self, metadata) -> tuple[np.ndarray, float]:
        return self.llm_vectors_.mean(axis=0), float(self.llm_bias_.mean())

    # -------------------------------------------------------- persistence
    canonical_llm_order = True  # LLM vectors drawn and pairs sampled per column position

    def _llm_axes(self, arrays):
        return {"llm_vectors": 0, "llm_bias": 0}

    def _get_state(self):
        state = {"n_prompt_layers": len(self.prompt_layers_),
                 "history": getattr(self, "history_", {}),
                 "best_epoch": getattr(self, "best_epoch_", None)}
        arrays = {"llm_vectors": self.llm_vectors_, "llm_bias": self.llm_bias_,
                  **_layers_to_arrays("prompt", self.prompt_layers_)}
        return state, arrays

    def _set_state(self, state, arrays):
        self.prompt_layers_ = _layers_from_arrays("prompt", int(state["n_prompt_layers"]), arrays)
        self.llm_vectors_ = arrays["llm_vectors"].astype(np.float32)
        self.llm_bias_ = arrays["llm_bias"].astype(np.float32)
        self.history_ = state.get("history", {})
        self.best_epoch_ = state.get("best_epoch")
        if self.llm_vectors_.shape[0] != len(self.llms_):
            raise ValueError(f"{len(self.llms_)} LLMs in the manifest but "
                             f"{self.llm_vectors_.shape[0]} LLM vectors")


def _llm_mean_logit(records) -> np.ndarray:
    m = records.llm_summary()["mean_score"].to_numpy(dtype=np.float64)
    return _logit(np.where(np.isnan(m), 0.5, m)).astype(np.float32)


# ------------------------------------------------------------------- textmf
@register_router
class TextMFRouter(_NeuralRouter):
    """Text-conditioned matrix factorisation (EmbedLLM-style), trained with BCE.

    ``logit(x, j) = f(x) . v_j + b_j`` where ``f`` projects the prompt features
    (a linear map, or an MLP when ``hidden`` is set), ``v_j`` and ``b_j`` are
    learned per LLM. Trained with Adam on the observed cells (soft targets for
    continuous scores); early stopping on ``val_records`` when given.
    :meth:`score` returns logits; :meth:`predict_proba` the probabilities.

    Parameters
    ----------
    dim : int
        Size of the LLM vectors and of the projected prompt.
    hidden : int or sequence of int
        Hidden layer sizes of the prompt projection; 0 (default) is linear.
    epochs, batch_size, lr, weight_decay, dropout :
        Adam training settings (``batch_size`` counts prompts; each batch uses
        all observed LLM cells of its prompts).
    patience : int or None
        Early-stopping patience in epochs (only with ``val_records``).
    new_llm_l2 : float
        L2 pull of a new LLM's vector toward the mean LLM vector in ``add_llm``.
    random_state : int

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(200, 5, n_topics=3, seed=0)
    >>> enc = TfidfEncoder(dim=16, n_features=2 ** 12)
    >>> r = TextMFRouter(dim=8, epochs=5).fit(rec, encoder=enc)
    >>> r.score(["solve the quadratic equation"]).shape
    (1, 5)
    >>> bool(((r.predict_proba(["x"]) > 0) & (r.predict_proba(["x"]) < 1)).all())
    True
    """

    name = "textmf"

    def __init__(self, dim: int = 64, hidden=0, epochs: int = 30, batch_size: int = 256,
                 lr: float = 1e-2, weight_decay: float = 1e-5, dropout: float = 0.0,
                 patience: int | None = 5, new_llm_l2: float = 0.01, random_state: int = 0):
        self.dim = dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.patience = patience
        self.new_llm_l2 = new_llm_l2
        self.random_state = random_state

    def _build(self, torch, X, records):
        nn = torch.nn
        dim, m = int(self.dim), records.n_llms
        prompt = _mlp(torch, X.shape[1], _hidden_sizes(self.hidden), dim, float(self.dropout))
        bias0 = torch.from_numpy(_llm_mean_logit(records))

        class TextMF(nn.Module):
            def __init__(self):
                super().__init__()
                self.prompt = prompt
                self.llm = nn.Parameter(torch.randn(m, dim) * 0.1)
                self.bias = nn.Parameter(bias0.clone())

            def forward(self, x):
                return self.prompt(x) @ self.llm.T + self.bias

        return TextMF()

    def _export(self, torch, model):
        self.prompt_layers_ = _export_mlp(model.prompt)
        self.llm_vectors_ = model.llm.detach().numpy().astype(np.float32).copy()
        self.llm_bias_ = model.bias.detach().numpy().astype(np.float32).copy()


# ----------------------------------------------------------------- twotower
_META_NUMERIC = ("params_b", "price_input", "price_output", "price")


def _meta_spec(llms: pd.DataFrame) -> dict:
    """Which LLM metadata columns the LLM tower reads, with their scaling."""
    spec = {"numeric": [], "mean": [], "std": [], "providers": []}
    for col in _META_NUMERIC:
        if col in llms.columns:
            v = pd.to_numeric(llms[col], errors="coerce").to_numpy(dtype=np.float64)
            if np.isfinite(v).sum() >= 2:
                lv = np.log1p(np.clip(v[np.isfinite(v)], 0, None))
                sd = float(lv.std())
                spec["numeric"].append(col)
                spec["mean"].append(float(lv.mean()))
                spec["std"].append(sd if sd > 1e-8 else 1.0)
    if "provider" in llms.columns:
        prov = llms["provider"].dropna().astype(str)
        levels = sorted(set(prov[prov != ""]))
        if len(levels) >= 2:
            spec["providers"] = levels
    return spec


def _meta_matrix(llms: pd.DataFrame, spec: dict) -> np.ndarray:
    """Standardised log sizes/prices (missing -> 0, the training mean) and provider one-hot."""
    cols = []
    for col, mu, sd in zip(spec["numeric"], spec["mean"], spec["std"]):
        v = (pd.to_numeric(llms[col], errors="coerce").to_numpy(dtype=np.float64)
             if col in llms.columns else np.full(len(llms), np.nan))
        z = (np.log1p(np.clip(v, 0, None)) - mu) / sd
        cols.append(np.where(np.isfinite(z), z, 0.0)[:, None])
    if spec["providers"]:
        prov = (llms["provider"].astype(str) if "provider" in llms.columns
                else pd.Series([""] * len(llms)))
        idx = pd.Index(spec["providers"]).get_indexer(prov)
        oh = np.zeros((len(llms), len(spec["providers"])))
        ok = idx >= 0
        oh[np.flatnonzero(ok), idx[ok]] = 1.0
        cols.append(oh)
    if not cols:
        return np.zeros((len(llms), 0), dtype=np.float32)
    return np.hstack(cols).astype(np.float32)


@register_router
class TwoTowerRouter(_NeuralRouter):
    """Two-tower router: prompt tower x LLM tower (ID embedding + metadata MLP).

    ``logit(x, j) = P(x) . (e_j + G(m_j)[:dim]) + (c_j + G(m_j)[dim])`` where ``P``
    is an MLP over the prompt features (embedding plus side features), ``e_j`` /
    ``c_j`` are a learned ID vector / bias per LLM and ``G`` is an MLP over the LLM
    metadata ``m_j`` (standardised ``log1p`` of ``params_b``, ``price_input``,
    ``price_output``, ``price`` where the LLM table has them, and a provider
    one-hot). During training the ID part of each LLM is dropped with probability
    ``id_dropout`` per batch, so that ``G`` alone learns a usable vector: a new LLM
    starts from ``mean(e) + G(its metadata)`` in :meth:`add_llm`.

    Loss: pointwise BCE on observed cells, plus ``inbatch_softmax_weight`` x the
    cross-entropy between a softmax of each prompt's logits over its observed LLMs
    and the prompt's normalised success distribution (prompts that no LLM solved
    are skipped in that term). :meth:`score` returns logits.

    Parameters
    ----------
    dim : int
        Size of both towers' outputs.
    hidden : int or sequence of int
        Hidden layers of the prompt tower.
    llm_hidden : int or sequence of int
        Hidden layers of the metadata MLP ``G``.
    use_llm_metadata : bool
        Read LLM metadata (when the LLM table has any of the columns above).
    id_dropout : float
        Probability of dropping an LLM's ID part in a batch (metadata only).
    inbatch_softmax_weight : float
        Weight of the in-batch softmax term (0: pointwise BCE only).
    epochs, batch_size, lr, weight_decay, dropout, patience, new_llm_l2, random_state :
        As in :class:`TextMFRouter`.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(200, 5, n_topics=3, seed=0)
    >>> enc = TfidfEncoder(dim=16, n_features=2 ** 12)
    >>> r = TwoTowerRouter(dim=8, hidden=16, epochs=5).fit(rec, encoder=enc)
    >>> r.recommend(["which court ruling applies"], k=2)[0].shape
    (1, 2)
    """

    name = "twotower"

    def __init__(self, dim: int = 64, hidden=256, llm_hidden=32, use_llm_metadata: bool = True,
                 id_dropout: float = 0.1, inbatch_softmax_weight: float = 0.0,
                 epochs: int = 30, batch_size: int = 256, lr: float = 3e-3,
                 weight_decay: float = 1e-5, dropout: float = 0.1, patience: int | None = 5,
                 new_llm_l2: float = 0.01, random_state: int = 0):
        self.dim = dim
        self.hidden = hidden
        self.llm_hidden = llm_hidden
        self.use_llm_metadata = use_llm_metadata
        self.id_dropout = id_dropout
        self.inbatch_softmax_weight = inbatch_softmax_weight
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.patience = patience
        self.new_llm_l2 = new_llm_l2
        self.random_state = random_state

    def _check_params(self):
        super()._check_params()
        if not 0 <= self.id_dropout < 1:
            raise ConfigError(f"twotower: id_dropout must be in [0, 1), got {self.id_dropout!r}")
        if self.inbatch_softmax_weight < 0:
            raise ConfigError("twotower: inbatch_softmax_weight must be >= 0, got "
                              f"{self.inbatch_softmax_weight!r}")
        if any(h < 1 for h in _hidden_sizes(self.llm_hidden)):
            raise ConfigError(f"twotower: llm_hidden sizes must be >= 1, got {self.llm_hidden!r}")

    def _build(self, torch, X, records):
        nn = torch.nn
        dim, m = int(self.dim), records.n_llms
        self.meta_spec_ = _meta_spec(records.llms) if self.use_llm_metadata else \
            {"numeric": [], "mean": [], "std": [], "providers": []}
        F = _meta_matrix(records.llms, self.meta_spec_)
        prompt = _mlp(torch, X.shape[1], _hidden_sizes(self.hidden), dim, float(self.dropout))
        meta = (_mlp(torch, F.shape[1], _hidden_sizes(self.llm_hidden), dim + 1, 0.0)
                if F.shape[1] else None)
        bias0 = torch.from_numpy(_llm_mean_logit(records))
        Ft = torch.from_numpy(F)
        id_drop = float(self.id_dropout)

        class TwoTower(nn.Module):
            def __init__(self):
                super().__init__()
                self.prompt = prompt
                self.meta = meta
                self.llm_id = nn.Parameter(torch.randn(m, dim) * 0.1)
                self.llm_bias = nn.Parameter(bias0.clone())
                self.register_buffer("F", Ft)

            def llm_side(self):
                V, b = self.llm_id, self.llm_bias
                if self.meta is None:
                    return V, b
                G = self.meta(self.F)
                if self.training and id_drop > 0:
                    keep = (torch.rand(V.shape[0]) >= id_drop).float()
                    V, b = V * keep[:, None], b * keep
                return V + G[:, :-1], b + G[:, -1]

            def forward(self, x):
                V, b = self.llm_side()
                return self.prompt(x) @ V.T + b

        return TwoTower()

    def _train_loss(self, torch, logits, Y, M):
        loss = self._loss(torch, logits, Y, M)
        w = float(self.inbatch_softmax_weight)
        if w > 0:
            target = Y * M
            tot = target.sum(dim=1)
            ok = tot > 0
            if bool(ok.any()):
                masked = logits.masked_fill(M == 0, -1e9)
                logp = torch.log_softmax(masked[ok], dim=1)
                t = target[ok] / tot[ok, None]
                loss = loss + w * (-(t * logp).sum(dim=1).mean())
        return loss

    def _export(self, torch, model):
        self.prompt_layers_ = _export_mlp(model.prompt)
        self.meta_layers_ = _export_mlp(model.meta) if model.meta is not None else []
        with torch.no_grad():
            V, b = model.llm_side()
        self.llm_vectors_ = V.detach().numpy().astype(np.float32).copy()
        self.llm_bias_ = b.detach().numpy().astype(np.float32).copy()
        idv = np.append(model.llm_id.detach().numpy().mean(axis=0),
                        model.llm_bias.detach().numpy().mean())
        self.id_mean_ = idv.astype(np.float32)

    def llm_metadata_vector(self, metadata: dict) -> tuple[np.ndarray, float]:
        """The LLM tower's vector and bias for an LLM known only by its metadata.

        ``mean ID part + G(metadata)``; without metadata features, the mean LLM.
        """
        self._check_fitted()
        out = self.id_mean_.astype(np.float64).copy()
        if self.meta_layers_:
            F = _meta_matrix(pd.DataFrame([dict(metadata or {})]), self.meta_spec_)
            out = out + _forward_np(self.meta_layers_, F)[0]
        return out[:-1].astype(np.float32), float(out[-1])

    def _llm_prior(self, metadata):
        if self.meta_layers_:
            return self.llm_metadata_vector(metadata)
        return super()._llm_prior(metadata)

    def _get_state(self):
        state, arrays = super()._get_state()
        state["n_meta_layers"] = len(self.meta_layers_)
        state["meta_spec"] = self.meta_spec_
        arrays.update(_layers_to_arrays("meta", self.meta_layers_))
        arrays["id_mean"] = self.id_mean_
        return state, arrays

    def _set_state(self, state, arrays):
        super()._set_state(state, arrays)
        self.meta_layers_ = _layers_from_arrays("meta", int(state["n_meta_layers"]), arrays)
        self.meta_spec_ = state["meta_spec"]
        self.id_mean_ = arrays["id_mean"].astype(np.float32)
