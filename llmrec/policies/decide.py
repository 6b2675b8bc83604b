"""Route with a policy: the chosen LLM and its propensity per prompt, as log records."""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import numpy as np

from .base import make_policy, policy_spec

__all__ = ["Decisions", "choose", "decision_records", "router_version"]


@dataclass
class Decisions:
    """Choices of a policy for a batch of prompts (positions over ``llm_names``)."""

    llm_names: list
    chosen: np.ndarray        #: (n,) column of the chosen LLM
    propensity: np.ndarray    #: (n,) probability the policy gave that choice
    probabilities: np.ndarray  #: (n, m) the whole distribution (0 outside candidates)
    scores: np.ndarray        #: (n, m) router scores
    candidates: np.ndarray    #: (m_c,) columns allowed (candidate order)
    policy: str               #: policy spec

    @property
    def llms(self) -> np.ndarray:
        """Names of the chosen LLMs, shape (n,)."""
        return np.asarray(self.llm_names, dtype=object)[self.chosen]

    def __len__(self) -> int:
        return len(self.chosen)


def choose(router, prompts, policy="greedy", candidates=None, random_state=None,
           cost_weight: float = 0.0, show_progress=None) -> Decisions:
    """Score prompts with a fitted router and let a policy pick one LLM per prompt.

    Parameters
    ----------
    router : Router
        A fitted router.
    prompts : texts, DataFrame, PerformanceRecords or 2-D feature array
    policy : str or Policy
        A spec for :func:`~llmrec.policies.make_policy` (default greedy).
    candidates : sequence of LLM names, optional
        Restrict the choice to these LLMs.
    random_state : int or numpy Generator, optional
    cost_weight : float
        Rank by predicted utility at this cost weight, as ``recommend`` does (the score
        minus ``cost_weight`` x the LLM's cost; ``auto`` applies its guard at that weight).

    Returns
    -------
    Decisions
        ``.llms`` (chosen names), ``.propensity``, ``.probabilities``, ``.scores``.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> r = make_router("linear").fit(make_synthetic(80, 4, seed=0))
    >>> d = choose(r, ["what is 2+2?"], "epsilon-greedy:eps=0.2", random_state=0)
    >>> d.llms.shape, round(float(d.probabilities.sum()), 12)
    ((1,), 1.0)
    """
    pol = make_policy(policy)
    S = np.asarray(router.score(prompts, show_progress=show_progress, cost_weight=cost_weight),
                   dtype=np.float64)
    m = S.shape[1]
    cand = router.candidate_positions(candidates)
    cand = np.arange(m) if cand is None else np.unique(cand)
    mask = np.zeros(m, bool)
    mask[cand] = True
    if S.shape[0] == 0:
        P = np.zeros((0, m))
        chosen, prop = np.zeros(0, np.int64), np.zeros(0)
    else:
        std = None
        if getattr(pol, "needs_std", False):
            if not hasattr(router, "score_std"):
                from ..errors import CapabilityError
                raise CapabilityError(f"policy {policy_spec(pol)!r} needs score uncertainty; "
                                      f"{type(router).__name__} has no score_std (use "
                                      "'linear-bayes')")
            std = router.score_std(prompts, show_progress=show_progress)
        P = pol.probabilities(S, mask, std=std)
        chosen, prop = pol.choose(S, mask, rng=random_state, std=std) \
            if not _deterministic(P) else (np.argmax(P, axis=1), P.max(axis=1))
    return Decisions(list(router.llm_names_), np.asarray(chosen, np.int64),
                     np.asarray(prop, float), P, S, cand, policy_spec(pol))


def _deterministic(P: np.ndarray) -> bool:
    return bool(np.all(P.max(axis=1) == 1.0))


def router_version(router) -> str:
    """A short fingerprint of a fitted router (type, parameters, LLMs, training summary)."""
    text = repr((router.name, sorted(map(str, router.get_params().items())),
                 list(router.llm_names_), sorted(map(str, getattr(router, "train_summary_",
                                                                  {}).items()))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def decision_records(router, texts, decisions: Decisions, source: str = "recommend",
                     log_text: bool = True, prompt_ids=None, now: float | None = None,
                     rng=None) -> list[dict]:
    """Decision-log records (the INTERFACES.md schema) for a batch of choices.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> r = make_router("best-single").fit(make_synthetic(40, 3, seed=0))
    >>> rec = decision_records(r, ["hi"], choose(r, ["hi"]))[0]
    >>> sorted(rec)[:4], rec["propensity"]
    (['candidates', 'chosen', 'decision_id', 'policy'], 1.0)
    """
    names = decisions.llm_names
    cand = [int(c) for c in decisions.candidates]
    now = time.time() if now is None else now
    rng = np.random.default_rng(rng) if rng is not None else None
    out = []
    for i, text in enumerate(texts):
        row = decisions.scores[i]
        order = sorted(cand, key=lambda j: -row[j] if np.isfinite(row[j]) else np.inf)
        c = int(decisions.chosen[i])
        sha = hashlib.sha256(str(text).encode("utf-8")).hexdigest()
        did = uuid.UUID(bytes=rng.bytes(16)).hex if rng is not None else uuid.uuid4().hex
        rec = {"decision_id": did, "time": now,
               "prompt_id": str(prompt_ids[i]) if prompt_ids is not None else sha,
               "text_sha256": sha}
        if log_text:
            rec["text"] = str(text)
        rec.update({"candidates": [names[j] for j in cand], "chosen": names[c],
                    "rank": order.index(c), "score": _num(row[c]),
                    "scores": [_num(row[j]) for j in cand],
                    "propensity": float(decisions.propensity[i]), "policy": decisions.policy,
                    "router": router.name, "router_version": router_version(router),
                    "source": source})
        out.append(rec)
    return out


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
