"""The replay simulator: bandit feedback replayed from a full-information table.

Every prompt of a full-information table has every LLM's score, so a deployed
router's life can be replayed: prompts arrive in a random order, the policy picks one
LLM, only that LLM's score is revealed, and every ``retrain_every`` decisions the
router is refitted on the logged (prompt, chosen, outcome) triples with
:func:`llmrec.policies.learning.fit_logged`. :func:`replay` reports the cumulative
regret against the oracle and against the best single LLM of the stream, and the
final router's mu (greedy) on held-out prompts next to the same router fitted on full
information. :func:`replay_vw` runs Vowpal Wabbit's contextual bandit on the same
stream and features (the reference learner; ``pip install vowpalwabbit``, a benchmark
extra). :func:`ope_accuracy` logs with one policy and estimates another off-policy,
against its true value on the full table. :func:`plot_replay` draws the regret curves.

A protocol in the sense of :mod:`llmrec.evaluation.protocols`: it drives routers and
never lives inside them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..errors import CapabilityError, ConfigError, DataFormatError

__all__ = ["ReplayResult", "replay", "replay_vw", "ope_accuracy", "plot_replay",
           "replay_split"]


@dataclass
class ReplayResult:
    """What one replay produced (one learner, one policy, one seed)."""

    name: str
    chosen_score: np.ndarray      #: (T,) revealed score of each decision, stream order
    oracle_score: np.ndarray      #: (T,) best observed score of each stream prompt
    single_score: np.ndarray      #: (T,) score of the stream's best single LLM
    propensity: np.ndarray        #: (T,)
    summary: dict = field(default_factory=dict)
    log: pd.DataFrame | None = None  #: the decision log (schema of INTERFACES.md, trimmed)

    @property
    def regret_oracle(self) -> np.ndarray:
        """Cumulative regret against the oracle after each decision."""
        return np.cumsum(self.oracle_score - self.chosen_score)

    @property
    def regret_single(self) -> np.ndarray:
        """Cumulative regret against the best single LLM (negative: better than it)."""
        return np.cumsum(self.single_score - self.chosen_score)


def replay_split(records: PerformanceRecords, test_frac: float = 0.2, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(stream rows in arrival order, held-out test rows) of a seeded random split.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> s, t = replay_split(make_synthetic(50, 3, seed=0), 0.2, seed=1)
    >>> len(s), len(t), len(set(s) & set(t))
    (40, 10, 0)
    """
    if not 0 < test_frac < 1:
        raise ConfigError(f"test_frac must be in (0, 1), got {test_frac}")
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(records.observed_dense().any(axis=1))
    perm = rng.permutation(keep)
    n_test = int(round(test_frac * len(perm)))
    return perm[n_test:], np.sort(perm[:n_test])


def _mu(scores: np.ndarray, truth: np.ndarray) -> float:
    key = np.where(np.isnan(truth), -np.inf, np.where(np.isnan(scores), -np.inf, scores))
    # ties: the first maximal column among observed ones (scores of a learner rarely tie)
    pick = np.argmax(key, axis=1)
    return float(np.nanmean(truth[np.arange(len(pick)), pick]))


def _encoder_for(records: PerformanceRecords, X: np.ndarray):
    from ..encoders import PrecomputedEncoder
    return PrecomputedEncoder(np.asarray(X, np.float32), ids=list(records.prompt_ids),
                              texts=None, key="id")


def _id_records(records: PerformanceRecords) -> PerformanceRecords:
    """The records with each prompt's text replaced by its id (the precomputed encoder
    looks vectors up by id, so repeated texts keep their own vectors)."""
    prompts = records.prompts.copy()
    prompts["text"] = prompts["prompt_id"].astype(str)
    return PerformanceRecords(records.scores, prompts, records.llms, observed=records.observed,
                              name=records.name)


