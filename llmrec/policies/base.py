"""Policies: turn a router's scores into a choice and the probability of that choice.

Routers predict; policies decide. A policy maps a score matrix (prompts x LLMs) to a
distribution over the allowed LLMs of each prompt (:meth:`Policy.probabilities`) and
draws one LLM per prompt from it (:meth:`Policy.choose`), returning the propensity of
the draw, which off-policy evaluation (:mod:`llmrec.evaluation.ope`) and learning
from logged decisions need. Exact score ties are split evenly, so a choice never
depends on the order of the LLM columns. NaN and ``-inf`` scores are the lowest.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

__all__ = ["Policy", "GreedyPolicy", "EpsilonGreedyPolicy", "SoftmaxPolicy", "UCBPolicy",
           "ThompsonPolicy", "POLICIES", "make_policy", "policy_spec"]

POLICIES: dict[str, type] = {}


def _register(cls):
    POLICIES[cls.key] = cls
    return cls


def _prepare(scores, mask) -> tuple[np.ndarray, np.ndarray]:
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim == 1:
        S = S[None, :]
    if S.ndim != 2 or S.shape[1] == 0:
        raise ConfigError(f"scores must be a 2-D (prompts x LLMs) array, got shape {S.shape}")
    if mask is None:
        M = np.ones(S.shape, dtype=bool)
    else:
        M = np.asarray(mask, dtype=bool)
        if M.ndim == 1:
            M = np.broadcast_to(M[None, :], S.shape)
        if M.shape != S.shape:
            raise ConfigError(f"mask has shape {M.shape}, scores {S.shape}")
        empty = np.flatnonzero(~M.any(axis=1))
        if len(empty):
            raise ConfigError(f"row {int(empty[0])} allows no LLM; the mask needs at least "
                              "one True per row")
    S = np.where(np.isnan(S), -np.inf, S)
    return S, M


def _argmax_uniform(S: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Uniform distribution over the allowed LLMs with the highest score of each row."""
    key = np.where(M, S, -np.inf)
    best = key.max(axis=1, keepdims=True)
    top = M & (key == best)  # all -inf rows: every allowed LLM ties
    return top / top.sum(axis=1, keepdims=True)


