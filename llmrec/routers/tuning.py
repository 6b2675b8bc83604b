"""Validation tuning of a router's main settings, on training prompts only.

:func:`tune_router` carves a validation share out of the *training* prompts
(seeded), fits the router once per point of a grid on the rest, keeps the point
with the best validation mu (mean true score of the routed LLM; ties go to the
first point of the grid), and refits on all training prompts with it. Routers that
stop early (``mlp``, ``textmf``, ``twotower``) keep the best epoch found on
validation for the refit. The encoder is fitted once on the training prompts' texts
(a TF-IDF encoder learns from texts only, never from scores) and every prompt is
encoded once for the whole search. The grid, every point's validation mu, the chosen values
and the time spent are stored in ``router.tuning_`` and saved with the model.

Default grids (:data:`DEFAULT_GRIDS`), chosen to cover each setting's useful range
in a handful of fits; each holds the router's default values, so tuning keeps the
defaults unless another point does better on the validation prompts:

======================  ======================================================
router                  grid
======================  ======================================================
knn                     k in 5, 10, 20, 50, 100, 200
linear                  alpha in 0.1, 1, 10, 100, 1000
mlp                     hidden_layer_sizes (64,), (128,), (256,); learning_rate 1e-3, 3e-3
cluster                 n_clusters in 4, 8, 16, 32
mlc                     C in 0.01, 0.1, 1, 10
als                     factors 16, 32, 64; regularization 0.01, 0.1, 1
bpr                     factors 16, 32, 64; learning_rate 0.01, 0.05
lightfm                 no_components 16, 32; epochs 5, 20
textmf                  dim 32, 64; lr 3e-3, 1e-2
twotower                dim 32, 64; lr 1e-3, 3e-3
best-per-group          shrinkage 0, 5, 20
======================  ======================================================

``auto`` tunes itself (its guard) and is not in the table.
"""

from __future__ import annotations

import itertools
import time
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.records import PerformanceRecords
from ..encoders.base import Encoder
from ..errors import ConfigError
from .base import Router, make_router

__all__ = ["DEFAULT_GRIDS", "tune_router", "describe_tuning"]

DEFAULT_GRIDS: dict[str, dict[str, list]] = {
    "knn": {"k": [5, 10, 20, 50, 100, 200]},
    "linear": {"alpha": [0.1, 1.0, 10.0, 100.0, 1000.0]},
    "mlp": {"hidden_layer_sizes": [[64], [128], [256]], "learning_rate": [1e-3, 3e-3]},
    "cluster": {"n_clusters": [4, 8, 16, 32]},
    "mlc": {"C": [0.01, 0.1, 1.0, 10.0]},
    "als": {"factors": [16, 32, 64], "regularization": [0.01, 0.1, 1.0]},
    "bpr": {"factors": [16, 32, 64], "learning_rate": [0.01, 0.05]},
    "lightfm": {"no_components": [16, 32], "epochs": [5, 20]},
    "textmf": {"dim": [32, 64], "lr": [3e-3, 1e-2]},
    "twotower": {"dim": [32, 64], "lr": [1e-3, 3e-3]},
    "best-per-group": {"shrinkage": [0.0, 5.0, 20.0]},
}
_EPOCH_PARAM = {"mlp": "max_epochs", "textmf": "epochs", "twotower": "epochs"}


class _MemoEncoder(Encoder):
    """A fitted encoder that remembers the vectors it computed, so the grid's fits
    encode every prompt once. Saves (config, arrays, fingerprint) as the wrapped one."""

    def __init__(self, inner: Encoder):
        self.inner = inner
        self.type = inner.type
        self._memo: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return self.inner.dim

    def _encode(self, texts, show_progress):
        todo = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if todo:
            for t, v in zip(todo, self.inner.encode(todo, show_progress=show_progress)):
                self._memo[t] = v
        return np.stack([self._memo[t] for t in texts])

    def get_config(self) -> dict:
        return self.inner.get_config()

    def get_arrays(self) -> dict:
        return self.inner.get_arrays()


def _mu(router: Router, val: PerformanceRecords) -> float:
    from .classifiers import validation_mu
    return validation_mu(router.score(val), val.dense())