def replay(records: PerformanceRecords, X, router: str = "linear", router_params=None,
           policy="epsilon-greedy:eps=0.1", retrain_every: int = 500, test_frac: float = 0.2,
           clip: float | None = 10.0, weighting: str = "ips", seed: int = 0,
           full_information: bool = True, keep_log: bool = False,
           split: tuple[np.ndarray, np.ndarray] | None = None,
           early_refits=(50, 100, 200)) -> ReplayResult:
    """Replay one pass of bandit feedback over the stream prompts of ``records``.

    Parameters
    ----------
    records : PerformanceRecords
        A full-information table (every LLM scored on most prompts; unobserved cells
        are never candidates).
    X : ndarray, shape (n_prompts, dim)
        Prompt features (e.g. cached MiniLM embeddings), row ``i`` for prompt ``i``.
    router : str
        Router registry name refitted on the logged triples (``linear`` uses the
        inverse-propensity weights).
    policy : str or Policy
        Exploration policy over the router's scores. Before the first fit every
        allowed LLM scores 0, so the policy's tie rule picks uniformly.
    retrain_every : int
        Decisions between refits (each refit uses everything logged so far).
    early_refits : sequence of int
        Extra refits after these many decisions (below ``retrain_every``), as a
        service would refit more often while it knows little.
    test_frac : float
        Share of prompts held out for the final mu (never streamed).
    full_information : bool
        Also fit the same router on the stream's full rows (the ceiling) and report
        its held-out mu.
    keep_log : bool
        Keep the decision log (a DataFrame) on the result.

    Returns
    -------
    ReplayResult
        ``summary`` holds ``mu_test`` (final router, greedy), ``mu_test_full``,
        ``mu_test_single`` (stream's best single LLM), ``mu_test_oracle``,
        ``mean_reward`` over the stream, final cumulative regrets, the first decision
        after which the regret against the best single LLM stays negative
        (``single_regret_negative_from``, None if never), and timings.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.encoders import TfidfEncoder
    >>> rec = make_synthetic(300, 4, seed=0)
    >>> X = TfidfEncoder(dim=16).fit(rec.texts).encode(rec.texts)
    >>> res = replay(rec, X, retrain_every=60, seed=0)
    >>> len(res.chosen_score), sorted(res.summary)[:3]
    (240, ['decisions', 'fit_seconds', 'full_fit_seconds'])
    """
    from ..policies import make_policy, policy_spec
    from ..policies.learning import fit_logged
    from ..routers import make_router
    pol = make_policy(policy)
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] != records.n_prompts:
        raise DataFormatError(f"X has shape {X.shape}; give one feature row per prompt "
                              f"({records.n_prompts})")
    if int(retrain_every) < 1:
        raise ConfigError(f"retrain_every must be >= 1, got {retrain_every}")
    stream, test = split if split is not None else replay_split(records, test_frac, seed)
    truth = records.dense().astype(np.float64)
    obs = ~np.isnan(truth)
    rng = np.random.default_rng(seed + 7919)
    names = records.llm_names
    id_rec = _id_records(records)
    enc = _encoder_for(records, X)
    col_mean = np.nanmean(truth[stream], axis=0)
    best = int(np.nanargmax(col_mean))
    T = len(stream)
    chosen = np.zeros(T, np.int64)
    prop = np.zeros(T)
    reward = np.zeros(T)
    model = None
    fit_s = 0.0
    n_fits = 0
    params = dict(router_params or {})
    N = int(retrain_every)
    cuts = sorted({int(c) for c in early_refits if 0 < int(c) < min(N, T)}
                  | set(range(N, T, N)) | {T})
    for start, stop in zip([0] + cuts[:-1], cuts):
        rows = stream[start:stop]
        S = model.score(X[rows]) if model is not None else np.zeros((len(rows), len(names)))
        std = None
        if getattr(pol, "needs_std", False):
            std = model.score_std(X[rows]) if model is not None else np.ones(S.shape)
        a, p = pol.choose(S, obs[rows], rng=rng, std=std)
        chosen[start:stop] = a
        prop[start:stop] = p
        reward[start:stop] = truth[rows, a]
        done = stop
        table = pd.DataFrame({"prompt_id": id_rec.prompt_ids[stream[:done]],
                              "text": id_rec.prompt_ids[stream[:done]],
                              "candidates": [names] * done,
                              "chosen": np.asarray(names, dtype=object)[chosen[:done]],
                              "propensity": prop[:done], "outcome": reward[:done]})
        t0 = time.perf_counter()
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            model = fit_logged(make_router(router, **params), table, clip=clip,
                               weighting=weighting, encoder=enc, llm_names=names)
        fit_s += time.perf_counter() - t0
        n_fits += 1
    oracle = np.nanmax(np.where(obs[stream], truth[stream], np.nan), axis=1)
    single = truth[stream, best]
    single = np.where(np.isnan(single), np.nanmean(truth[stream, best]), single)
    Xt = X[test]
    summary = {"router": router, "policy": policy_spec(pol), "seed": seed, "decisions": T,
               "retrain_every": int(retrain_every), "n_fits": n_fits, "fit_seconds": fit_s,
               "mean_reward": float(reward.mean()),
               "mu_test": _mu(model.score(Xt), truth[test]),
               "mu_test_single": float(np.nanmean(truth[test, best])),
               "mu_test_oracle": float(np.nanmean(np.nanmax(truth[test], axis=1))),
               "best_single": names[best], "weighting": weighting, "clip": clip}
    if full_information:
        t0 = time.perf_counter()
        full = make_router(router, **params).fit(id_rec.select_prompts(np.sort(stream)),
                                                 encoder=enc)
        summary["full_fit_seconds"] = time.perf_counter() - t0
        summary["mu_test_full"] = _mu(full.score(Xt), truth[test])
    res = ReplayResult(f"{router}+{policy_spec(pol)}", reward, oracle, single, prop, summary)
    _finish(res)
    if keep_log:
        res.log = table
    return res


