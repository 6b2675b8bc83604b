"""Routing metrics: plain functions of arrays (scores or picks, truth, costs).

Conventions used by every function here:

* ``truth`` is a dense ``(n_prompts, n_llms)`` float array with NaN where a cell
  was not observed (``PerformanceRecords.dense()``). A NaN is never read as 0.
* ``pred_scores`` is a ``(n_prompts, n_llms)`` array of a router's predicted
  scores (higher is better; NaN or -inf ranks last).
* Routing never reads the truth: a prompt goes to the argmax of its scores over
  *every* LLM, ties to the lowest ``tie_rank`` (a router's
  :attr:`~llmrec.routers.Router.tie_rank_`: higher training mean, then name) or,
  without one, to the lowest position.
* Unobserved cells (the stated rule): RouterEval's figures (mu, Vr, Vb, Ep) are
  computed on the prompts where *every* LLM is observed, the same prompts for every
  router (``n_prompts`` says how many, ``n_excluded`` how many were left out);
  ranking figures (Hit@k, Recall, NDCG, MRR, cascade) count an unobserved cell as
  no success. A router is never spared a choice because its outcome is missing.
* ``picks`` are integer LLM positions, one per prompt.

Nothing here imports a router: protocols call routers, then these functions.
Definitions are written out in ``docs/evaluation.md``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import ConfigError, DataFormatError, UnknownIdError
from ..retrieval import topk_scores

#: Reference-model scores RouterEval divides by for Vr (``../shared/data/README.md``).
REFERENCE_SCORES: dict[str, float] = {
    "arc": 0.852, "hellaswag": 0.953, "mmlu": 0.864, "truthfulqa": 0.669,
    "winogrande": 0.875, "gsm8k": 0.92, "ifeval": 0.7689, "bbh": 0.8303, "gpqa": 0.397,
    "math": 0.4, "musr": 0.699, "mmlu_pro": 0.637,
}

__all__ = [
    "REFERENCE_SCORES", "picked_scores", "softmax_entropy_bits", "entropy_bits",
    "route_picks", "complete_prompts",
    "routereval_metrics", "oracle_mix_metrics", "selection_entropy_bits",
    "success_matrix", "hits_per_prompt", "hit_at_k", "recall_at_k", "ndcg_at_k", "mrr", "selection_share",
    "cascade_metrics", "quality_cost_curve", "aiq", "apgr", "bootstrap_ci", "paired_test",
    "paired_bootstrap_diff",
    "iso_quality_cost",
]


# --------------------------------------------------------------------- checks
def _truth(truth, what: str = "truth") -> np.ndarray:
    t = np.asarray(truth, dtype=np.float64)
    if t.ndim != 2:
        raise DataFormatError(f"{what} must be a 2-D (prompts x LLMs) array with NaN where "
                              f"unobserved, got shape {t.shape}")
    if np.isinf(t).any():
        r, c = np.argwhere(np.isinf(t))[0]
        raise DataFormatError(f"{what}[{r}, {c}] is infinite; truth holds scores, NaN for "
                              "unobserved cells")
    return t


def _scores(pred_scores, truth: np.ndarray, what: str = "pred_scores") -> np.ndarray:
    """Predicted scores with NaN set to -inf; checked against the truth's shape.

    The truth is *not* read: masking unobserved cells before the argmax would let a
    router avoid exactly the prompts whose outcome is missing (on MMLU-Pro those are
    hard prompts), which flatters every router on pools with gaps.
    """
    s = np.asarray(pred_scores, dtype=np.float64)
    if s.shape != truth.shape:
        raise DataFormatError(f"{what} has shape {s.shape} but truth has shape "
                              f"{truth.shape}; score the same prompts and LLMs, in order")
    return np.where(np.isnan(s), -np.inf, s)


def complete_prompts(truth) -> np.ndarray:
    """Boolean mask of the prompts where every LLM is observed (evaluated by mu etc.).

    Examples
    --------
    >>> import numpy as np
    >>> complete_prompts(np.array([[1.0, 0.0], [np.nan, 1.0]])).tolist()
    [True, False]
    """
    t = _truth(truth)
    return ~np.isnan(t).any(axis=1) if t.shape[1] else np.zeros(t.shape[0], bool)


def _picks(picks, truth: np.ndarray) -> np.ndarray:
    p = np.asarray(picks)
    if p.ndim != 1 or p.shape[0] != truth.shape[0]:
        raise DataFormatError(f"picks must be one LLM position per prompt "
                              f"({truth.shape[0]}), got shape {p.shape}")
    if p.size and p.dtype.kind not in "iu":
        raise DataFormatError("picks must be integer LLM positions")
    p = p.astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= truth.shape[1]):
        raise UnknownIdError(f"pick out of range 0..{truth.shape[1] - 1}")
    return p


def _argmax(scores: np.ndarray, tie_rank=None) -> np.ndarray:
    # ties by tie_rank (or LLM position), as topk_scores
    from ..retrieval import tie_break_argmax
    return tie_break_argmax(scores, tie_rank)


def _nonempty(n: int, what: str):
    if n == 0:
        raise DataFormatError(f"{what}: no prompts to evaluate")


def route_picks(pred_scores, truth=None, tie_rank=None) -> np.ndarray:
    """Each prompt's routed LLM: the argmax of its scores over every LLM.

    The routing rule every metric here uses. ``truth`` (optional) is only checked
    for shape, never read; ties go to the lowest ``tie_rank`` (see
    :func:`llmrec.retrieval.tie_ranks`), or to the lowest position without one.

    Examples
    --------
    >>> import numpy as np
    >>> route_picks(np.array([[3.0, 1.0, 3.0]]), np.array([[np.nan, 0.0, 1.0]]))
    array([0])
    >>> route_picks(np.array([[3.0, 1.0, 3.0]]), tie_rank=[1, 2, 0])
    array([2])
    """
    if truth is None:
        s = np.asarray(pred_scores, dtype=np.float64)
        if s.ndim != 2:
            raise DataFormatError(f"pred_scores must be 2-D, got shape {s.shape}")
        return _argmax(np.where(np.isnan(s), -np.inf, s), tie_rank)
    return _argmax(_scores(pred_scores, _truth(truth)), tie_rank)


def picked_scores(picks, truth) -> np.ndarray:
    """True score of each prompt's picked LLM (NaN where that cell is unobserved).

    Examples
    --------
    >>> import numpy as np
    >>> picked_scores([1, 0], np.array([[0.0, 1.0], [0.5, np.nan]]))
    array([1. , 0.5])
    """
    t = _truth(truth)
    p = _picks(picks, t)
    return t[np.arange(len(p)), p]


# ------------------------------------------------------------------- entropy
def entropy_bits(probs) -> np.ndarray:
    """Shannon entropy in bits of each row of a probability matrix.

    Examples
    --------
    >>> entropy_bits([[0.5, 0.5], [1.0, 0.0]])
    array([1., 0.])
    """
    P = np.asarray(probs, dtype=np.float64)
    if P.ndim != 2:
        raise DataFormatError(f"probs must be 2-D, got shape {P.shape}")
    if (P < 0).any() or not np.allclose(P.sum(axis=1), 1.0, atol=1e-6):
        raise DataFormatError("each row of probs must be a probability distribution "
                              "(non-negative, summing to 1)")
    from scipy.special import entr
    return entr(P).sum(axis=1) / np.log(2.0)


def softmax_entropy_bits(pred_scores) -> np.ndarray:
    """Entropy in bits of the softmax of each prompt's predicted scores (RouterEval's Ep).

    -inf or NaN scores get probability 0.

    Examples
    --------
    >>> import numpy as np
    >>> softmax_entropy_bits(np.array([[0.0, 0.0], [0.0, np.log(3.0)]])).round(4)
    array([1.    , 0.8113])
    """
    s = np.asarray(pred_scores, dtype=np.float64)
    if s.ndim != 2:
        raise DataFormatError(f"pred_scores must be 2-D, got shape {s.shape}")
    s = np.where(np.isnan(s), -np.inf, s)
    if s.shape[0] and (~np.isfinite(s).any(axis=1) | (s == np.inf).any(axis=1)).any():
        raise DataFormatError("a prompt has no finite predicted score (or +inf); cannot "
                              "take its softmax")
    from scipy.special import softmax
    return entropy_bits(softmax(s, axis=1)) if s.shape[0] else np.zeros(0)


def selection_entropy_bits(picks, n_llms: int) -> float:
    """Entropy in bits of the distribution of picks over the LLMs (a classification-bias view).

    Examples
    --------
    >>> selection_entropy_bits([0, 1, 0, 1], 3)
    1.0
    """
    share = selection_share(picks, n_llms)
    return float(entropy_bits(share[None, :])[0])


# ------------------------------------------------------------- RouterEval view
def _reference_value(reference, dataset) -> float | None:
    if reference is None:
        return None
    if isinstance(reference, str):
        key = reference.lower().replace("-", "_")
        if key not in REFERENCE_SCORES:
            raise ConfigError(f"no reference score for benchmark {reference!r}; known: "
                              f"{sorted(REFERENCE_SCORES)}; pass a number instead")
        return REFERENCE_SCORES[key]
    ref = float(reference)
    if not ref > 0:
        raise ConfigError(f"reference score must be > 0, got {reference}")
    return ref


def routereval_metrics(pred_scores, truth, reference=None, probs=None,
                       tie_rank=None) -> dict[str, float]:
    """RouterEval's mu, Vr, Vb and Ep on one candidate pool's test prompts.

    Evaluated on the prompts where every LLM is observed (the same prompts for every
    router; ``n_excluded`` counts the others). For RouterEval's exact figures (its
    missing-cell, tie and Ep rules) use the ``routereval-exact`` protocol mode.

    Parameters
    ----------
    pred_scores : array (n_prompts, n_llms)
        Predicted scores; each prompt is routed to its argmax over every LLM (ties:
        lowest ``tie_rank``, else lowest position).
    truth : array (n_prompts, n_llms)
        True scores, NaN where unobserved.
    reference : float or str, optional
        Reference-model score for Vr, or a benchmark name looked up in
        :data:`REFERENCE_SCORES`. Without it ``vr`` is NaN.
    probs : array (n_prompts, n_llms), optional
        The router's own selection distribution (e.g. the oracle's one-hot or
        r_o(p)'s mixture); Ep is its entropy instead of the softmax of ``pred_scores``.

    tie_rank : array (n_llms,), optional
        The router's tie rank (:attr:`~llmrec.routers.Router.tie_rank_`).

    Returns
    -------
    dict with ``mu`` (mean true score of the routed LLM), ``vr`` (mu / reference),
    ``vb`` (mu / best candidate's mean test score), ``ep`` (mean entropy in bits),
    ``n_prompts`` (evaluated), ``n_excluded`` (prompts with an unobserved LLM).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1.0, 0.0], [0.0, 1.0]])
    >>> m = routereval_metrics(np.array([[2.0, 0.0], [0.0, 0.0]]), truth, reference=0.8)
    >>> m["mu"], m["vr"], m["vb"]
    (0.5, 0.625, 1.0)
    """
    t = _truth(truth)
    _nonempty(t.shape[0], "routereval_metrics")
    s = _scores(pred_scores, t)
    full = complete_prompts(t)
    n_excl = int((~full).sum())
    if n_excl:  # the same prompts for every router: those with every LLM observed
        if probs is not None:
            probs = np.asarray(probs, dtype=np.float64)[full]
        t, s = t[full], s[full]
        _nonempty(t.shape[0], "routereval_metrics (prompts with every LLM observed)")
    picks = _argmax(s, tie_rank)
    mu = float(np.nanmean(picked_scores(picks, t)))
    ref = _reference_value(reference, None)
    col_means = np.nanmean(t, axis=0)
    best = float(np.nanmax(col_means))
    if probs is not None:
        P = np.asarray(probs, dtype=np.float64)
        if P.shape != t.shape:
            raise DataFormatError(f"probs has shape {P.shape}, truth {t.shape}")
        ep = float(entropy_bits(P).mean())
    else:
        ep = float(softmax_entropy_bits(s).mean())
    return {"mu": mu, "vr": mu / ref if ref else float("nan"),
            "vb": mu / best if best > 0 else float("nan"), "ep": ep,
            "n_prompts": int(t.shape[0]), "n_excluded": n_excl}


def oracle_mix_metrics(truth, p: float, n_draws: int = 1000, seed: int = 0,
                       reference=None) -> dict[str, float]:
    """RouterEval's r_o(p): the oracle's pick with probability p, else a uniform random LLM.

    mu is averaged over ``n_draws`` draws of the picks; Ep is the entropy of the
    mixture ``p * onehot(oracle) + (1 - p) / m``, averaged over prompts
    (p = 1 is the oracle, Ep 0; p = 0 is the random router, Ep log2 m).

    Examples
    --------
    >>> import numpy as np
    >>> m = oracle_mix_metrics(np.array([[1.0, 0.0]]), p=0.5, n_draws=2000, seed=0)
    >>> round(m["ep"], 4), abs(m["mu"] - 0.75) < 0.03
    (0.8113, True)
    """
    t = _truth(truth)
    _nonempty(t.shape[0], "oracle_mix_metrics")
    if not 0.0 <= p <= 1.0:
        raise ConfigError(f"p must be in [0, 1], got {p}")
    if n_draws < 1:
        raise ConfigError(f"n_draws must be >= 1, got {n_draws}")
    n, m = t.shape
    best = _argmax(np.where(np.isnan(t), -np.inf, t))
    rng = np.random.default_rng(seed)
    mus = np.empty(n_draws)
    rows = np.arange(n)
    for d in range(n_draws):
        picks = np.where(rng.random(n) < p, best, rng.integers(0, m, size=n))
        mus[d] = np.nanmean(t[rows, picks])
    mix = np.full((n, m), (1.0 - p) / m)
    mix[rows, best] += p
    mu = float(mus.mean())
    ref = _reference_value(reference, None)
    top = float(np.nanmax(np.nanmean(t, axis=0)))
    return {"mu": mu, "vr": mu / ref if ref else float("nan"),
            "vb": mu / top if top > 0 else float("nan"),
            "ep": float(entropy_bits(mix).mean()), "n_prompts": int(n)}


# ------------------------------------------------------- recommendation view
def success_matrix(truth, threshold: float = 0.5, relative: float | None = None) -> np.ndarray:
    """Boolean (n_prompts, n_llms): which LLMs succeed on each prompt.

    ``score >= threshold``, or with ``relative`` (e.g. 0.95, RouterEval's TruthfulQA
    label) ``score >= relative * best score on the prompt`` (and best > 0).
    Unobserved cells never succeed.

    Examples
    --------
    >>> import numpy as np
    >>> success_matrix(np.array([[0.9, 0.5, np.nan]]), relative=0.95)
    array([[ True, False, False]])
    """
    t = _truth(truth)
    with np.errstate(invalid="ignore"):
        if relative is not None:
            if not 0 < relative <= 1:
                raise ConfigError(f"relative must be in (0, 1], got {relative}")
            best = np.nanmax(np.where(np.isnan(t), -np.inf, t), axis=1, keepdims=True) \
                if t.shape[1] else np.zeros((t.shape[0], 1))
            return (t >= relative * best) & (best > 0) & ~np.isnan(t)
        return (t >= threshold) & ~np.isnan(t)


def _ranked(pred_scores, t: np.ndarray, k: int | None) -> np.ndarray:
    s = _scores(pred_scores, t)
    kk = t.shape[1] if k is None else k
    return topk_scores(s.astype(np.float32), kk)[0]


def _solvable_mean(vals: np.ndarray, solvable: np.ndarray) -> float:
    if not solvable.any():
        return float("nan")
    return float(vals[solvable].mean())


def hits_per_prompt(pred_scores, truth, k: int = 1, threshold: float = 0.5,
                    relative: float | None = None) -> np.ndarray:
    """Per prompt: 1.0 when its top-k holds a successful LLM, 0.0 if not, NaN when no
    LLM succeeds on it (for bootstrap CIs of Hit@k).

    Examples
    --------
    >>> import numpy as np
    >>> hits_per_prompt(np.array([[0.9, 0.1], [0.9, 0.1]]), np.array([[1.0, 0], [0, 0]]))
    array([ 1., nan])
    """
    t = _truth(truth)
    S = success_matrix(t, threshold, relative)
    top = _ranked(pred_scores, t, k)
    hits = np.take_along_axis(S, top, axis=1).any(axis=1).astype(float)
    return np.where(S.any(axis=1), hits, np.nan)


def hit_at_k(pred_scores, truth, k: int = 1, threshold: float = 0.5,
             relative: float | None = None) -> float:
    """Share of prompts whose top-k contains at least one successful LLM.

    Averaged over prompts where some LLM succeeds (the oracle scores 1.0).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    >>> hit_at_k(np.array([[0.1, 0.9, 0.5], [0.1, 0.9, 0.5]]), truth, k=2)
    0.5
    """
    h = hits_per_prompt(pred_scores, truth, k, threshold, relative)
    return float(np.nanmean(h)) if np.isfinite(h).any() else float("nan")


def recall_at_k(pred_scores, truth, k: int = 1, threshold: float = 0.5,
                relative: float | None = None) -> float:
    """Mean share of a prompt's successful LLMs that appear in its top-k.

    Examples
    --------
    >>> import numpy as np
    >>> recall_at_k(np.array([[0.9, 0.5, 0.1]]), np.array([[1.0, 0.0, 1.0]]), k=2)
    0.5
    """
    t = _truth(truth)
    S = success_matrix(t, threshold, relative)
    top = _ranked(pred_scores, t, k)
    n_rel = S.sum(axis=1)
    found = np.take_along_axis(S, top, axis=1).sum(axis=1)
    return _solvable_mean(found / np.maximum(n_rel, 1), n_rel > 0)


def ndcg_at_k(pred_scores, truth, k: int = 1, threshold: float = 0.5,
              relative: float | None = None, graded: bool = False) -> float:
    """NDCG@k with gain 1 for a successful LLM (or its true score with ``graded``).

    DCG = sum_i gain_i / log2(i + 1) over ranks i = 1..k; divided by the ideal DCG;
    averaged over prompts whose ideal DCG is positive.

    Examples
    --------
    >>> import numpy as np
    >>> round(ndcg_at_k(np.array([[0.9, 0.5, 0.1]]), np.array([[0.0, 1.0, 1.0]]), k=2), 4)
    0.3869
    """
    t = _truth(truth)
    if graded:
        G = np.where(np.isnan(t), 0.0, np.clip(t, 0.0, None))
    else:
        G = success_matrix(t, threshold, relative).astype(float)
    top = _ranked(pred_scores, t, k)
    kk = top.shape[1]
    disc = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = (np.take_along_axis(G, top, axis=1) * disc).sum(axis=1)
    ideal = (-np.sort(-G, axis=1)[:, :kk] * disc).sum(axis=1)
    return _solvable_mean(dcg / np.where(ideal > 0, ideal, 1.0), ideal > 0)


def mrr(pred_scores, truth, threshold: float = 0.5, relative: float | None = None) -> float:
    """Mean reciprocal rank of the first successful LLM in the full ranking.

    Examples
    --------
    >>> import numpy as np
    >>> mrr(np.array([[0.9, 0.5, 0.1], [0.9, 0.5, 0.1]]), np.array([[0, 0, 1.0], [1.0, 0, 0]]))
    0.6666666666666666
    """
    t = _truth(truth)
    S = success_matrix(t, threshold, relative)
    top = _ranked(pred_scores, t, None)
    ranked = np.take_along_axis(S, top, axis=1)
    first = np.argmax(ranked, axis=1)
    solvable = ranked.any(axis=1)
    return _solvable_mean(1.0 / (first + 1.0), solvable)


def selection_share(picks, n_llms: int) -> np.ndarray:
    """Share of prompts routed to each LLM.

    Examples
    --------
    >>> selection_share([0, 2, 2, 2], 3)
    array([0.25, 0.  , 0.75])
    """
    p = np.asarray(picks, dtype=np.int64)
    if p.size and (p.min() < 0 or p.max() >= n_llms):
        raise UnknownIdError(f"pick out of range 0..{n_llms - 1}")
    if p.size == 0:
        return np.zeros(n_llms)
    return np.bincount(p, minlength=n_llms) / p.size


# ------------------------------------------------------------- cascade view
def _cost_matrix(costs, shape) -> np.ndarray:
    c = np.asarray(costs, dtype=np.float64)
    if c.ndim == 1:
        if c.shape[0] != shape[1]:
            raise DataFormatError(f"per-LLM costs have length {c.shape[0]}, expected "
                                  f"{shape[1]} (one per LLM)")
        c = np.broadcast_to(c, shape)
    elif c.shape != tuple(shape):
        raise DataFormatError(f"costs have shape {c.shape}; give one per LLM ({shape[1]},) "
                              f"or one per record {tuple(shape)}")
    if np.isnan(c).any():
        raise DataFormatError("costs contain NaN; every LLM that can be picked needs a cost")
    return c


def cascade_metrics(pred_scores, truth, k: int = 3, costs=None, threshold: float = 0.5,
                    relative: float | None = None) -> dict[str, float]:
    """Try each prompt's top-k LLMs in order until one succeeds.

    Returns ``success_rate`` (share of all prompts solved within k calls),
    ``mean_calls`` (calls per prompt: position of the first success, else k) and,
    with ``costs`` (per LLM, shape (n_llms,), or per record, (n_prompts, n_llms)),
    ``mean_cost`` (summed cost of the calls made, per prompt).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[0.0, 1.0], [0.0, 0.0]])
    >>> cascade_metrics(np.array([[1.0, 0.0], [1.0, 0.0]]), truth, k=2, costs=[1.0, 3.0])
    {'success_rate': 0.5, 'mean_calls': 2.0, 'mean_cost': 4.0}
    """
    t = _truth(truth)
    _nonempty(t.shape[0], "cascade_metrics")
    S = success_matrix(t, threshold, relative)
    top = _ranked(pred_scores, t, k)
    kk = top.shape[1]
    ok = np.take_along_axis(S, top, axis=1)
    solved = ok.any(axis=1)
    calls = np.where(solved, np.argmax(ok, axis=1) + 1, kk)
    out = {"success_rate": float(solved.mean()), "mean_calls": float(calls.mean())}
    if costs is not None:
        C = np.take_along_axis(_cost_matrix(costs, t.shape), top, axis=1)
        used = np.arange(kk)[None, :] < calls[:, None]
        out["mean_cost"] = float((C * used).sum(axis=1).mean())
    return out


# ---------------------------------------------------------------- cost view
def quality_cost_curve(truth, costs, pred_scores=None, picks_fn: Callable | None = None,
                       lambdas: Sequence[float] | None = None) -> pd.DataFrame:
    """Quality and cost of the routed LLMs as the cost weight lambda varies.

    Either ``pred_scores`` (picks = argmax of ``pred - lambda * cost / max cost``) or
    ``picks_fn(lambda) -> picks``. Returns a DataFrame (lambda, cost, quality) with
    mean cost and mean true score of the picks.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1.0, 0.0], [1.0, 1.0]])
    >>> quality_cost_curve(truth, [10.0, 1.0], truth, lambdas=[0.0, 2.0]).to_dict("list")
    {'lambda': [0.0, 2.0], 'cost': [10.0, 1.0], 'quality': [1.0, 0.5]}
    """
    t = _truth(truth)
    _nonempty(t.shape[0], "quality_cost_curve")
    C = _cost_matrix(costs, t.shape)
    if (pred_scores is None) == (picks_fn is None):
        raise ConfigError("give exactly one of pred_scores or picks_fn")
    if lambdas is None:
        lambdas = np.r_[0.0, np.logspace(-3, 3, 31)]
    scale = float(C.max()) or 1.0
    s = None if pred_scores is None else _scores(pred_scores, t)
    rows = np.arange(t.shape[0])
    out = []
    for lam in lambdas:
        if s is not None:
            picks = _argmax(s - float(lam) * C / scale)
        else:
            picks = _picks(picks_fn(float(lam)), t)
        out.append((float(lam), float(C[rows, picks].mean()),
                    float(np.nanmean(t[rows, picks]))))
    return pd.DataFrame(out, columns=["lambda", "cost", "quality"])


def _upper_hull(pts: np.ndarray) -> np.ndarray:
    # Andrew's monotone chain, upper part, points sorted by (cost, quality)
    hull: list[tuple[float, float]] = []
    for x, y in pts:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) >= 0:  # not a right turn
                hull.pop()
            else:
                break
        hull.append((x, y))
    return np.asarray(hull)


def aiq(costs, qualities, cost_range: tuple[float, float] | None = None) -> float:
    """RouterBench's AIQ: area under the non-decreasing convex hull of (cost, quality).

    The points' upper convex hull is taken, kept non-decreasing (flat after its
    best point), and integrated over ``cost_range`` (default: the points' min and max
    cost), divided by the range's width, i.e. the cost axis is normalised to [0, 1].
    Below the cheapest point quality is 0 (nothing is reachable that cheaply); above
    the hull's best point it stays flat.

    Examples
    --------
    >>> round(aiq([0.0, 0.5, 0.6, 1.0], [0.2, 0.3, 0.8, 0.9]), 6)
    0.64
    """
    c = np.asarray(costs, dtype=np.float64).ravel()
    q = np.asarray(qualities, dtype=np.float64).ravel()
    if c.shape != q.shape or c.size == 0:
        raise DataFormatError("costs and qualities must be non-empty and of equal length")
    keep = ~(np.isnan(c) | np.isnan(q))
    c, q = c[keep], q[keep]
    if c.size == 0:
        raise DataFormatError("every (cost, quality) point has a NaN")
    lo, hi = (float(c.min()), float(c.max())) if cost_range is None else map(float, cost_range)
    if hi <= lo:
        return float(q.max())
    order = np.lexsort((q, c))
    hull = _upper_hull(np.column_stack([c[order], q[order]]))
    top = int(np.argmax(hull[:, 1]))
    hull = hull[:top + 1]
    x0 = max(lo, float(hull[0, 0]))  # below the cheapest point nothing is reachable
    if x0 >= hi:
        return 0.0
    inner = hull[:, 0][(hull[:, 0] > x0) & (hull[:, 0] < hi)]
    xs = np.r_[x0, inner, hi]
    ys = np.interp(xs, hull[:, 0], hull[:, 1], right=hull[-1, 1])
    return float(np.trapezoid(ys, xs) / (hi - lo))


def apgr(strong_scores, strong_truth, weak_truth, fractions: Sequence[float] | None = None
         ) -> dict:
    """RouteLLM's strong/weak view: APGR and the call share needed for 50% / 80% of the gap.

    Prompts are sent to the strong LLM in order of ``strong_scores`` (the router's
    preference for the strong LLM, descending; ties by prompt position). With a
    share f of strong calls, quality(f) is the mean true score; PGR(f) =
    (quality(f) - weak mean) / (strong mean - weak mean). APGR is the mean PGR over
    ``fractions`` (default 0.1, 0.2, ..., 1.0: RouteLLM's 10 equal intervals);
    CPT(x) is the smallest share of strong calls with PGR >= x (exact over all
    prompt counts).

    Examples
    --------
    >>> r = apgr([0.9, 0.1, 0.5, 0.8], [1, 1, 0, 1], [0, 1, 0, 0])
    >>> r["apgr"], r["cpt50"], r["cpt80"]
    (0.8, 0.25, 0.5)
    """
    s = np.asarray(strong_scores, dtype=np.float64).ravel()
    st = np.asarray(strong_truth, dtype=np.float64).ravel()
    wk = np.asarray(weak_truth, dtype=np.float64).ravel()
    if not (s.shape == st.shape == wk.shape) or s.size == 0:
        raise DataFormatError("strong_scores, strong_truth and weak_truth must be non-empty "
                              "and one value per prompt")
    if np.isnan(st).any() or np.isnan(wk).any():
        raise DataFormatError("strong_truth / weak_truth contain NaN; APGR needs both LLMs "
                              "observed on every prompt (select those prompts first)")
    n = s.size
    gap = st.mean() - wk.mean()
    if gap <= 0:
        raise DataFormatError(f"the 'strong' LLM is not better than the weak one on these "
                              f"prompts (gap {gap:.4g}); swap them")
    order = np.argsort(-np.where(np.isnan(s), -np.inf, s), kind="stable")
    gain = np.r_[0.0, np.cumsum((st - wk)[order])]          # k strong calls -> gain
    pgr_k = (gain / n) / gap                                   # PGR with k strong calls
    frac = np.arange(n + 1) / n
    fr = np.arange(1, 11) / 10 if fractions is None else np.asarray(fractions, float)
    ks = np.floor(fr * n + 0.5).astype(int).clip(0, n)

    def cpt(x):
        idx = np.flatnonzero(pgr_k >= x - 1e-12)
        return float(frac[idx[0]]) if idx.size else float("nan")

    return {"apgr": float(pgr_k[ks].mean()), "cpt50": cpt(0.5), "cpt80": cpt(0.8),
            "strong_mean": float(st.mean()), "weak_mean": float(wk.mean()),
            "curve": pd.DataFrame({"strong_share": frac, "pgr": pgr_k})}


# ----------------------------------------------------------------- confidence
def bootstrap_ci(values_per_prompt, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 truth=None) -> dict[str, float]:
    """Percentile bootstrap CI over prompts, for mu or (with ``truth``) for Vb.

    Prompts are resampled with replacement. Without ``truth`` the statistic is the
    mean of ``values_per_prompt`` (mu); with ``truth`` (n_prompts, n_llms) it is
    that mean divided by the best column mean of ``truth`` on the same resample (Vb).
    NaN values are left out of the means.

    Returns ``{"estimate", "low", "high"}``.

    Examples
    --------
    >>> ci = bootstrap_ci([1.0, 0.0, 1.0, 1.0], n_boot=200, seed=0)
    >>> ci["estimate"], ci["low"] <= 0.75 <= ci["high"]
    (0.75, True)
    """
    v = np.asarray(values_per_prompt, dtype=np.float64).ravel()
    _nonempty(v.size, "bootstrap_ci")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot}")
    T = None
    if truth is not None:
        T = _truth(truth)
        if T.shape[0] != v.size:
            raise DataFormatError(f"truth has {T.shape[0]} prompts, values {v.size}")

    def stat(idx, axis=-1):
        idx = np.asarray(idx, dtype=np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mu = np.nanmean(v[idx], axis=-1)
                if T is None:
                    return mu
                best = np.nanmax(np.nanmean(T[idx], axis=-2), axis=-1)
                return mu / best

    est = float(stat(np.arange(v.size)))
    if v.size == 1:
        return {"estimate": est, "low": est, "high": est}
    res = stats.bootstrap((np.arange(v.size),), stat, n_resamples=n_boot,
                          confidence_level=1 - alpha, method="percentile", vectorized=True,
                          rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"estimate": est, "low": float(lo), "high": float(hi)}


def paired_test(a_per_prompt, b_per_prompt, n_resamples: int = 10000, seed: int = 0
                ) -> dict[str, float]:
    """Paired permutation test of "A beats B" on the same prompts.

    Under the null, A's and B's score on each prompt are exchangeable (random sign
    flips of the per-prompt differences); the p-value is one-sided, for a mean
    difference at least as large as the one observed (exact when 2^n is small).

    Examples
    --------
    >>> r = paired_test([1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0])
    >>> r["mean_diff"], r["p_value"]
    (1.0, 0.015625)
    """
    a = np.asarray(a_per_prompt, dtype=np.float64).ravel()
    b = np.asarray(b_per_prompt, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataFormatError(f"paired_test needs one value per prompt for both: "
                              f"{a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    _nonempty(a.size, "paired_test")
    d = float((a - b).mean())
    if np.all(a == b):
        return {"mean_diff": 0.0, "p_value": 1.0, "n": int(a.size)}
    res = stats.permutation_test((a, b), lambda x, y, axis=-1: np.mean(x - y, axis=axis),
                                 permutation_type="samples", alternative="greater",
                                 n_resamples=n_resamples, vectorized=True,
                                 rng=np.random.default_rng(seed))
    return {"mean_diff": d, "p_value": float(res.pvalue), "n": int(a.size)}


def paired_bootstrap_diff(a_per_prompt, b_per_prompt, n_boot: int = 2000, alpha: float = 0.05,
                          seed: int = 0) -> dict[str, float]:
    """Paired percentile bootstrap of mean(A) - mean(B) over the same prompts.

    Prompts are resampled with replacement (the same resample for A and B). The
    difference is *significant* when the ``1 - alpha`` interval excludes 0.

    Returns ``{"diff", "low", "high", "significant", "n"}``.

    Examples
    --------
    >>> r = paired_bootstrap_diff([1.0] * 50, [0.0] * 50, n_boot=200)
    >>> r["diff"], r["significant"]
    (1.0, True)
    """
    a = np.asarray(a_per_prompt, dtype=np.float64).ravel()
    b = np.asarray(b_per_prompt, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise DataFormatError(f"paired_bootstrap_diff needs one value per prompt for both: "
                              f"{a.size} vs {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    d = (a - b)[keep]
    _nonempty(d.size, "paired_bootstrap_diff")
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for s in range(0, n_boot, 256):  # bounded memory
        idx = rng.integers(0, d.size, size=(min(256, n_boot - s), d.size))
        means[s:s + len(idx)] = d[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return {"diff": float(d.mean()), "low": float(lo), "high": float(hi),
            "significant": bool(lo > 0 or hi < 0), "n": int(d.size)}
def iso_quality_cost(truth, costs, pred_scores=None, target: float | None = None,
                     lambdas: Sequence[float] | None = None,
                     picks_fn: Callable | None = None) -> dict[str, float]:
    """The cheapest point of a router's quality-cost curve that matches a target quality.

    The router trades quality for cost (picks = argmax of ``pred - lambda * cost /
    max cost`` over a lambda grid, or ``picks_fn(lambda)``, as in
    :func:`quality_cost_curve`); the iso-quality
    cost is the lowest mean cost among the points whose quality (mean true score)
    is at least ``target``, by default the best single LLM's (the LLM with the best
    mean on ``truth``). It is reported as a fraction of that LLM's mean cost: 0.5
    means "the same quality for half the price"; NaN when no point reaches it.

    Returns
    -------
    dict
        ``target``, ``best_single_cost``, ``iso_cost`` and ``fraction``.

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    >>> r = iso_quality_cost(truth, [1.0, 10.0], truth)
    >>> r["target"], r["fraction"]
    (0.75, 0.325)
    """
    t = _truth(truth)
    _nonempty(t.shape[0], "iso_quality_cost")
    C = _cost_matrix(costs, t.shape)
    means = np.nanmean(t, axis=0)
    best = int(np.nanargmax(means))
    target = float(means[best]) if target is None else float(target)
    base_cost = float(np.nanmean(C[:, best]))
    if lambdas is None:
        lambdas = np.r_[0.0, np.logspace(-4, 3, 71)]
    curve = quality_cost_curve(t, costs, pred_scores=pred_scores, picks_fn=picks_fn,
                               lambdas=lambdas)
    ok = curve["quality"].to_numpy() >= target - 1e-12
    iso = float(curve["cost"].to_numpy()[ok].min()) if ok.any() else float("nan")
    return {"target": target, "best_single_cost": base_cost, "iso_cost": iso,
            "fraction": iso / base_cost if base_cost > 0 else float("nan")}