def tune_router(name: str, train: PerformanceRecords, encoder=None,
                grid: Mapping[str, Sequence] | None = None, params: Mapping[str, Any] | None = None,
                val_share: float = 0.1, seed: int = 0, side_features: Sequence[str] = (),
                show_progress: bool | None = None, val_records: PerformanceRecords | None = None
                ) -> Router:
    """Fit ``name`` with its main settings picked on validation prompts from ``train``.

    Parameters
    ----------
    name : str
        Router registry name.
    train : PerformanceRecords
        Training records; the validation prompts are a seeded share of them (the
        test prompts are never passed here).
    encoder : Encoder or str, optional
        As in :meth:`Router.fit` (pass a cached encoder to encode once).
    grid : mapping, optional
        ``{parameter: [values]}``; default :data:`DEFAULT_GRIDS` ``[name]``; the
        product of the lists is searched.
    params : mapping, optional
        Fixed parameters for every fit.
    val_share : float
        Share of the training prompts used for validation.
    val_records : PerformanceRecords, optional
        Validation prompts to use instead of a share of ``train`` (never test
        prompts); the final refit is then on ``train`` alone.

    Returns
    -------
    Router
        Fitted on all of ``train`` with the chosen values; ``tuning_`` holds the
        search.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> r = tune_router("knn", make_synthetic(300, 4, seed=0), grid={"k": [5, 20]},
    ...                 encoder=TfidfEncoder(dim=16, n_features=2 ** 12))
    >>> sorted(r.tuning_["chosen"]), len(r.tuning_["results"])
    (['k'], 2)
    """
    t0 = time.perf_counter()
    grid = dict(DEFAULT_GRIDS.get(name, {}) if grid is None else grid)
    if not grid:
        raise ConfigError(f"no tuning grid for router {name!r}; pass grid={{param: [values]}} "
                          f"(routers with default grids: {', '.join(sorted(DEFAULT_GRIDS))})")
    if not 0.0 < float(val_share) < 1.0:
        raise ConfigError(f"val_share must be in (0, 1), got {val_share}")
    params = dict(params or {})
    keys = list(grid)
    for k in keys:
        if not isinstance(grid[k], (list, tuple)) or not grid[k]:
            raise ConfigError(f"grid[{k!r}] must be a non-empty list of values")
    if val_records is not None:
        val, fit = val_records, train
        n_val = val.n_prompts
    else:
        rng = np.random.default_rng(seed)
        n_val = max(1, int(round(float(val_share) * train.n_prompts)))
        perm = rng.permutation(train.n_prompts)
        val, fit = train.select_prompts(np.sort(perm[:n_val])), \
            train.select_prompts(np.sort(perm[n_val:]))
    results = []
    if make_router(name, **params).needs_text:  # fit the encoder once, encode each prompt once
        from ..encoders import make_encoder
        enc = make_encoder(encoder if encoder is not None else "tfidf")
        if enc.requires_fit and not enc.is_fitted:
            enc.fit(train.texts)
        encoder = _MemoEncoder(enc)
    from .._progress import progress
    points = list(itertools.product(*(grid[k] for k in keys)))
    for values in progress(points, desc=f"tuning {name}", unit="fits", show=show_progress):
        point = {k: (tuple(v) if isinstance(v, list) else v) for k, v in zip(keys, values)}
        r = make_router(name, **{**params, **point})
        t1 = time.perf_counter()
        r.fit(fit, encoder=encoder, val_records=val, side_features=side_features,
              show_progress=False)
        res = {"params": point, "val_mu": _mu(r, val), "seconds": time.perf_counter() - t1}
        if name in _EPOCH_PARAM and hasattr(r, "best_epoch_"):
            res["best_epoch"] = int(r.best_epoch_)
        results.append(res)
    best = max(range(len(results)),
               key=lambda i: (np.nan_to_num(results[i]["val_mu"], nan=-np.inf), -i))
    chosen = dict(results[best]["params"])
    if "best_epoch" in results[best]:
        chosen[_EPOCH_PARAM[name]] = max(1, results[best]["best_epoch"])
    router = make_router(name, **{**params, **chosen})
    router.fit(train, encoder=encoder, side_features=side_features, show_progress=show_progress)
    feat = getattr(router, "featurizer_", None)
    if feat is not None and isinstance(feat.encoder, _MemoEncoder):
        feat.encoder = feat.encoder.inner  # the model keeps the real encoder
    router.tuning_ = {"grid": {k: list(v) for k, v in grid.items()}, "results": results,
                      "chosen": chosen, "n_val": n_val,
                      "val_share": None if val_records is not None else float(val_share),
                      "seed": int(seed), "seconds": time.perf_counter() - t0}
    return router


def describe_tuning(router: Router) -> str | None:
    """One line on what validation chose (None when the router was not tuned).

    Examples
    --------
    >>> from llmrec.routers import make_router
    >>> describe_tuning(make_router("best-single")) is None
    True
    """
    t = getattr(router, "tuning_", None)
    if not t:
        return None
    if router.name == "auto":
        parts = []
        for v in ("full", "text"):
            if v in t:
                m = t[v]["margin"]
                parts.append(f"{v} stack: " + ("stays on the best single LLM" if m is None
                                               else f"routes when the predicted gain > {m:.4g}"))
        cg = t.get("full", {}).get("cost_guard")
        if cg:
            n_routes = sum(g["margin"] is not None for g in cg)
            parts.append(f"with cost_weight: routes at {n_routes} of {len(cg)} cost weights "
                         f"({cg[0]['cost_weight']:.3g}..{cg[-1]['cost_weight']:.3g}), else "
                         "the best single LLM at that weight")
        return (f"auto: best single LLM {t['base_llm']}; " + "; ".join(parts)
                + f"; candidates {', '.join(t['candidates'])}; tuned on {t['tuned_on']} "
                f"in {t['seconds']:.1f} s")
    best = max((r["val_mu"] for r in t["results"]), default=float("nan"))
    chosen = ", ".join(f"{k}={v}" for k, v in t["chosen"].items())
    return (f"{router.name}: chose {chosen} (validation mu {best:.4f} over "
            f"{len(t['results'])} settings, {t['n_val']} validation prompts) in "
            f"{t['seconds']:.1f} s")