def _finish(res: ReplayResult) -> None:
    rs = res.regret_single
    pos = np.flatnonzero(rs >= 0)
    neg_from = (None if rs[-1] >= 0 else int(pos[-1] + 2) if len(pos) else 1)
    res.summary.update(regret_oracle=float(res.regret_oracle[-1]),
                       regret_single=float(rs[-1]), single_regret_negative_from=neg_from,
                       mean_reward=float(res.chosen_score.mean()),
                       stream_oracle=float(res.oracle_score.mean()),
                       stream_single=float(res.single_score.mean()))


def _vw_example(x_str: str, allowed: np.ndarray, label=None) -> list[str]:
    lines = [f"shared |s {x_str}"]
    for j, a in enumerate(allowed):
        lab = f"0:{label[1]}:{label[2]} " if label is not None and j == label[0] else ""
        lines.append(f"{lab}|a llm{int(a)}")
    return lines


def replay_vw(records: PerformanceRecords, X, algorithm: str = "epsilon", epsilon: float = 0.1,
              gamma_scale: float = 10.0, test_frac: float = 0.2, seed: int = 0,
              extra_args: str = "", split: tuple[np.ndarray, np.ndarray] | None = None
              ) -> ReplayResult:
    """Vowpal Wabbit's ``--cb_explore_adf`` on the same stream and features as :func:`replay`.

    Shared features are the prompt's feature vector, each action is the LLM's id, and
    ``-q sa`` crosses them (a per-LLM linear model, as the ``linear`` router).
    ``algorithm``: ``"epsilon"`` (ε-greedy, ``--epsilon``) or ``"squarecb"``
    (``--squarecb --gamma_scale``). VW learns after every decision (online); the cost
    is the negated score. The held-out mu is VW's greedy choice on the test prompts.

    Needs ``vowpalwabbit`` (the benchmark extra: ``pip install 'llmrec[bench]'``).
    """
    try:
        import vowpalwabbit
    except ImportError:
        raise CapabilityError("replay_vw needs vowpalwabbit: pip install 'llmrec[bench]'") \
            from None
    X = np.asarray(X, dtype=np.float32)
    stream, test = split if split is not None else replay_split(records, test_frac, seed)
    truth = records.dense().astype(np.float64)
    obs = ~np.isnan(truth)
    if algorithm == "epsilon":
        algo = f"--epsilon {float(epsilon)}"
    elif algorithm == "squarecb":
        algo = f"--squarecb --gamma_scale {float(gamma_scale)}"
    else:
        raise ConfigError(f"algorithm must be 'epsilon' or 'squarecb', got {algorithm!r}")
    args = f"--cb_explore_adf -q sa --quiet --random_seed {int(seed)} {algo} {extra_args}"
    vw = vowpalwabbit.Workspace(args)
    rng = np.random.default_rng(seed + 7919)
    T = len(stream)
    chosen_score = np.zeros(T)
    prop = np.zeros(T)
    fmt = lambda x: " ".join(f"{k}:{v:.5g}" for k, v in enumerate(x) if v != 0)  # noqa: E731
    t0 = time.perf_counter()
    for t, i in enumerate(stream):
        allowed = np.flatnonzero(obs[i])
        xs = fmt(X[i])
        pmf = np.asarray(vw.predict(_vw_example(xs, allowed)), dtype=np.float64)
        pmf = pmf / pmf.sum()
        k = int(rng.choice(len(allowed), p=pmf))
        a = allowed[k]
        r = truth[i, a]
        vw.learn(_vw_example(xs, allowed, (k, -r, pmf[k])))
        chosen_score[t] = r
        prop[t] = pmf[k]
    learn_s = time.perf_counter() - t0
    picks = np.zeros(len(test), np.int64)
    for t, i in enumerate(test):
        allowed = np.flatnonzero(obs[i])
        pmf = np.asarray(vw.predict(_vw_example(fmt(X[i]), allowed)))
        picks[t] = allowed[int(np.argmax(pmf))]
    vw.finish()
    col_mean = np.nanmean(truth[stream], axis=0)
    best = int(np.nanargmax(col_mean))
    oracle = np.nanmax(np.where(obs[stream], truth[stream], np.nan), axis=1)
    single = truth[stream, best]
    single = np.where(np.isnan(single), np.nanmean(truth[stream, best]), single)
    name = f"vw-{algorithm}"
    summary = {"router": name, "policy": algo.strip(), "seed": seed, "decisions": T,
               "fit_seconds": learn_s, "vw_args": args,
               "mu_test": float(np.nanmean(truth[test, picks])),
               "mu_test_single": float(np.nanmean(truth[test, best])),
               "mu_test_oracle": float(np.nanmean(np.nanmax(truth[test], axis=1))),
               "best_single": records.llm_names[best]}
    res = ReplayResult(name, chosen_score, oracle, single, prop, summary)
    _finish(res)
    return res


