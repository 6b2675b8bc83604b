"""Off-policy evaluation: a candidate policy's mean score, from logged decisions alone.

A deployed router logs, per prompt, the LLM its policy chose, the probability of that
choice (the propensity) and, sometimes, the outcome. The estimators here answer "what
mean score would another policy have had on the same prompts?" without deploying it:

* IPS (inverse propensity scoring): mean of ``w * r`` with ``w = pi(a|x) / mu(a|x)``.
  Unbiased when the logging policy gives every LLM the candidate may pick a positive
  probability (support).
* SNIPS (self-normalised IPS): ``sum(w r) / sum(w)``; slightly biased, lower variance.
* DM (direct method): mean over prompts of ``sum_a pi(a|x) q(x, a)`` for a reward
  model ``q``; as good as ``q``.
* DR (doubly robust): DM plus the IPS-weighted residual ``w (r - q(x, a))``; unbiased
  when either the propensities or ``q`` are right, exact when ``q`` is exact.

Each estimate comes with a percentile bootstrap interval over decisions and the
effective sample size ``(sum w)^2 / sum w^2`` of the importance weights. Plain
functions of arrays (as Open Bandit Pipeline keeps estimators apart from policies);
:func:`evaluate_logs` drives them from a decision table and a router.
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

from ..errors import ConfigError, DataFormatError

__all__ = ["ESTIMATORS", "ope_estimate", "effective_sample_size", "unsupported_mass",
           "fit_reward_model", "logging_probabilities", "evaluate_logs", "SupportWarning"]

ESTIMATORS = ("ips", "snips", "dm", "dr")


class SupportWarning(UserWarning):
    """The logging policy never (or too rarely) chose what the new policy would choose."""


def effective_sample_size(w) -> float:
    """Kish's effective sample size of importance weights, ``(sum w)^2 / sum w^2``.

    Examples
    --------
    >>> effective_sample_size([1.0, 1.0, 1.0, 1.0])
    4.0
    >>> effective_sample_size([4.0, 0.0, 0.0, 0.0])
    1.0
    """
    w = np.asarray(w, dtype=np.float64)
    s2 = float(np.sum(w * w))
    return float(np.sum(w) ** 2 / s2) if s2 > 0 else 0.0


def _check(chosen, propensity, reward, target):
    P = np.asarray(target, dtype=np.float64)
    if P.ndim != 2:
        raise ConfigError(f"target probabilities must be (n, m), got shape {P.shape}")
    n = P.shape[0]
    a = np.asarray(chosen, dtype=np.int64)
    p = np.asarray(propensity, dtype=np.float64)
    r = np.asarray(reward, dtype=np.float64)
    if not (a.shape == p.shape == r.shape == (n,)):
        raise DataFormatError(f"chosen {a.shape}, propensity {p.shape}, reward {r.shape} and "
                              f"target {P.shape} disagree on the number of decisions")
    if n == 0:
        raise DataFormatError("no logged decisions with an outcome to evaluate on")
    if a.min() < 0 or a.max() >= P.shape[1]:
        raise DataFormatError("chosen index out of range of the target's columns")
    if not (np.all(p > 0) and np.all(p <= 1)):
        raise DataFormatError("propensities must be in (0, 1]")
    if not np.all(np.isfinite(r)):
        raise DataFormatError("rewards must be finite (drop decisions without an outcome)")
    return a, p, r, P


def _bootstrap_counts(n: int, n_boot: int, rng, chunk: int = 64):
    """Multinomial resampling counts, (chunk, n) blocks of a total of n_boot replicates."""
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        flat = (np.arange(b)[:, None] * n + idx).ravel()
        counts = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)
        done += b
        yield counts


def ope_estimate(chosen, propensity, reward, target, reward_model=None,
                 estimators: Sequence[str] = ESTIMATORS, n_boot: int = 500,
                 level: float = 0.9, clip: float | None = None, seed: int = 0) -> dict:
    """IPS, SNIPS, DM and DR estimates of a target policy's mean reward.

    Parameters
    ----------
    chosen : ndarray of int, shape (n,)
        Column of the LLM the logging policy chose.
    propensity : ndarray, shape (n,)
        Probability the logging policy gave that choice.
    reward : ndarray, shape (n,)
        Observed outcome of the choice.
    target : ndarray, shape (n, m)
        The target policy's choice probabilities on the same prompts.
    reward_model : ndarray, shape (n, m), optional
        Predicted reward of every LLM on every prompt (needed by DM and DR).
    estimators : sequence of {"ips", "snips", "dm", "dr"}
    n_boot : int
        Bootstrap replicates (resampling decisions) for the intervals.
    level : float
        Confidence level of the percentile intervals.
    clip : float, optional
        Cap on the importance weights (lowers variance, adds bias).
    seed : int

    Returns
    -------
    dict
        ``{name: {"estimate", "low", "high", "ess"}}`` per estimator, plus ``"n"``
        and ``"ess"`` (effective sample size of the weights).

    Examples
    --------
    >>> import numpy as np
    >>> chosen = np.array([0, 1, 0, 1]); prop = np.full(4, 0.5)
    >>> reward = np.array([1.0, 0.0, 1.0, 0.0])
    >>> target = np.tile([1.0, 0.0], (4, 1))            # always LLM 0
    >>> q = np.tile([1.0, 0.0], (4, 1))                 # an exact reward model
    >>> res = ope_estimate(chosen, prop, reward, target, q, n_boot=50)
    >>> res["ips"]["estimate"], res["dr"]["estimate"], res["ess"]
    (1.0, 1.0, 2.0)
    """
    a, p, r, P = _check(chosen, propensity, reward, target)
    n = len(a)
    est = [e.lower() for e in estimators]
    bad = [e for e in est if e not in ESTIMATORS]
    if bad:
        raise ConfigError(f"unknown estimator(s) {bad}; choose from {', '.join(ESTIMATORS)}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise ConfigError(f"n_boot must be >= 2, got {n_boot}")
    rows = np.arange(n)
    w = P[rows, a] / p
    if clip is not None:
        w = np.minimum(w, float(clip))
    terms = {}
    if "ips" in est or "snips" in est:
        terms["ips"] = w * r
    if "dm" in est or "dr" in est:
        if reward_model is None:
            raise ConfigError("DM and DR need a reward model (n, m); pass reward_model= or "
                              "estimators=('ips', 'snips')")
        Q = np.asarray(reward_model, dtype=np.float64)
        if Q.shape != P.shape:
            raise DataFormatError(f"reward_model has shape {Q.shape}, target {P.shape}")
        dm = np.sum(P * np.nan_to_num(Q), axis=1)
        terms["dm"] = dm
        terms["dr"] = dm + w * (r - np.nan_to_num(Q[rows, a]))

    def value(name, cw):  # cw: (b, n) counts or None for the point estimate
        if name == "snips":
            num = terms["ips"] if cw is None else cw @ terms["ips"]
            den = w.sum() if cw is None else cw @ w
            with np.errstate(invalid="ignore", divide="ignore"):
                return np.sum(num) / den if cw is None else np.where(den > 0, num / den, np.nan)
        t = terms[name]
        return t.mean() if cw is None else (cw @ t) / n

    rng = np.random.default_rng(seed)
    boots = {e: [] for e in est}
    for counts in _bootstrap_counts(n, n_boot, rng):
        for e in est:
            boots[e].append(value(e, counts))
    q = (1 - level) / 2
    out = {"n": n, "ess": effective_sample_size(w), "level": level}
    for e in est:
        b = np.concatenate(boots[e])
        b = b[np.isfinite(b)]
        lo, hi = (np.quantile(b, [q, 1 - q]) if b.size else (np.nan, np.nan))
        out[e] = {"estimate": float(value(e, None)), "low": float(lo), "high": float(hi),
                  "ess": float(n) if e == "dm" else out["ess"]}
    return out


def logging_probabilities(table, llm_names: Sequence[str], arrays: dict) -> np.ndarray | None:
    """Rebuild the logging policy's distribution over candidates from the logged scores and
    policy spec, or None when some row cannot be rebuilt (unknown policy, no scores).

    Rows whose rebuilt propensity of the chosen LLM disagrees with the logged one by
    more than 1e-3 make the whole rebuild untrusted (None).
    """
    from ..policies import make_policy
    from ..errors import LLMRecError
    if "policy" not in table or "scores" not in table:
        return None
    S = arrays["logged_scores"]
    M = arrays["mask"]
    rows = arrays["rows"]
    pol_col = table["policy"].to_numpy()[rows]
    out = np.zeros(S.shape)
    for spec in set(map(str, pol_col)):
        sel = np.flatnonzero(pol_col.astype(str) == spec)
        try:
            pol = make_policy(spec)
        except LLMRecError:
            return None
        Ssel = np.where(M[sel], S[sel], -np.inf)
        if np.isnan(S[sel][M[sel]]).any():
            return None
        out[sel] = pol.probabilities(Ssel, M[sel])
    rebuilt = out[np.arange(len(rows)), arrays["chosen"]]
    if np.max(np.abs(rebuilt - arrays["propensity"])) > 1e-3:
        return None
    return out


def unsupported_mass(target, propensity, chosen, mask, logging=None) -> float:
    """Mean probability the target puts on LLMs the logging policy could not choose.

    With the logging distribution (``logging``, (n, m)) this is exact; without it, a
    row with propensity 1 (a deterministic logger) supports only its chosen LLM and
    other rows are assumed to support every candidate (a lower bound).

    Examples
    --------
    >>> import numpy as np
    >>> unsupported_mass(np.array([[0.0, 1.0]]), np.array([1.0]), np.array([0]),
    ...                  np.ones((1, 2), bool))
    1.0
    """
    P = np.asarray(target, dtype=np.float64)
    M = np.asarray(mask, dtype=bool)
    if logging is not None:
        support = np.asarray(logging) > 0
    else:
        support = M.copy()
        det = np.asarray(propensity) >= 1.0 - 1e-12
        support[det] = False
        support[np.flatnonzero(det), np.asarray(chosen)[det]] = True
    return float(np.mean(np.sum(np.where(support, 0.0, P), axis=1)))


def fit_reward_model(X, chosen, reward, n_llms: int, alpha: float = 1.0, folds: int = 2,
                     seed: int = 0) -> np.ndarray:
    """Cross-fitted per-LLM ridge regression of the outcome on prompt features.

    Each decision's predictions come from a model fitted on the other folds, so the
    DR correction is not fitted to its own noise. An LLM with too few logged choices
    in the training folds (under 2) is predicted by the mean outcome of those folds.

    Returns
    -------
    ndarray, shape (n, n_llms)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(200, 3)); a = rng.integers(0, 2, 200)
    >>> r = np.where(a == 0, X[:, 0], -X[:, 0])
    >>> Q = fit_reward_model(X, a, r, 2)
    >>> bool(np.corrcoef(Q[:, 0], X[:, 0])[0, 1] > 0.99)
    True
    """
    X = np.asarray(X, dtype=np.float64)
    a = np.asarray(chosen, dtype=np.int64)
    r = np.asarray(reward, dtype=np.float64)
    n = len(a)
    if folds < 2 or n < 2 * folds:
        folds = 1
    fold = np.random.default_rng(seed).permutation(n) % folds
    Q = np.zeros((n, n_llms))
    Xb = np.hstack([X, np.ones((n, 1))])
    pen = alpha * np.eye(Xb.shape[1])
    pen[-1, -1] = 0.0  # no penalty on the intercept
    for f in range(folds):
        test = fold == f
        train = ~test if folds > 1 else test
        base = float(r[train].mean())
        for j in range(n_llms):
            sel = train & (a == j)
            if sel.sum() < 2:
                Q[test, j] = base
                continue
            A = Xb[sel].T @ Xb[sel] + pen
            coef = np.linalg.solve(A, Xb[sel].T @ r[sel])
            Q[test, j] = Xb[test] @ coef
    return Q


def evaluate_logs(table, router, policy="greedy", estimators: Sequence[str] = ESTIMATORS,
                  n_boot: int = 500, level: float = 0.9, clip: float | None = None,
                  reward_alpha: float = 1.0, seed: int = 0, support_tol: float = 0.01,
                  reward_router=None) -> dict:
    """Off-policy estimates of ``policy`` over ``router``'s scores from a decision table.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`llmrec.data.read_decisions`; decisions without an outcome are
        left out; prompts need their ``text`` (logged by default).
    router : Router
        The fitted candidate router (it must know every logged candidate LLM).
    policy : str or Policy
        How the candidate would choose (default greedy).
    reward_router : Router, optional
        The reward model of DM and DR: a fitted router whose predicted scores estimate
        every LLM's outcome (e.g. the deployed model, fitted on full information);
        default: a per-LLM ridge cross-fitted on the logged outcomes
        (:func:`fit_reward_model`).

    Returns
    -------
    dict
        :func:`ope_estimate`'s result plus ``"unsupported_mass"``, ``"logged_mean"``
        (mean outcome of the logging policy), ``"support_checked"`` ("exact" when the
        logging distribution was rebuilt, else "propensity-1 rows only") and
        ``"warnings"`` (also issued as :class:`SupportWarning`).

    Examples
    --------
    >>> import pandas as pd
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> r = make_router("linear").fit(make_synthetic(60, 3, seed=0))
    >>> t = pd.DataFrame({"text": ["a b", "c d", "e f"], "candidates": [r.llm_names_] * 3,
    ...                   "chosen": r.llm_names_, "propensity": [1 / 3] * 3,
    ...                   "outcome": [1.0, 0.0, 1.0]})
    >>> res = evaluate_logs(t, r, estimators=("ips", "snips"), n_boot=20)
    >>> res["n"]
    3
    """
    from ..data.decisions import decisions_to_arrays
    from ..policies import make_policy
    pol = make_policy(policy)
    if "outcome" not in table:
        raise DataFormatError("the decision table has no 'outcome' column; read it with "
                              "llmrec.data.read_decisions")
    arrays = decisions_to_arrays(table, router.llm_names_, require_outcome=True)
    if len(arrays["rows"]) == 0:
        raise DataFormatError("no logged decision has an outcome yet; post feedback by "
                              "decision_id first")
    texts = table["text"].to_numpy()[arrays["rows"]] if "text" in table else None
    if texts is None or any(not isinstance(t, str) or not t for t in texts):
        raise DataFormatError("some decisions lack the prompt 'text' (text logging was off); "
                              "off-policy evaluation must score the prompts with the new model")
    texts = list(texts)
    X = router.features(texts)
    S = router.score(X if X is not None else texts)
    P = pol.probabilities(S, arrays["mask"])
    Q = None
    est = [e.lower() for e in estimators]
    if ("dm" in est or "dr" in est) and reward_router is not None:
        missing = [n for n in router.llm_names_ if n not in set(reward_router.llm_names_)]
        if missing:
            raise DataFormatError(f"the reward model lacks LLM(s) {missing[:5]}")
        cols = [reward_router.llm_names_.index(n) for n in router.llm_names_]
        Q = np.asarray(reward_router.score(texts), dtype=np.float64)[:, cols]
        Q = np.where(np.isfinite(Q), Q, float(arrays["reward"].mean()))
    elif "dm" in est or "dr" in est:
        feats = X if X is not None else S
        Q = fit_reward_model(feats, arrays["chosen"], arrays["reward"], len(router.llm_names_),
                             alpha=reward_alpha, seed=seed)
    res = ope_estimate(arrays["chosen"], arrays["propensity"], arrays["reward"], P, Q,
                       est, n_boot=n_boot, level=level, clip=clip, seed=seed)
    logging = logging_probabilities(table, router.llm_names_, arrays)
    um = unsupported_mass(P, arrays["propensity"], arrays["chosen"], arrays["mask"], logging)
    res.update(unsupported_mass=um, logged_mean=float(arrays["reward"].mean()),
               support_checked="exact" if logging is not None else "propensity-1 rows only",
               policy=getattr(pol, "spec", str(policy)), warnings=[])
    if um > support_tol:
        msg = (f"the logging policy does not cover the new policy: {um:.1%} of its choice "
               "probability falls on LLMs the logger could not have chosen; IPS/SNIPS/DR "
               "are biased low there (log with exploration, e.g. --policy "
               "epsilon-greedy:eps=0.1)")
        res["warnings"].append(msg)
        warnings.warn(msg, SupportWarning, stacklevel=2)
    if res["ess"] < 0.05 * res["n"]:
        msg = (f"effective sample size {res['ess']:.0f} of {res['n']} decisions: the "
               "estimates rest on few decisions; trust the intervals, not the points")
        res["warnings"].append(msg)
        warnings.warn(msg, SupportWarning, stacklevel=2)
    return res
