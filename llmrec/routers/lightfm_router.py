"""LightFM hybrid router: prompt features as user features, LLM identity + metadata as
item features.

LightFM (Kula 2015) represents a user as the sum of the embeddings of its features,
weighted by the feature values. Here a prompt's features are its dense embedding
(encoder output and side features) plus one constant feature, with **no identity
feature**, so a prompt never seen in training is represented exactly as a training
prompt is: ``q = x @ E_user``, ``b_user = x @ b_user_feat``. An LLM is its identity
feature plus, when the LLM table has them, metadata features: ``log1p(params_b)``,
``log1p(price_input)``, ``log1p(price_output)`` (each divided by its training
maximum) and a provider one-hot.

Losses:

* ``"logistic"`` (default): every observed record is a label; a success is +1 and
  an observed failure is -1 (LightFM's logistic loss reads any value <= 0 as a
  negative), weighted by its confidence. Successes come from
  :mod:`llmrec.routers.signal`: by default the LLMs that beat the prompt's mean
  (margin as weight); with ``success_threshold`` the records at or above it.
  Records with no signal and unobserved cells are not used.
* ``"warp"``: the successes are the positives; LightFM samples negatives from all
  LLMs (failures and unobserved cells alike) until one outranks the positive.

Score of prompt ``p`` on LLM ``j``: ``q_p . v_j + b_j + b_p``. ``_vectors`` returns
``[q_p, b_p]`` and ``[v_j, 1]`` with bias ``b_j``, so the FAISS search returns the
same values as :meth:`score`.

New LLMs (:meth:`add_llm`): everything learned stays frozen. The new LLM's
representation is its metadata features' part (known immediately, zero when the
table has no metadata) plus a new identity row ``(e, b)``, fitted on the probe
records by L2-regularised logistic regression with the probe prompts' frozen
representations as inputs (the LightFM logistic objective restricted to that row,
solved with L-BFGS instead of SGD).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import ConfigError, ModelFormatError
from .base import Router, register_router

_NUMERIC_META = ("params_b", "price_input", "price_output")
INSTALL_HINT = "pip install 'llmrec[lightfm]'"


def _import_lightfm():
    try:
        from lightfm import LightFM
    except ImportError:
        raise ConfigError("the 'lightfm' router needs the LightFM package, which is not "
                          f"installed; install it with: {INSTALL_HINT}") from None
    return LightFM


@register_router
class LightFMRouter(Router):
    """LightFM hybrid matrix factorisation with prompt features as user features.

    Parameters
    ----------
    no_components : int
        Latent dimension.
    loss : {"logistic", "warp"}
    learning_rate : float
        SGD step (adagrad).
    item_alpha, user_alpha : float
        L2 penalties on item / user feature parameters.
    epochs : int
    success_threshold : float, optional
        An explicit threshold: a score at or above it is a success. None (default)
        derives successes from the score kind (``feedback``).
    feedback : {"relative", "threshold"}, optional
        See :mod:`llmrec.routers.signal`; "relative" unless ``success_threshold``
        is given.
    use_metadata : bool
        Add the LLM-table metadata features described in the module docstring.
    new_llm_alpha : float
        L2 penalty on the identity row fitted by :meth:`add_llm`.
    random_state : int
    max_fit_minutes : float or None
        Refuse, before training, a fit whose estimated CPU time is above this
        (None: never refuse). See Notes.

    Notes
    -----
    Cost: LightFM's SGD touches every user feature of a prompt on every record, so
    a fit costs about ``epochs * records * (d + 1) * no_components`` updates for
    ``d`` prompt features: measured ``1.75e-7 * epochs * records * (d + 1) *
    no_components / 32`` CPU seconds (one thread, 2-core EPYC). With 384-d
    features and 20 epochs that is ~34 CPU minutes at 3,000 x 500 records, ~13 h at
    18,000 x 2,000 and ~120 h at RouterEval's 38,000 x 8,500, which is why fits
    above ``max_fit_minutes`` are refused up front with the estimate. At that scale
    use ``twotower`` or ``textmf`` (the same hybrid idea, prompt-feature tower and
    LLM embeddings, trained on minibatches), or fewer epochs / lower-dimensional
    features. Training runs on one thread: LightFM's multi-threaded SGD is
    lock-free and not reproducible under a seed. Memory: the interactions (COO,
    12 bytes per record) plus ``(d + 1 + m) * no_components`` parameters.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(200, 5, n_topics=3, seed=0)
    >>> enc = TfidfEncoder(dim=16, n_features=2 ** 12)
    >>> r = LightFMRouter(no_components=4, epochs=3).fit(rec, encoder=enc)
    >>> r.score(["solve the quadratic equation"]).shape
    (1, 5)
    """

    name = "lightfm"
    factorized = True
    supports_cold_prompts = True
    supports_new_llms = True
    needs_text = True

    def __init__(self, no_components: int = 32, loss: str = "logistic",
                 learning_rate: float = 0.05, item_alpha: float = 1e-6,
                 user_alpha: float = 1e-6, epochs: int = 20,
                 success_threshold: float | None = None, use_metadata: bool = True,
                 new_llm_alpha: float = 1.0, random_state: int = 0,
                 max_fit_minutes: float | None = 60.0, feedback: str | None = None):
        self.feedback = feedback
        self.max_fit_minutes = max_fit_minutes
        self.no_components = no_components
        self.loss = loss
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.epochs = epochs
        self.success_threshold = success_threshold
        self.use_metadata = use_metadata
        self.new_llm_alpha = new_llm_alpha
        self.random_state = random_state

    # ------------------------------------------------------------ features
    @staticmethod
    def _user_features(X: np.ndarray) -> np.ndarray:
        """Prompt features plus one constant column (a shared user offset)."""
        return np.hstack([X, np.ones((X.shape[0], 1), np.float32)]).astype(np.float32)

    def _meta_spec(self, llms: pd.DataFrame) -> dict:
        spec = {"numeric": [], "scale": [], "providers": []}
        if not self.use_metadata:
            return spec
        for col in _NUMERIC_META:
            if col in llms.columns:
                v = pd.to_numeric(llms[col], errors="coerce").to_numpy(dtype=np.float64)
                v = np.log1p(np.clip(v, 0, None))
                if np.isfinite(v).any() and np.nanmax(v) > 0:
                    spec["numeric"].append(col)
                    spec["scale"].append(float(np.nanmax(v)))
        if "provider" in llms.columns:
            prov = llms["provider"].dropna().astype(str)
            spec["providers"] = sorted(set(prov[prov != ""]))
        return spec

    def _meta_rows(self, rows: list[dict]) -> np.ndarray:
        spec = self.meta_spec_
        out = np.zeros((len(rows), len(spec["numeric"]) + len(spec["providers"])), np.float32)
        for i, row in enumerate(rows):
            for j, (col, sc) in enumerate(zip(spec["numeric"], spec["scale"])):
                v = pd.to_numeric(pd.Series([row.get(col)]), errors="coerce").iloc[0]
                if pd.notna(v):
                    out[i, j] = np.log1p(max(float(v), 0.0)) / sc
            p = row.get("provider")
            if p is not None and str(p) in spec["providers"]:
                out[i, len(spec["numeric"]) + spec["providers"].index(str(p))] = 1.0
        return out

    # ----------------------------------------------------------------- fit
    def _fit(self, records, X, val, X_val):
        LightFM = _import_lightfm()
        if self.loss not in ("logistic", "warp"):
            raise ConfigError(f"loss must be 'logistic' or 'warp', got {self.loss!r}")
        if int(self.no_components) < 1 or int(self.epochs) < 1:
            raise ConfigError("no_components and epochs must be >= 1")
        from .signal import implicit_feedback, resolve_feedback
        mode = resolve_feedback(self.feedback, self.success_threshold)
        fb = implicit_feedback(records, mode, self.success_threshold)
        self.feedback_ = {"mode": mode, "threshold": fb.threshold}
        self.score_mean_ = float(records.scores.data.mean())
        keep = fb.weight > 0
        rows, cols, ok, w = fb.rows[keep], fb.cols[keep], fb.positive[keep], fb.weight[keep]
        weights = None
        n_used = len(rows) if self.loss == "logistic" else int(ok.sum())
        est = self.estimated_fit_seconds(n_used, X.shape[1])
        if self.max_fit_minutes is not None and est > float(self.max_fit_minutes) * 60:
            from ..errors import CapabilityError
            raise CapabilityError(
                f"lightfm: this fit would take about {est / 3600:.1f} CPU hours "
                f"({self.epochs} epochs x {n_used:,} records x {X.shape[1] + 1} prompt "
                f"features x {self.no_components} components), above max_fit_minutes="
                f"{self.max_fit_minutes}; use the 'twotower' or 'textmf' router at this "
                "scale, fewer epochs or lower-dimensional features, or pass "
                "max_fit_minutes=None to run it anyway")
        if self.loss == "logistic":
            lab = np.where(ok, 1.0, -1.0).astype(np.float32)
            inter = sp.coo_matrix((lab, (rows, cols)), shape=records.shape)
            if mode == "relative":
                weights = sp.coo_matrix((w.astype(np.float32), (rows, cols)),
                                        shape=records.shape)
        else:
            if not ok.any():
                raise ConfigError("loss='warp' needs successes (no training record is one "
                                  f"under feedback={mode!r}); give records where LLMs differ")
            inter = sp.coo_matrix((np.ones(int(ok.sum()), np.float32),
                                   (rows[ok], cols[ok])), shape=records.shape)
        UF = sp.csr_matrix(self._user_features(X))
        self.meta_spec_ = self._meta_spec(records.llms)
        meta = self._meta_rows(records.llms.to_dict("records"))
        n = records.n_llms
        IF = sp.csr_matrix(np.hstack([np.eye(n, dtype=np.float32), meta]))
        model = LightFM(no_components=int(self.no_components), loss=self.loss,
                        learning_rate=float(self.learning_rate),
                        item_alpha=float(self.item_alpha), user_alpha=float(self.user_alpha),
                        random_state=self.random_state)
        from .._progress import progress
        # fit() = reset + fit_partial(epochs); one epoch at a time gives the same weights
        # (same random stream) and a progress display
        with progress(total=int(self.epochs), desc="lightfm epochs", unit="epochs",
                      show=getattr(self, "_show_progress", None)) as bar:
            model.fit(inter, user_features=UF, item_features=IF, epochs=1, num_threads=1,
                      sample_weight=weights)
            bar.update()
            for _ in range(int(self.epochs) - 1):
                model.fit_partial(inter, user_features=UF, item_features=IF, epochs=1,
                                  num_threads=1, sample_weight=weights)
                bar.update()
        self.user_embeddings_ = np.asarray(model.user_embeddings, np.float32)
        self.user_biases_ = np.asarray(model.user_biases, np.float32)
        ib, ie = model.get_item_representations(IF)
        self.item_repr_ = np.asarray(ie, np.float32)
        self.item_bias_ = np.asarray(ib, np.float32)
        self.meta_embeddings_ = np.asarray(model.item_embeddings[n:], np.float32)
        self.meta_biases_ = np.asarray(model.item_biases[n:], np.float32)

    def estimated_fit_seconds(self, n_records: int, n_features: int) -> float:
        """Predicted CPU seconds of a fit on ``n_records`` records with ``n_features``
        prompt features (see Notes; calibrated on a 2-core EPYC).

        Examples
        --------
        >>> round(LightFMRouter().estimated_fit_seconds(1_500_000, 384) / 60)
        34
        """
        return (1.75e-7 * int(self.epochs) * n_records * (n_features + 1)
                * int(self.no_components) / 32)

    # --------------------------------------------------------------- score
    def _user_repr(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, biases) of prompts; equals LightFM's get_user_representations."""
        F = self._user_features(X)
        return F @ self.user_embeddings_, F @ self.user_biases_

    def _vectors(self, X):
        q, bu = self._user_repr(X)
        Q = np.hstack([q, bu[:, None]]).astype(np.float32)
        V = np.hstack([self.item_repr_, np.ones((len(self.item_repr_), 1), np.float32)])
        return Q, V, self.item_bias_

    def _score(self, X, prompts, n):
        Q, V, b = self._vectors(X)
        return Q @ V.T + b[None, :]

    # ------------------------------------------------------------ new LLMs
    def _add_llm(self, name, X, y, metadata):
        from scipy.optimize import minimize
        m = self._meta_rows([metadata])[0]
        v0 = m @ self.meta_embeddings_ if m.size else np.zeros(self.item_repr_.shape[1])
        b0 = float(m @ self.meta_biases_) if m.size else 0.0
        q, bu = self._user_repr(X)
        q = q.astype(np.float64)
        fb = getattr(self, "feedback_", {"mode": "threshold", "threshold": 0.5})
        if fb.get("mode") == "threshold" and fb.get("threshold") is not None:
            t = (np.asarray(y) >= float(fb["threshold"])).astype(np.float64)
        else:  # relative: compare the probe outcome with the mean training score
            t = (np.asarray(y) > float(getattr(self, "score_mean_", 0.5))).astype(np.float64)
        off = q @ v0 + bu + b0
        lam = float(self.new_llm_alpha)
        k = q.shape[1]

        def objective(w):
            e, b = w[:k], w[k]
            z = off + q @ e + b
            p = 1.0 / (1.0 + np.exp(-z))
            loss = np.logaddexp(0.0, z) - t * z
            g = p - t
            grad = np.concatenate([q.T @ g + 2 * lam * e, [g.sum() + 2 * lam * b]])
            return loss.sum() + lam * (e @ e + b * b), grad

        res = minimize(objective, np.zeros(k + 1), jac=True, method="L-BFGS-B")
        e, b = res.x[:k], res.x[k]
        self.item_repr_ = np.vstack([self.item_repr_, (v0 + e)[None, :].astype(np.float32)])
        self.item_bias_ = np.append(self.item_bias_, np.float32(b0 + b))

    # ---------------------------------------------------------- persistence
    canonical_llm_order = True  # random item embeddings per column position

    def _llm_axes(self, arrays):
        return {"item_repr": 0, "item_bias": 0}

    def _get_state(self):
        arrays = {"user_embeddings": self.user_embeddings_, "user_biases": self.user_biases_,
                  "item_repr": self.item_repr_, "item_bias": self.item_bias_,
                  "meta_embeddings": self.meta_embeddings_, "meta_biases": self.meta_biases_}
        return ({"meta_spec": self.meta_spec_, "feedback": getattr(self, "feedback_", None),
                 "score_mean": getattr(self, "score_mean_", None)}, arrays)

    def _set_state(self, state, arrays):
        if state.get("feedback") is not None:
            self.feedback_ = dict(state["feedback"])
        if state.get("score_mean") is not None:
            self.score_mean_ = float(state["score_mean"])
        try:
            self.meta_spec_ = {"numeric": list(state["meta_spec"]["numeric"]),
                               "scale": [float(s) for s in state["meta_spec"]["scale"]],
                               "providers": list(state["meta_spec"]["providers"])}
            for key in ("user_embeddings", "user_biases", "item_repr", "item_bias",
                        "meta_embeddings", "meta_biases"):
                setattr(self, key + "_", arrays[key].astype(np.float32))
        except KeyError as e:
            raise ModelFormatError(f"saved lightfm router lacks {e}; save it again") from None