def ope_accuracy(records: PerformanceRecords, X, logging_router: str = "linear",
                 logging_policy="softmax:temperature=0.1", target_router: str = "knn",
                 target_policy="greedy", train_frac: float = 0.4, seed: int = 0,
                 n_boot: int = 500, level: float = 0.9, reward_model: str = "logs",
                 logging_params=None, target_params=None, clips=(None,)) -> dict:
    """Log with one policy, estimate another off-policy, compare with its true value.

    The prompts are split: ``train_frac`` trains both routers (full information); on
    the rest the logging policy over ``logging_router``'s scores picks one LLM per
    prompt and only that score is kept. The target (``target_policy`` over
    ``target_router``) is evaluated by IPS, SNIPS, DM and DR from that log; its true
    value is its mean score on the same prompts from the full table.

    ``reward_model``: ``"logs"`` (a ridge per LLM cross-fitted on the logged triples)
    or ``"router"`` (the logging router's own predicted scores, trained on the
    full-information split).

    ``clips``: importance-weight caps to run the estimators with; a cap ``c`` other
    than None adds the keys ``"<estimator>@clip<c>"``.

    Returns
    -------
    dict
        ``truth``, ``logged_mean``, per estimator ``estimate``/``low``/``high``/``error``/
        ``covered``, ``ess``, ``n``.
    """
    from ..evaluation.ope import ESTIMATORS, fit_reward_model, ope_estimate
    from ..policies import make_policy
    from ..routers import make_router
    X = np.asarray(X, dtype=np.float32)
    rng = np.random.default_rng(seed)
    keep = np.flatnonzero(records.observed_dense().any(axis=1))
    perm = rng.permutation(keep)
    n_tr = int(round(train_frac * len(perm)))
    tr, lg = np.sort(perm[:n_tr]), np.sort(perm[n_tr:])
    id_rec = _id_records(records)
    enc = _encoder_for(records, X)
    truth = records.dense().astype(np.float64)
    obs = ~np.isnan(truth)
    train = id_rec.select_prompts(tr)
    lr = make_router(logging_router, **(logging_params or {})).fit(train, encoder=enc)
    tgt = make_router(target_router, **(target_params or {})).fit(train, encoder=enc)
    Sl = lr.score(X[lg])
    a, p = make_policy(logging_policy).choose(Sl, obs[lg], rng=rng)
    r = truth[lg, a]
    P = make_policy(target_policy).probabilities(tgt.score(X[lg]), obs[lg])
    true_value = float(np.sum(P * np.nan_to_num(truth[lg]), axis=1).mean())
    if reward_model == "logs":
        Q = fit_reward_model(X[lg], a, r, records.n_llms, seed=seed)
    elif reward_model == "router":
        Q = np.where(np.isfinite(Sl), Sl, 0.0)
    else:
        raise ConfigError(f"reward_model must be 'logs' or 'router', got {reward_model!r}")
    out = {"seed": seed, "truth": true_value, "logged_mean": float(r.mean()), "n": len(lg),
           "logging": f"{logging_router}+{make_policy(logging_policy).spec}",
           "target": f"{target_router}+{make_policy(target_policy).spec}",
           "reward_model": reward_model}
    for c in clips:
        res = ope_estimate(a, p, r, P, Q, ESTIMATORS, n_boot=n_boot, level=level, seed=seed,
                           clip=c)
        suffix = "" if c is None else f"@clip{c:g}"
        if c is None:
            out["ess"] = res["ess"]
        for e in ESTIMATORS:
            if c is not None and e == "dm":
                continue  # the direct method has no weights
            v = res[e]
            out[e + suffix] = {**v, "error": v["estimate"] - true_value,
                               "covered": bool(v["low"] <= true_value <= v["high"])}
    out.setdefault("ess", res["ess"])
    return out


