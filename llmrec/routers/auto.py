"""``auto``: a stacked router with a no-regret guard, the default router of llmrec.

What it does, in order (every step sees the training prompts only):

1. **Candidates.** A set of cheap candidate routers ("experts"): the best LLM per
   value of each metadata column that groups the prompts (``group:category``,
   ``group:benchmark``), kNN at three neighbourhood sizes and a ridge regression on
   the prompt features (``DEFAULT_CANDIDATES``). Any registered router can be a
   candidate (``"mlc:C=0.1"``).
2. **Out-of-fold predictions.** The training prompts are split into ``n_folds``
   folds; each candidate is fitted on all folds but one and predicts the held-out
   fold, so every training prompt gets predictions from candidates that never saw
   it (``oof_``).
3. **Stacking.** One ridge combiner per LLM regresses the LLM's score minus the
   prompt's mean (only the order within a prompt matters) on the candidates'
   per-prompt-centred predictions for that LLM and on side features of the prompt
   (one-hot category and benchmark unless a group candidate covers the column, log
   length). It is fitted on the out-of-fold
   predictions, never on in-sample ones. A second stack without the group
   candidates and side features serves prompts that come as plain text or as
   feature arrays (no metadata); each stack has its own guard.
4. **No-regret guard.** Tuning prompts: every training prompt, scored by a
   combiner fitted on the other folds (cross-validated stacking), or the
   ``val_records`` when given. On them, the router moves
   a prompt away from the best single LLM of the training prompts only when the
   predicted gain ``S[p, best] - S[p, single]`` clears a margin. The margin is
   picked from a grid (quantiles of the predicted gains) by the lower confidence
   bound ``mean(d) - z * se(d)`` of the per-prompt gain ``d`` over the single LLM
   (margins that move fewer than ``min_moved`` prompts do not count);
   when no margin has a positive bound, the router *is* the best single LLM
   (same scores). So on data where prompt features carry no signal, ``auto``
   equals the best single LLM, and it routes only where validation says it pays.
5. **A guard per cost weight.** When the LLMs have known, unequal costs, step 4 is
   repeated at each cost weight ``w`` of a log grid (``cost_grid_``) on utility,
   score minus ``w`` x cost, against the best single LLM at ``w`` (best mean score
   minus ``w`` x mean cost). ``score``/``recommend`` with ``cost_weight=w`` use the
   guard of the nearest grid weight when its best single LLM is the one at ``w``,
   else the best single LLM at ``w``: the no-regret rule holds for the cost-aware
   choice too, instead of the cost curve collapsing onto the single LLMs' hull
   whenever the ``w = 0`` guard keeps the best single LLM.
6. The candidates are refitted on all training prompts and the combiner on all
   out-of-fold predictions; the tuned margin is kept. The chosen settings, the
   validation figures and the tuning time are in ``tuning_`` (saved with the model).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..data.records import PerformanceRecords
from ..errors import ConfigError, ModelFormatError
from .base import Router, make_router, register_router

__all__ = ["AutoRouter", "DEFAULT_CANDIDATES", "parse_candidate"]

#: candidates of ``auto`` (``group:<column>`` entries are used when the column groups
#: the training prompts into 2..200 values)
DEFAULT_CANDIDATES = ("group:category", "group:benchmark", "knn:k=10", "knn:k=50",
                      "knn:k=200", "linear:alpha=10")
_SIDE_COLUMNS = ("category", "benchmark")


def parse_candidate(spec: str) -> tuple[str, dict]:
    """``"knn:k=50,k_grid=None"`` -> ``("knn", {"k": 50})``; ``"group:category"`` ->
    ``("group", {"column": "category"})``.

    Examples
    --------
    >>> parse_candidate("knn:k=50"), parse_candidate("group:benchmark")
    (('knn', {'k': 50}), ('group', {'column': 'benchmark'}))
    """
    if not isinstance(spec, str) or not spec:
        raise ConfigError(f"candidate must be a non-empty string, got {spec!r}")
    name, _, rest = spec.partition(":")
    if name == "group":
        if not rest:
            raise ConfigError("candidate 'group' needs a column: 'group:category'")
        return "group", {"column": rest}
    params = {}
    for part in filter(None, rest.split(",")):
        k, eq, v = part.partition("=")
        if not eq:
            raise ConfigError(f"candidate {spec!r}: expected key=value, got {part!r}")
        import json
        try:
            params[k.strip()] = json.loads(v)
        except ValueError:
            params[k.strip()] = v
    return name, params


def _column_values(prompts, column: str, n: int) -> np.ndarray:
    from .baselines import _group_values
    g = _group_values(prompts, column, n)
    return np.full(n, None, dtype=object) if g is None else g


def _lengths(prompts, n: int) -> np.ndarray:
    if isinstance(prompts, np.ndarray) or prompts is None:
        return np.zeros(n, np.float32)
    from ..encoders.features import as_prompt_frame
    return (np.log1p(as_prompt_frame(prompts)["text"].str.len().to_numpy(dtype=np.float64))
            / 10.0).astype(np.float32)


class _Expert:
    """One candidate: a group table or a registered router run on given features."""

    def __init__(self, spec: str):
        self.spec = spec
        self.kind, self.params = parse_candidate(spec)
        if self.kind != "group":
            r = make_router(self.kind, **self.params)
            if r.needs_truth:
                raise ConfigError(f"candidate {spec!r} reads the truth; it cannot be a candidate")

    def fit(self, records: PerformanceRecords, X: np.ndarray, llms) -> "_Expert":
        if self.kind == "group":
            from .baselines import group_means
            groups, table, overall = group_means(records, self.params["column"])
            self.groups_ = groups
            self.table_ = np.nan_to_num(table).astype(np.float32)
            self.overall_ = np.nan_to_num(overall).astype(np.float32)
        else:
            r = make_router(self.kind, **self.params)
            r.llms_ = llms
            r.llm_costs_ = None
            r.featurizer_ = None
            r.train_summary_ = {}
            r._show_progress = False
            r._fit(records, X if r.needs_text else None, None, None)
            self.router_ = r
        return self

    def predict(self, X: np.ndarray, groups: dict, n: int) -> np.ndarray:
        if self.kind == "group":
            out = np.broadcast_to(self.overall_, (n, len(self.overall_))).copy()
            code = {v: i for i, v in enumerate(self.groups_)}
            idx = np.asarray([code.get(v, -1) for v in groups[self.params["column"]]],
                             dtype=np.int64)
            hit = idx >= 0
            out[hit] = self.table_[idx[hit]]
            return out
        S = np.asarray(self.router_._score(X if self.router_.needs_text else None, None, n),
                       dtype=np.float64)
        finite = np.isfinite(S)
        if not finite.all():  # an LLM without training records: its row mean
            fill = np.nanmean(np.where(finite, S, np.nan), axis=1, keepdims=True)
            S = np.where(finite, S, np.nan_to_num(fill))
        return S.astype(np.float32)

    def get_state(self, prefix: str) -> tuple[dict, dict]:
        if self.kind == "group":
            return ({"groups": list(self.groups_)},
                    {prefix + "table": self.table_, prefix + "overall": self.overall_})
        st, arrays = self.router_._get_state()
        return {"state": st}, {prefix + k: v for k, v in arrays.items()}

    def set_state(self, state: dict, arrays: dict, prefix: str, llms) -> "_Expert":
        if self.kind == "group":
            self.groups_ = [str(g) for g in state["groups"]]
            self.table_ = arrays[prefix + "table"].astype(np.float32)
            self.overall_ = arrays[prefix + "overall"].astype(np.float32)
        else:
            r = make_router(self.kind, **self.params)
            r.llms_ = llms
            r.llm_costs_ = None
            r.featurizer_ = None
            r.train_summary_ = {}
            r._set_state(state["state"], {k[len(prefix):]: v for k, v in arrays.items()
                                          if k.startswith(prefix)})
            self.router_ = r
        return self


def _centre_rows(S: np.ndarray) -> np.ndarray:
    return S - S.mean(axis=1, keepdims=True)


@register_router
class AutoRouter(Router):
    """Stacked candidates with a no-regret guard (see the module docstring).

    Parameters
    ----------
    candidates : sequence of str, optional
        Candidate specs, ``"<router>:<key>=<value>,..."`` or ``"group:<column>"``;
        default :data:`DEFAULT_CANDIDATES`. Group candidates whose column does not
        group the training prompts (fewer than 2 or more than 200 values) are
        dropped.
    n_folds : int
        Folds of the out-of-fold predictions.
    combiner_alpha : float
        Ridge penalty of the per-LLM combiners.
    guard_z : float
        z of the lower confidence bound that a margin must clear (1.64: one-sided
        95%); larger is more conservative.
    min_moved : int
        A margin must move at least this many tuning prompts off the best single
        LLM to count (a handful of lucky moves is not evidence).
    side_features : bool
        Put the prompt's category / benchmark one-hot and log length into the
        combiner.
    random_state : int

    Attributes
    ----------
    tuning_ : dict
        Chosen margin, base LLM, the validation figures of each margin, the
        candidates kept and their combiner weights, and the time spent.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(400, 5, n_topics=3, seed=0)
    >>> r = AutoRouter(candidates=["knn:k=20", "group:category"]).fit(
    ...     rec, encoder=TfidfEncoder(dim=16, n_features=2 ** 12))
    >>> r.score(["solve the quadratic equation"]).shape
    (1, 5)
    >>> sorted(r.tuning_["full"])
    ['combiner_weights', 'margin', 'margins', 'routes', 'side_weight']
    """

    name = "auto"

    def __init__(self, candidates: Sequence[str] | None = None, n_folds: int = 5,
                 combiner_alpha: float = 1.0, guard_z: float = 1.64, min_moved: int = 20,
                 side_features: bool = True, random_state: int = 0):
        self.candidates = candidates
        self.n_folds = n_folds
        self.min_moved = min_moved
        self.combiner_alpha = combiner_alpha
        self.guard_z = guard_z
        self.side_features = side_features
        self.random_state = random_state

    # ------------------------------------------------------------ helpers
    def _check(self):
        if int(self.n_folds) < 2:
            raise ConfigError(f"n_folds must be >= 2, got {self.n_folds}")
        if int(self.min_moved) < 1:
            raise ConfigError(f"min_moved must be >= 1, got {self.min_moved}")
        if float(self.combiner_alpha) < 0 or float(self.guard_z) < 0:
            raise ConfigError("combiner_alpha and guard_z must be >= 0")
        specs = list(DEFAULT_CANDIDATES if self.candidates is None else self.candidates)
        if not specs:
            raise ConfigError("candidates is empty; give at least one candidate")
        return specs

    def _groups(self, prompts, n: int) -> dict:
        cols = set(_SIDE_COLUMNS) | {e.params["column"] for e in getattr(self, "experts_", [])
                                     if e.kind == "group"}
        return {c: _column_values(prompts, c, n) for c in cols}

    def _side(self, groups: dict, lengths: np.ndarray) -> np.ndarray:
        n = len(lengths)
        if not self.side_features:
            return np.zeros((n, 0), np.float32)
        parts = []
        for col in _SIDE_COLUMNS:
            vals = self.side_values_.get(col, [])
            if not vals:
                continue
            code = {v: i for i, v in enumerate(vals)}
            oh = np.zeros((n, len(vals)), np.float32)
            idx = np.asarray([code.get(v, -1) for v in groups[col]], dtype=np.int64)
            oh[np.flatnonzero(idx >= 0), idx[idx >= 0]] = 1.0
            parts.append(oh)
        parts.append(lengths[:, None])
        return np.hstack(parts).astype(np.float32)

    def _design(self, preds: np.ndarray, side: np.ndarray, j: int) -> np.ndarray:
        """Combiner inputs of LLM j: centred candidate predictions + side features."""
        return np.hstack([preds[:, :, j], side])

    def _fit_combiner(self, preds, side, target, obs):
        from sklearn.linear_model import Ridge
        m = target.shape[1]
        d = preds.shape[1] + side.shape[1]
        W = np.zeros((m, d), np.float32)
        b = np.zeros(m, np.float32)
        for j in range(m):
            rows = obs[:, j]
            if rows.sum() < 2:
                continue
            model = Ridge(alpha=float(self.combiner_alpha)).fit(
                self._design(preds[rows], side[rows], j), target[rows, j])
            W[j], b[j] = model.coef_, model.intercept_
        return W, b

    @staticmethod
    def _combine(preds, side, W, b) -> np.ndarray:
        # S[p, j] = b_j + sum_k W[j, k] preds[p, k, j] + W[j, K:] . side[p]
        K = preds.shape[1]
        S = np.einsum("pkj,jk->pj", preds, W[:, :K]) + side @ W[:, K:].T + b[None, :]
        return S.astype(np.float32)

    def _predict_experts(self, experts, X, groups, n) -> np.ndarray:
        return np.stack([_centre_rows(e.predict(X, groups, n)) for e in experts], axis=1)

    # ----------------------------------------------------------------- fit
    def _fit(self, records, X, val, X_val):
        t0 = time.perf_counter()
        specs = self._check()
        n, m = records.shape
        rng = np.random.default_rng(int(self.random_state))
        groups = self._groups(records, n)
        # candidates: drop group columns that do not group the prompts
        kept = []
        for s in specs:
            e = _Expert(s)
            if e.kind == "group":
                col = e.params["column"]
                vals = {v for v in _column_values(records, col, n) if v is not None}
                if not 2 <= len(vals) <= 200:
                    continue
                groups.setdefault(col, _column_values(records, col, n))
            kept.append(e)
        if not kept:
            raise ConfigError("auto: no usable candidate (group columns need 2..200 values in "
                              "the training prompts); add e.g. 'knn:k=50'")
        self.side_values_ = {}
        covered = {e.params["column"] for e in kept if e.kind == "group"}
        for col in _SIDE_COLUMNS:
            if col in covered:
                # a one-hot next to the group candidate of the same column lets the
                # combiner rebuild a fold's own group means from the other folds'
                # candidate predictions (a leak that made noise look like signal)
                continue
            vals = sorted({v for v in groups[col] if v is not None})
            if 2 <= len(vals) <= 200:
                self.side_values_[col] = vals
        side = self._side(groups, _lengths(records, n))
        dense = records.dense()
        obs = records.observed_dense()
        from .signal import prompt_means
        pm = np.nan_to_num(prompt_means(records))
        target = np.where(obs, dense - pm[:, None], 0.0).astype(np.float32)
        llm_mean = records.llm_summary()["mean_score"].to_numpy(dtype=np.float64)
        self.llm_mean_ = np.where(np.isnan(llm_mean), -np.inf, llm_mean).astype(np.float32)
        base = self._base_at(0.0, llm_mean)  # ties: the first name (the tie rule)
        self.base_llm_ = base

        # out-of-fold predictions
        k = min(int(self.n_folds), n)
        folds = rng.permutation(np.arange(n) % k)
        oof = np.zeros((n, len(kept), m), np.float32)
        from .._progress import progress
        for f in progress(range(k), desc="auto: out-of-fold candidates", unit="folds",
                          show=getattr(self, "_show_progress", None)):
            tr, te = np.flatnonzero(folds != f), np.flatnonzero(folds == f)
            sub = records.select_prompts(tr)
            g_te = {c: v[te] for c, v in groups.items()}
            for i, s in enumerate(kept):
                e = _Expert(s.spec).fit(sub, X[tr], self.llms_)
                oof[te, i] = _centre_rows(e.predict(X[te], g_te, len(te)))
        self.folds_ = folds
        self.oof_ = oof

        # variants: "full" uses every candidate and side feature; "text" leaves out
        # what needs more than the prompt features (group candidates, one-hots, the
        # length), for prompts that arrive as plain text or as a feature array
        K = len(kept)
        n_side = side.shape[1]
        variants = [{"name": "full", "experts": list(range(K)), "side": list(range(n_side))}]
        if any(e.kind == "group" for e in kept) or n_side > 0:
            variants.append({"name": "text",
                             "experts": [i for i, e in enumerate(kept) if e.kind != "group"],
                             "side": []})

        # tuning prompts: the external validation records, else a share of training
        if val is not None and val.n_prompts:
            fit_rows = True
            experts = [_Expert(e.spec).fit(records, X, self.llms_) for e in kept]
            gv = {c: _column_values(val, c, val.n_prompts) for c in groups}
            preds_t = self._predict_experts(experts, X_val, gv, val.n_prompts)
            side_t = self._side(gv, _lengths(val, val.n_prompts))
            truth_t = val.dense()
            tune_src = f"val_records ({val.n_prompts} prompts)"
        else:  # cross-validated stacking: each fold's combiner never saw the fold
            fit_rows = None
            preds_t, side_t, truth_t = oof, side, dense
            experts = None
            tune_src = (f"all {n} training prompts, out-of-fold (candidates and combiner "
                        f"fitted without the prompt's fold)")
        # cost weights at which the guard is tuned again (LLMs with known, unequal costs)
        grid = self._cost_grid(dense, obs)
        self.cost_grid_ = grid
        if grid is not None:  # what the tuning prompts' answers cost (per record if known)
            cr = val if fit_rows else records
            cost_t = cr.cost_dense() if cr.cost is not None else None
            fill = np.broadcast_to(self.llm_costs_.astype(np.float64), truth_t.shape)
            cost_t = fill if cost_t is None else np.where(np.isnan(cost_t), fill, cost_t)
        for v in variants:
            ei, si = v["experts"], v["side"]
            if not ei:  # nothing to route with: the best single LLM
                v.update(margin=None, margins=[], W=np.zeros((m, len(si)), np.float32),
                         b=np.zeros(m, np.float32))
                if grid is not None:
                    v.update(cost_margins=[None] * len(grid),
                             cost_bases=[self._base_at(w) for w in grid],
                             cost_table=[None] * len(grid))
                continue
            if fit_rows is not None:
                W, b = self._fit_combiner(oof[:, ei], side[:, si], target, obs)
                S_t = self._combine(preds_t[:, ei], side_t[:, si], W, b)
            else:
                S_t = np.zeros((n, m), np.float32)
                for f in range(k):
                    tr, te = folds != f, folds == f
                    W, b = self._fit_combiner(oof[tr][:, ei], side[tr][:, si], target[tr],
                                              obs[tr])
                    S_t[te] = self._combine(oof[te][:, ei], side[te][:, si], W, b)
            v["margin"], v["margins"] = self._tune_margin(S_t, truth_t, base)
            if grid is not None:  # the guard again at each cost weight of the grid
                v["cost_margins"], v["cost_bases"], v["cost_table"] = [], [], []
                for w in grid:
                    bw = self._base_at(w)
                    mw, tab = self._tune_margin(S_t - np.float32(w) * self.llm_costs_,
                                                truth_t - w * cost_t, bw)
                    v["cost_margins"].append(mw)
                    v["cost_bases"].append(bw)
                    v["cost_table"].append(next((r for r in tab if r["margin"] == mw), None))
            # final combiner: all out-of-fold predictions
            v["W"], v["b"] = (W, b) if fit_rows is not None else \
                self._fit_combiner(oof[:, ei], side[:, si], target, obs)

        self.experts_ = experts if experts is not None else \
            [_Expert(e.spec).fit(records, X, self.llms_) for e in kept]
        self.variants_ = variants
        self.tuning_ = {
            "base_llm": self.llms_["name"].iloc[base], "tuned_on": tune_src,
            "guard_z": float(self.guard_z), "candidates": [e.spec for e in kept],
            "side_features": {c: len(v) for c, v in self.side_values_.items()},
            "n_folds": k, "seconds": time.perf_counter() - t0}
        for v in variants:
            ne = len(v["experts"])
            self.tuning_[v["name"]] = {
                "margin": v["margin"], "routes": v["margin"] is not None,
                "margins": v["margins"],
                "combiner_weights": {kept[i].spec: float(np.mean(v["W"][:, c]))
                                     for c, i in enumerate(v["experts"])},
                "side_weight": float(np.abs(v["W"][:, ne:]).mean()) if v["W"].shape[1] > ne
                else 0.0}
            if grid is not None:
                names = self.llms_["name"]
                self.tuning_[v["name"]]["cost_guard"] = [
                    {"cost_weight": float(w), "base_llm": str(names.iloc[b]), "margin": mg,
                     "gain": None if r is None else r["gain"],
                     "lcb": None if r is None else r["lcb"],
                     "moved": None if r is None else r["moved"]}
                    for w, b, mg, r in zip(grid, v["cost_bases"], v["cost_margins"],
                                           v["cost_table"])]
        for v in variants:
            v.pop("cost_table", None)
        self.margin_ = variants[0]["margin"]

    #: cost weights of the guard's grid, as multiples of (score spread / cost range):
    #: from "a cost range is worth 0.001 score standard deviations" to "worth 10"
    _COST_GRID = np.logspace(-3, 1, 17)

    def _cost_grid(self, dense: np.ndarray, obs: np.ndarray) -> np.ndarray | None:
        """Cost weights at which the guard is tuned, or None (no costs / all equal)."""
        if self.llm_costs_ is None:
            return None
        c = self.llm_costs_[np.isfinite(self.llm_costs_)].astype(np.float64)
        spread = float(c.max() - c.min()) if c.size else 0.0
        if spread <= 0:
            return None
        sd = float(np.std(dense[obs])) if obs.any() else 0.0
        return self._COST_GRID * (sd if sd > 0 else 1.0) / spread

    def _base_at(self, w: float, means: np.ndarray | None = None) -> int:
        """The best single LLM of the training prompts by mean score - w x cost (ties:
        the first name); ``means`` defaults to the saved ``llm_mean_``."""
        u = (self.llm_mean_ if means is None else means).astype(np.float64)
        if w:
            u = u - float(w) * np.nan_to_num(self.llm_costs_.astype(np.float64), nan=np.inf)
        u = np.where(np.isnan(u), -np.inf, u)
        best = np.flatnonzero(u == u.max())
        return int(min(best, key=lambda j: str(self.llms_["name"].iloc[j])))

    def _tune_margin(self, S: np.ndarray, truth: np.ndarray, base: int):
        """(margin or None for "never leave the base LLM", per-margin table)."""
        gain = S.max(axis=1) - S[:, base]
        top = S.argmax(axis=1)
        ok = np.isfinite(truth[np.arange(len(top)), top]) & np.isfinite(truth[:, base])
        qs = np.unique(np.quantile(gain, np.linspace(0.0, 0.95, 20))) if len(gain) else []
        grid = sorted({0.0, *[float(q) for q in qs if q >= 0]})
        table, best, best_lcb = [], None, 0.0
        for t in grid:
            route = np.where(gain > t, top, base)
            d = truth[np.arange(len(route)), route] - truth[:, base]
            d = d[ok]
            if len(d) < 2 or int((gain > t)[ok].sum()) < int(self.min_moved):
                continue
            mean = float(d.mean())
            lcb = mean - float(self.guard_z) * float(d.std(ddof=1)) / np.sqrt(len(d))
            table.append({"margin": t, "gain": mean, "lcb": lcb,
                          "moved": float((gain > t)[ok].mean())})
            if lcb > best_lcb:
                best, best_lcb = t, lcb
        return best, table

    # --------------------------------------------------------------- score
    def _single(self, n: int, w: float) -> np.ndarray:
        """Every prompt scored as the LLMs' training means (minus w x cost)."""
        u = self.llm_mean_ if not w else self.llm_mean_ - np.float32(w) * self.llm_costs_
        return np.broadcast_to(u.astype(np.float32), (n, self.n_llms_)).copy()

    def _variant_scores(self, v, preds, side, n, guard) -> np.ndarray:
        margin, base, w = guard
        if margin is None:  # the guard chose the best single LLM (at this cost weight)
            return self._single(n, w)
        S = self._combine(preds[:, v["experts"]], side[:, v["side"]], v["W"], v["b"])
        if w:
            S -= np.float32(w) * self.llm_costs_[None, :]
        S[:, base] += np.float32(margin)
        return S

    def _guards(self, w: float) -> list[tuple]:
        """Per variant (margin or None, base LLM, w) of the guard at cost weight ``w``.

        At w > 0 the guard of the nearest grid point (in log w) is used when its base
        LLM is the best single LLM at w too; otherwise the router is that best single."""
        if not w:
            return [(v["margin"], self.base_llm_, 0.0) for v in self.variants_]
        g = int(np.argmin(np.abs(np.log(self.cost_grid_) - np.log(w))))
        bw = self._base_at(w)
        return [(v["cost_margins"][g] if v["cost_bases"][g] == bw else None, bw, w)
                for v in self.variants_]

    def _score(self, X, prompts, n):
        return self._guarded_scores(X, prompts, n, 0.0)

    def _score_at_cost(self, X, prompts, n, cost_weight):
        if getattr(self, "cost_grid_", None) is None:  # no cost differences to trade
            return super()._score_at_cost(X, prompts, n, cost_weight)
        return self._guarded_scores(X, prompts, n, float(cost_weight))

    def _guarded_scores(self, X, prompts, n, w: float) -> np.ndarray:
        guards = self._guards(w)
        if all(g[0] is None for g in guards):
            return self._single(n, w)
        groups = self._groups(prompts, n)
        preds = self._predict_experts(self.experts_, X, groups, n)
        side = self._side(groups, _lengths(prompts, n))
        S = self._variant_scores(self.variants_[0], preds, side, n, guards[0])
        if len(self.variants_) > 1:
            cols = set(self.side_values_) | {e.params["column"] for e in self.experts_
                                             if e.kind == "group"}
            has_meta = np.zeros(n, bool)
            for c in cols:
                has_meta |= np.asarray([g is not None for g in groups[c]], dtype=bool)
            if not has_meta.all():
                St = self._variant_scores(self.variants_[1], preds, side, n, guards[1])
                S[~has_meta] = St[~has_meta]
        return np.where(np.isfinite(self.llm_mean_)[None, :], S, -np.inf).astype(np.float32)

    # ---------------------------------------------------------- persistence
    def _get_state(self):
        state = {"base_llm": int(self.base_llm_), "side_values": self.side_values_,
                 "tuning": self.tuning_, "experts": [],
                 "cost_grid": None if self.cost_grid_ is None
                 else [float(w) for w in self.cost_grid_],
                 "variants": [{"name": v["name"], "experts": v["experts"], "side": v["side"],
                               "margin": v["margin"],
                               "cost_margins": v.get("cost_margins"),
                               "cost_bases": v.get("cost_bases")} for v in self.variants_]}
        arrays = {"llm_mean": self.llm_mean_}
        for i, v in enumerate(self.variants_):
            arrays[f"W{i}"], arrays[f"b{i}"] = v["W"], v["b"]
        for i, e in enumerate(self.experts_):
            st, arr = e.get_state(f"e{i}_")
            state["experts"].append({"spec": e.spec, **st})
            arrays.update(arr)
        return state, arrays

    def _set_state(self, state, arrays):
        try:
            self.base_llm_ = int(state["base_llm"])
            self.side_values_ = {k: [str(x) for x in v] for k, v in state["side_values"].items()}
            self.tuning_ = state.get("tuning", {})
            self.llm_mean_ = arrays["llm_mean"].astype(np.float32)
            self.variants_ = []
            for i, v in enumerate(state["variants"]):
                self.variants_.append({
                    "name": v["name"], "experts": [int(x) for x in v["experts"]],
                    "side": [int(x) for x in v["side"]],
                    "margin": None if v["margin"] is None else float(v["margin"]),
                    "W": arrays[f"W{i}"].astype(np.float32),
                    "b": arrays[f"b{i}"].astype(np.float32)})
                if state.get("cost_grid") is not None:
                    self.variants_[-1].update(
                        cost_margins=[None if x is None else float(x)
                                      for x in v["cost_margins"]],
                        cost_bases=[int(x) for x in v["cost_bases"]])
            grid = state.get("cost_grid")  # absent in models saved before the cost guard
            self.cost_grid_ = None if grid is None else np.asarray(grid, np.float64)
            self.margin_ = self.variants_[0]["margin"]
            self.experts_ = [_Expert(st["spec"]).set_state(st, arrays, f"e{i}_", self.llms_)
                             for i, st in enumerate(state["experts"])]
        except KeyError as e:
            raise ModelFormatError(f"saved auto router lacks {e}; save it again") from None