class Policy:
    """Base class: a rule from scores to a distribution over LLMs.

    Subclasses implement :meth:`probabilities`; :meth:`choose` samples from it.
    ``key`` (the registry name) plus the parameters give :attr:`spec`, the string
    logged with every decision and accepted back by :func:`make_policy`; ``name`` is
    the same spec, so a service that logs ``policy.name`` logs the parameters too.
    """

    key = "base"
    #: reads the router's score uncertainty (``std=``; routers with ``score_std``)
    needs_std = False

    def params(self) -> dict:
        return {}

    @property
    def spec(self) -> str:
        p = self.params()
        return self.key + (":" + ",".join(f"{k}={v:g}" for k, v in p.items()) if p else "")

    @property
    def name(self) -> str:
        return self.spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.params().items())})"

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        """Choice probabilities, shape (n, m); each row sums to 1 over allowed columns.

        ``std`` (n, m): the scores' standard deviations, read by policies with
        ``needs_std`` (UCB, Thompson) and ignored by the others."""
        raise NotImplementedError

    def choose(self, scores, mask=None, rng=None, std=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw one LLM per row.

        Parameters
        ----------
        scores : ndarray, shape (n, m)
        mask : ndarray of bool, shape (n, m) or (m,), optional
            Allowed LLMs (default: all).
        rng : numpy Generator or int, optional

        Returns
        -------
        chosen : ndarray of int64, shape (n,)
            Column index of the chosen LLM.
        propensity : ndarray of float64, shape (n,)
            Probability with which the policy chose it.

        Examples
        --------
        >>> import numpy as np
        >>> chosen, prop = make_policy("greedy").choose(np.array([[0.1, 0.9]]))
        >>> int(chosen[0]), float(prop[0])
        (1, 1.0)
        """
        P = self.probabilities(scores, mask, std=std) if std is not None else \
            self.probabilities(scores, mask)
        rng = np.random.default_rng(rng)
        u = rng.random(P.shape[0])
        cum = np.cumsum(P, axis=1)
        chosen = (cum < u[:, None] * cum[:, -1:]).sum(axis=1)
        # never land on a zero-probability column through rounding at the end
        chosen = np.minimum(chosen, P.shape[1] - 1)
        zero = P[np.arange(len(chosen)), chosen] <= 0
        if zero.any():
            chosen[zero] = np.argmax(P[zero], axis=1)
        return chosen.astype(np.int64), P[np.arange(len(chosen)), chosen]


@_register
class GreedyPolicy(Policy):
    """Top-1 of the scores (exact ties split evenly); propensity 1.0 without ties.

    Examples
    --------
    >>> import numpy as np
    >>> GreedyPolicy().probabilities(np.array([[0.2, 0.5, 0.5]]))
    array([[0. , 0.5, 0.5]])
    """

    key = "greedy"

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        S, M = _prepare(scores, mask)
        return _argmax_uniform(S, M)


@_register
class EpsilonGreedyPolicy(Policy):
    """With probability ``1 - eps`` the top LLM, otherwise a uniformly random allowed LLM.

    Parameters
    ----------
    eps : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> EpsilonGreedyPolicy(eps=0.2).probabilities(np.array([[0.1, 0.9]]))
    array([[0.1, 0.9]])
    """

    key = "epsilon-greedy"

    def __init__(self, eps: float = 0.1):
        eps = float(eps)
        if not 0.0 <= eps <= 1.0:
            raise ConfigError(f"epsilon-greedy: eps must be in [0, 1], got {eps}")
        self.eps = eps

    def params(self) -> dict:
        return {"eps": self.eps}

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        S, M = _prepare(scores, mask)
        uniform = M / M.sum(axis=1, keepdims=True)
        return (1.0 - self.eps) * _argmax_uniform(S, M) + self.eps * uniform


@_register
class SoftmaxPolicy(Policy):
    """Softmax of the scores divided by ``temperature`` over the allowed LLMs.

    ``-inf`` scores (an LLM the router knows nothing about) get probability 0 unless
    every allowed LLM is ``-inf``; then the choice is uniform. ``floor`` mixes in a
    uniform share so every allowed LLM keeps at least ``floor / m`` probability
    (keeps inverse-propensity weights bounded).

    Parameters
    ----------
    temperature : float > 0
    floor : float in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> SoftmaxPolicy(temperature=1.0).probabilities(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """

    key = "softmax"

    def __init__(self, temperature: float = 0.05, floor: float = 0.0):
        temperature, floor = float(temperature), float(floor)
        if not temperature > 0:
            raise ConfigError(f"softmax: temperature must be > 0, got {temperature}")
        if not 0.0 <= floor <= 1.0:
            raise ConfigError(f"softmax: floor must be in [0, 1], got {floor}")
        self.temperature = temperature
        self.floor = floor

    def params(self) -> dict:
        return {"temperature": self.temperature, **({"floor": self.floor} if self.floor else {})}

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        S, M = _prepare(scores, mask)
        key = np.where(M, S, -np.inf)
        best = key.max(axis=1, keepdims=True)
        dead = ~np.isfinite(best[:, 0])
        z = np.where(M & np.isfinite(key), (key - np.where(np.isfinite(best), best, 0.0))
                     / self.temperature, -np.inf)
        E = np.exp(z)
        E[dead] = M[dead]
        P = E / E.sum(axis=1, keepdims=True)
        if self.floor:
            P = (1.0 - self.floor) * P + self.floor * M / M.sum(axis=1, keepdims=True)
        return P


def _std(std, shape, who: str) -> np.ndarray:
    if std is None:
        from ..errors import CapabilityError
        raise CapabilityError(f"{who} needs the scores' uncertainty (std=...): use a router "
                              "with score_std, e.g. 'linear-bayes'")
    sd = np.asarray(std, dtype=np.float64)
    if sd.ndim == 1:
        sd = sd[None, :]
    if sd.shape != shape:
        raise ConfigError(f"std has shape {sd.shape}, scores {shape}")
    return np.where(np.isfinite(sd), np.maximum(sd, 0.0), 0.0)


@_register
class UCBPolicy(Policy):
    """LinUCB's rule: the top LLM by ``score + beta * std`` (optimism under uncertainty).

    Deterministic, so the propensity is 1 (ties split evenly); needs a router with
    ``score_std`` (``linear-bayes``).

    Examples
    --------
    >>> import numpy as np
    >>> UCBPolicy(beta=2.0).probabilities(np.array([[0.5, 0.4]]), std=np.array([[0.0, 0.1]]))
    array([[0., 1.]])
    """

    key = "ucb"
    needs_std = True

    def __init__(self, beta: float = 1.0):
        beta = float(beta)
        if beta < 0:
            raise ConfigError(f"ucb: beta must be >= 0, got {beta}")
        self.beta = beta

    def params(self) -> dict:
        return {"beta": self.beta}

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        S, M = _prepare(scores, mask)
        return _argmax_uniform(S + self.beta * _std(std, S.shape, "ucb"), M)


@_register
class ThompsonPolicy(Policy):
    """Thompson sampling on independent Gaussian posteriors ``N(score, (scale * std)^2)``.

    The probability that each LLM's draw is the largest is estimated from
    ``n_draws`` draws (one fixed stream, the same for every prompt, so a prompt's
    probabilities depend on its scores only),
    and :meth:`choose` samples from exactly those probabilities: the logged
    propensity is the one the choice was drawn with.

    Examples
    --------
    >>> import numpy as np
    >>> P = ThompsonPolicy().probabilities(np.array([[0.0, 0.0]]), std=np.array([[1.0, 1.0]]))
    >>> bool(abs(P[0, 0] - 0.5) < 0.05)
    True
    """

    key = "thompson"
    needs_std = True

    def __init__(self, scale: float = 1.0, n_draws: float = 1000):
        scale, n_draws = float(scale), int(n_draws)
        if scale < 0 or n_draws < 1:
            raise ConfigError("thompson: scale must be >= 0 and n_draws >= 1")
        self.scale = scale
        self.n_draws = n_draws

    def params(self) -> dict:
        return {"scale": self.scale}

    def probabilities(self, scores, mask=None, std=None) -> np.ndarray:
        S, M = _prepare(scores, mask)
        sd = self.scale * _std(std, S.shape, "thompson")
        n, m = S.shape
        # the same draws for every row: a row's probabilities depend on that row only
        Z = np.random.default_rng(20240229).standard_normal((self.n_draws, 1, m))
        P = np.zeros((n, m))
        base = np.where(M, np.where(np.isfinite(S), S, -1e30), -np.inf)
        for start in range(0, n, 256):
            b = slice(start, start + 256)
            draws = base[b][None] + Z * sd[b][None]
            win = np.argmax(draws, axis=2)  # (draws, rows)
            for r in range(win.shape[1]):
                P[start + r] = np.bincount(win[:, r], minlength=m)
        P = P / P.sum(axis=1, keepdims=True)
        return P


def make_policy(spec="greedy") -> Policy:
    """Build a policy from a spec string ``"name"`` or ``"name:key=value,key=value"``.

    A :class:`Policy` instance is returned unchanged; ``None`` means greedy.

    Examples
    --------
    >>> make_policy("epsilon-greedy:eps=0.1")
    EpsilonGreedyPolicy(eps=0.1)
    >>> make_policy("softmax:temperature=0.05").spec
    'softmax:temperature=0.05'
    """
    if spec is None:
        return GreedyPolicy()
    if isinstance(spec, Policy) or (hasattr(spec, "probabilities") and hasattr(spec, "choose")):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"policy spec must be a string such as 'epsilon-greedy:eps=0.1', "
                          f"got {spec!r}")
    name, _, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in POLICIES:
        raise ConfigError(f"unknown policy {name!r}; available: {', '.join(sorted(POLICIES))}")
    params = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"policy {spec!r}: parameter {item!r} is not key=value")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ConfigError(f"policy {spec!r}: {key.strip()}={value!r} is not a number") \
                from None
    try:
        return POLICIES[name](**params)
    except TypeError as e:
        raise ConfigError(f"policy {name!r}: {e}") from None


def policy_spec(policy) -> str:
    """The spec string of a policy (what a decision log records)."""
    return getattr(policy, "spec", None) or getattr(policy, "name", type(policy).__name__)