def plot_replay(results, path, title: str | None = None, kind: str = "single"):
    """Cumulative regret curves (``kind``: ``"single"`` or ``"oracle"``), one line per
    learner, mean over the results of the same name with a band of +- one std.

    Returns the PNG path.
    """
    from .plots import _figure, _legend, _save, _style
    groups: dict[str, list[np.ndarray]] = {}
    for res in results:
        curve = res.regret_single if kind == "single" else res.regret_oracle
        groups.setdefault(res.name, []).append(curve)
    fig = _figure((7.2, 4.4))
    ax = fig.add_subplot(111)
    for i, (name, curves) in enumerate(groups.items()):
        n = min(len(c) for c in curves)
        C = np.vstack([c[:n] for c in curves])
        m, s = C.mean(axis=0), C.std(axis=0)
        st = _style(i, name)
        t = np.arange(1, n + 1)
        ax.plot(t, m, label=f"{name} (n={len(curves)})", **st)
        ax.fill_between(t, m - s, m + s, color=st["color"], alpha=0.15, lw=0)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlabel("decisions (one pass over the stream)")
    ax.set_ylabel("cumulative regret vs " + ("best single LLM" if kind == "single"
                                             else "oracle"))
    if title:
        ax.set_title(title, fontsize=9)
    _legend(ax)
    return _save(fig, path)
