"""Layer 4: policies turn a router's scores into a choice and its probability.

Routers predict; policies decide (greedy, epsilon-greedy, softmax). :func:`choose`
runs a router and a policy on prompts; :func:`decision_records` writes the result in
the decision-log schema; :mod:`llmrec.policies.learning` refits routers on logged
(prompt, chosen LLM, outcome) triples.
"""

from .base import (POLICIES, EpsilonGreedyPolicy, GreedyPolicy, Policy, SoftmaxPolicy,
                   ThompsonPolicy, UCBPolicy, make_policy, policy_spec)
from .decide import Decisions, choose, decision_records, router_version
from .learning import fit_logged, ipw_weights, logged_records

__all__ = ["Policy", "GreedyPolicy", "EpsilonGreedyPolicy", "SoftmaxPolicy", "UCBPolicy",
           "ThompsonPolicy", "POLICIES",
           "make_policy", "policy_spec", "Decisions", "choose", "decision_records",
           "router_version", "fit_logged", "logged_records", "ipw_weights"]
