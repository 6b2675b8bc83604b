"""Evaluation protocols: they drive routers and hand arrays to :mod:`.metrics`.

* :func:`routereval_protocol`: RouterEval's candidate pools (sizes x groups), each
  router fitted on the training prompts restricted to the pool's LLMs, tuned on the
  validation prompts, scored on the test prompts; mu, Vr, Vb, Ep per pool and the
  RouterEval-shaped table (averaged over groups).
* :func:`cold_prompt_protocol`: every test prompt is unseen; RouterEval and
  recommendation metrics, cascade, cost curve, bootstrap CIs and a paired test
  against the best single LLM.
* :func:`cold_llm_protocol`: held-out LLMs are added from a few probe prompts
  (``add_llm``) by the routers that can; the others route among the kept LLMs.
* :func:`scaling_curve`: quality vs pool size, pools of each size drawn at random,
  with the oracle and random routers as bounds.

Prompts are encoded once per protocol run: the encoder is fitted on the training
prompts, every prompt of the records is encoded, and the routers share a
:class:`~llmrec.encoders.precomputed.PrecomputedEncoder` over those vectors.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..errors import ConfigError, DataFormatError, LLMRecError
from . import metrics as M

__all__ = ["ProtocolResult", "routereval_protocol", "cold_prompt_protocol",
           "cold_llm_protocol", "scaling_curve", "shared_encoder", "router_specs"]

METRIC_COLUMNS = ("mu", "vr", "vb", "ep")


@dataclass
class ProtocolResult:
    """What a protocol returns.

    Attributes
    ----------
    tidy : pandas.DataFrame
        One row per (router, setting): every figure the protocol computed.
    table : pandas.DataFrame
        The summary table (for RouterEval: mu, Vr, Vb, Ep per router per m,
        averaged over groups).
    details : dict
        Extra arrays: per-LLM selection shares, quality-cost curves, settings.
    """

    tidy: pd.DataFrame
    table: pd.DataFrame
    details: dict = field(default_factory=dict)

    def __iter__(self):  # ``tidy, table = result``
        return iter((self.tidy, self.table))


# --------------------------------------------------------------------- helpers
def router_specs(routers) -> list[tuple[str, str, dict]]:
    """Normalise ``routers`` to ``[(label, registry name, params)]``.

    Accepts names, ``(name, params)`` pairs and ``(label, name, params)`` triples.
    The parameter ``side_features`` (e.g. ``("category",)``) is not a constructor
    argument: it is passed to ``fit`` (prompt side features, see
    :class:`~llmrec.encoders.PromptFeaturizer`).

    Examples
    --------
    >>> router_specs(["knn", ("oracle-mix", {"p": 0.5})])
    [('knn', 'knn', {}), ('oracle-mix(p=0.5)', 'oracle-mix', {'p': 0.5})]
    """
    if isinstance(routers, str):
        routers = [routers]
    out, seen = [], set()
    for r in routers:
        if isinstance(r, str):
            label, name, params = r, r, {}
        elif isinstance(r, (tuple, list)) and len(r) == 2 and isinstance(r[1], dict):
            name, params = r
            label = name + ("(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"
                            if params else "")
        elif isinstance(r, (tuple, list)) and len(r) == 3 and isinstance(r[2], dict):
            label, name, params = r
        else:
            raise ConfigError(f"router spec {r!r} not understood; give a name, "
                              "(name, params) or (label, name, params)")
        if label in seen:
            raise ConfigError(f"router {label!r} given twice; give each a distinct label")
        seen.add(label)
        out.append((str(label), str(name), dict(params)))
    if not out:
        raise ConfigError("no routers given")
    from ..routers import make_router
    for _, name, params in out:  # unknown names or parameters fail now, not mid-run
        make_router(name, **_ctor(params))
    return out


def _ctor(params: dict) -> dict:
    return {k: v for k, v in params.items() if k != "side_features"}


def _any_needs_text(specs) -> bool:
    from ..routers import ROUTERS, available_routers
    available_routers()
    return any(getattr(ROUTERS.get(name), "needs_text", True) for _, name, _ in specs)


def shared_encoder(records: PerformanceRecords, train: PerformanceRecords, encoder="tfidf",
                   show_progress: bool = False):
    """Encode every prompt of ``records`` once (encoder fitted on ``train``'s prompts).

    Returns a :class:`~llmrec.encoders.precomputed.PrecomputedEncoder` that routers
    share, or ``None`` when the records carry no prompt text.
    """
    if not records.has_text:
        return None
    from ..encoders import make_encoder
    from ..encoders.precomputed import PrecomputedEncoder
    if isinstance(encoder, PrecomputedEncoder):
        return encoder
    enc = make_encoder(encoder)
    if enc.requires_fit:
        enc.fit(train.texts)
    V = enc.encode(records.texts, show_progress=show_progress)
    return PrecomputedEncoder.from_records_embeddings(records, V)


def _make(name: str, params: dict, seed: int):
    from ..routers import make_router
    r = make_router(name, **_ctor(params))
    names = r._param_names()
    for p in ("random_state", "seed"):
        if p in names and p not in params:
            r.set_params(**{p: seed})
    return r


def _fit_score(name, params, seed, train, val, test, encoder, add=None):
    """Fit a router, optionally add LLMs, score the test prompts.

    Returns (router, scores aligned to the router's LLM order, seconds).
    """
    t0 = time.perf_counter()
    r = _make(name, params, seed)
    if r.needs_text and encoder is None:
        raise DataFormatError(f"router {name!r} needs prompt text, and these records have "
                              "none; use a router with needs_text=False or add texts")
    r.fit(train, encoder=encoder, val_records=val, show_progress=False,
          side_features=tuple(params.get("side_features", ())))
    if add is not None:
        probe, names = add
        for n in names:
            r.add_llm(n, probe)
    S = r.score(test, show_progress=False)
    return r, np.asarray(S, dtype=np.float64), time.perf_counter() - t0


def _selection_probs(name: str, router, S: np.ndarray, truth: np.ndarray):
    """The router's own selection distribution where Ep is not the softmax of scores."""
    if name == "oracle":
        P = np.zeros_like(truth)
        P[np.arange(len(S)), np.argmax(np.where(np.isnan(S), -np.inf, S), axis=1)] = 1.0
        return P
    if name == "oracle-mix":
        return S  # already the mixture p * onehot + (1 - p) / m
    return None


def _quiet():
    w = warnings.catch_warnings()
    w.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)
    return w


def _tie_rank(router, llm_names, n_cols: int):
    """The router's tie rank over the columns of its score matrix (``llm_names``
    when the columns are not the router's own LLMs, e.g. cold-LLM test columns)."""
    if llm_names is None:
        return getattr(router, "tie_rank_", None)
    from ..retrieval import tie_ranks
    own = dict(zip(router.llm_names_, getattr(router, "llm_train_mean_", None)
                   if getattr(router, "llm_train_mean_", None) is not None
                   else [np.nan] * router.n_llms_))
    return tie_ranks([own.get(n, np.nan) for n in llm_names], llm_names)


def _pool_metrics(label, name, router, S, truth, reference, seed, n_boot, n_draws=1000,
                  k: int = 3, threshold: float = 0.5, relative=None, llm_names=None) -> dict:
    """RouterEval metrics (+ CIs, Hit@1/k) of one router on one set of test prompts.

    Evaluated on the prompts where every LLM is observed (the same prompts for every
    router, see :func:`llmrec.evaluation.metrics.complete_prompts`); picks follow the
    router's tie rule (``tie_rank_``), never the column order or the truth.
    """
    full = M.complete_prompts(truth)
    n_excl = int((~full).sum())
    if n_excl:
        S, truth = np.asarray(S)[full], truth[full]
    tie = _tie_rank(router, llm_names, S.shape[1])
    w = _quiet()
    try:
        if name == "oracle-mix":
            m = M.oracle_mix_metrics(truth, router.p, n_draws=n_draws, seed=seed,
                                     reference=reference)
        else:
            m = M.routereval_metrics(S, truth, reference=reference,
                                     probs=_selection_probs(name, router, S, truth),
                                     tie_rank=tie)
        picks = M.route_picks(S, truth, tie_rank=tie)  # the same rule as mu
        row = {"router": label, **{c: m[c] for c in METRIC_COLUMNS},
               "n_eval": int(truth.shape[0]), "n_excluded": n_excl}
        stochastic = name == "oracle-mix"
        if stochastic:  # expected score per prompt: p * oracle + (1 - p) * mean of the row
            best = np.nanmax(np.where(np.isnan(truth), -np.inf, truth), axis=1)
            per = router.p * best + (1 - router.p) * np.nanmean(truth, axis=1)
        else:
            per = M.picked_scores(picks, truth)
        if n_boot:
            ci_mu = M.bootstrap_ci(per, n_boot=n_boot, seed=seed)
            ci_vb = M.bootstrap_ci(per, n_boot=n_boot, seed=seed, truth=truth)
            row.update(mu_low=ci_mu["low"], mu_high=ci_mu["high"],
                       vb_low=ci_vb["low"], vb_high=ci_vb["high"])
        if stochastic:  # no single ranking: ranking figures do not apply
            row.update({"hit@1": np.nan, f"hit@{k}": np.nan, "selection_entropy": np.nan})
            return row, picks, per
        hits = M.hits_per_prompt(S, truth, k=k, threshold=threshold, relative=relative)
        row["hit@1"] = M.hit_at_k(S, truth, k=1, threshold=threshold, relative=relative)
        row[f"hit@{k}"] = float(np.nanmean(hits)) if np.isfinite(hits).any() else np.nan
        if n_boot and np.isfinite(hits).any():
            ci = M.bootstrap_ci(hits[np.isfinite(hits)], n_boot=n_boot, seed=seed)
            row[f"hit@{k}_low"], row[f"hit@{k}_high"] = ci["low"], ci["high"]
        row["selection_entropy"] = M.selection_entropy_bits(picks, truth.shape[1])
        return row, picks, per
    finally:
        w.__exit__(None, None, None)


def _progress(total: int, desc: str, show: bool):
    from .._progress import progress
    return progress(total=total, desc=desc, show=show)


def _failed(label: str, e: Exception) -> dict:
    warnings.warn(f"router {label!r} failed: {e}", stacklevel=3)
    return {"router": label, "error": f"{type(e).__name__}: {e}"}


# ------------------------------------------------------------------ RouterEval
def routereval_protocol(records: PerformanceRecords, routers, sizes=(3, 5, 10, 100, 1000),
                        groups=("all_strong", "all_weak", "strong_to_weak"), encoder="tfidf",
                        seed: int = 42, split=None, reference=None, n_boot: int = 200,
                        n_draws: int = 1000, show_progress: bool = False,
                        pool_kwargs: dict | None = None, mode: str = "llmrec"
                        ) -> ProtocolResult:
    """RouterEval's protocol on candidate pools of ``sizes`` x ``groups``.

    Two modes (``docs/splits_and_pools.md`` lists every difference):

    * ``"llmrec"`` (default, different from RouterEval on purpose): pools chosen on
      the training prompts only; no test-time masking (a router routes among every
      LLM of the pool; prompts with an unobserved cell in the pool are left out of
      the evaluation for every router alike); ties go to the LLM with the higher
      training mean, never to a column.
    * ``"routereval-exact"``: RouterEval's own split, pools, missing cells (0), tie
      rule (first column, weakest first) and metrics; see
      :func:`llmrec.evaluation.routereval_exact.routereval_exact_protocol` (``split``,
      ``n_boot``, ``n_draws`` and ``pool_kwargs`` do not apply there).

    Parameters
    ----------
    records : PerformanceRecords
    routers : list of names, (name, params) or (label, name, params)
    sizes, groups
        Pool sizes (capped at the number of valid LLMs) and candidate groups, see
        :func:`llmrec.data.pools.candidate_pools` (chosen on the training prompts).
    encoder : str or Encoder
        Prompt encoder; prompts are encoded once and shared by every router.
    seed : int
        Split, pools, routers' random_state and bootstrap all derive from it.
    split : Split, optional
        Default: :func:`llmrec.data.splits.routereval_split` (80/10/10).
    reference : float or str, optional
        Reference score for Vr (a number or a key of ``REFERENCE_SCORES``; default:
        the records' name when it is a key, else Vr is NaN).
    n_boot : int
        Bootstrap resamples for the CIs of mu and Vb (0: none).

    Returns
    -------
    ProtocolResult
        ``tidy``: router, m, group, mu, vr, vb, ep, CIs, hit@1, hit@3, ...;
        ``table``: mu / vr / vb / ep per router (rows) and m (columns), averaged over
        groups; ``details["pools"]``: the LLM names of every pool.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(200, 8, seed=0)
    >>> res = routereval_protocol(rec, ["best-single", "oracle"], sizes=(3,),
    ...                           groups=("all_strong",), n_boot=0)
    >>> res.tidy[["router", "m", "group"]].values.tolist()
    [['best-single', 3, 'all_strong'], ['oracle', 3, 'all_strong']]
    """
    if mode == "routereval-exact":
        from .routereval_exact import routereval_exact_protocol
        return routereval_exact_protocol(records, routers, sizes=sizes, groups=groups,
                                         encoder=encoder, seed=seed, reference=reference,
                                         show_progress=show_progress)
    if mode != "llmrec":
        raise ConfigError(f"mode must be 'llmrec' or 'routereval-exact', got {mode!r}")
    from ..data.pools import candidate_pools
    from ..data.splits import routereval_split
    specs = router_specs(routers)
    split = routereval_split(records, seed=seed) if split is None else split
    ref = _default_reference(records, reference)
    pools = candidate_pools(split.train, sizes=sizes, groups=groups, seed=seed,
                            **(pool_kwargs or {}))
    enc = shared_encoder(records, split.train, encoder, show_progress) \
        if _any_needs_text(specs) else None
    rows, done, per_prompt = [], {}, {}
    n_jobs = sum(len(g) for g in pools.values()) * len(specs)
    with _progress(n_jobs, "routereval", show_progress) as bar:
        for m, by_group in pools.items():
            for group, names in by_group.items():
                tr = split.train.select_llms(names)
                va = split.val.select_llms(names) if split.val.n_prompts else None
                te = split.test.select_llms(names)
                truth = te.dense().astype(np.float64)
                for label, name, params in specs:
                    bar.set_postfix_str(f"m={m} {group} {label}")
                    key = (label, tuple(sorted(names)))
                    if key in done:  # e.g. every group is "all LLMs" once m caps
                        rows.append({**done[key], "group": group})
                        if (label, int(m), done[key]["group"]) in per_prompt:
                            per_prompt[(label, int(m), group)] = \
                                per_prompt[(label, int(m), done[key]["group"])]
                        bar.update(1)
                        continue
                    try:
                        r, S, secs = _fit_score(name, params, seed, tr, va, te, enc)
                        row, _, per = _pool_metrics(label, name, r, S, truth, ref, seed, n_boot,
                                                    n_draws)
                        row["fit_score_seconds"] = secs
                        per_prompt[(label, int(m), group)] = per
                    except LLMRecError as e:
                        row = _failed(label, e)
                    row.update(m=int(m), group=group, n_test=te.n_prompts)
                    done[key] = row
                    rows.append(row)
                    bar.update(1)
    tidy = _order(pd.DataFrame(rows), ["router", "m", "group"])
    table = routereval_table(tidy)
    return ProtocolResult(tidy, table, {"mode": "llmrec",
                                        "pools": {int(m): g for m, g in pools.items()},
                                        "reference": ref, "n_train": split.train.n_prompts,
                                        "n_val": split.val.n_prompts,
                                        "n_test": split.test.n_prompts,
                                        "per_prompt": per_prompt})


def routereval_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """RouterEval's layout: one row per router, columns (metric, m), averaged over groups."""
    cols = [c for c in METRIC_COLUMNS if c in tidy]
    if tidy.empty or not cols:
        return pd.DataFrame()
    order = list(dict.fromkeys(tidy["router"]))
    t = tidy.groupby(["router", "m"])[cols].mean().unstack("m")
    return t.reindex(order)


def _default_reference(records, reference):
    if reference is not None:
        return reference
    # the records' name ("mmlu-pro") or their single benchmark ("mmlu_pro")
    names = [records.name or ""]
    bench = records.prompts["benchmark"].dropna().astype(str).unique()
    if len(bench) == 1:
        names.append(bench[0])
    for nm in names:
        key = nm.lower().replace("-", "_")
        if key in M.REFERENCE_SCORES:
            return key
    return None


def _order(df: pd.DataFrame, first: Sequence[str]) -> pd.DataFrame:
    cols = [c for c in first if c in df] + [c for c in df if c not in first]
    return df[cols].reset_index(drop=True)


# ---------------------------------------------------------------- cold prompt
def cold_prompt_protocol(records: PerformanceRecords, routers, encoder="tfidf", seed: int = 42,
                         val: float = 0.1, test: float = 0.1, stratify: str | None = "benchmark",
                         k: int = 3, threshold: float = 0.5, relative: float | None = None,
                         reference=None, n_boot: int = 200, split=None,
                         show_progress: bool = False) -> ProtocolResult:
    """Every router on all LLMs, fitted on train, tuned on val, scored on unseen test prompts.

    Figures per router: mu, Vr, Vb, Ep (with bootstrap CIs of mu and Vb), Hit@1,
    Hit@k (CI), Recall@k, NDCG@k, MRR, cascade success / calls / cost at k, AIQ of
    the quality-cost curve when LLM costs are known, APGR / CPT(50%) / CPT(80%) when
    there are exactly two LLMs (RouteLLM's strong / weak setting; the router's
    preference for the strong one is its score difference), the entropy of the picks, and
    the one-sided p-value of a paired permutation test "router beats best-single"
    (when ``best-single`` is among the routers).

    ``details``: ``selection_share`` {router: list per LLM}, ``llms``,
    ``cost_curves`` {router: DataFrame}.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> res = cold_prompt_protocol(make_synthetic(200, 5, seed=0), ["best-single", "oracle"],
    ...                            n_boot=0)
    >>> float(res.table.loc["oracle", "hit@1"])
    1.0
    """
    from ..data.splits import cold_prompt_split
    from ..routers.base import llm_costs
    specs = router_specs(routers)
    split = cold_prompt_split(records, val=val, test=test, seed=seed, stratify=stratify) \
        if split is None else split
    ref = _default_reference(records, reference)
    enc = shared_encoder(records, split.train, encoder, show_progress) \
        if _any_needs_text(specs) else None
    truth = split.test.dense().astype(np.float64)
    costs = llm_costs(split.train)
    va = split.val if split.val.n_prompts else None
    rows, shares, curves, per_prompt = [], {}, {}, {}
    with _progress(len(specs), "cold-prompt", show_progress) as bar:
        for label, name, params in specs:
            bar.set_postfix_str(label)
            try:
                r, S, secs = _fit_score(name, params, seed, split.train, va, split.test, enc)
                row, picks, per = _pool_metrics(label, name, r, S, truth, ref, seed, n_boot,
                                                k=k, threshold=threshold, relative=relative)
                if name != "oracle-mix":
                    w = _quiet()
                    try:
                        row.update(_ranking_metrics(S, truth, k, threshold, relative, costs))
                    finally:
                        w.__exit__(None, None, None)
                if truth.shape[1] == 2 and name != "oracle-mix":
                    row.update(_strong_weak(S, truth))
                if costs is not None and name not in ("oracle-mix",):
                    curve = M.quality_cost_curve(truth, costs, pred_scores=S)
                    curves[label] = curve
                    lo, hi = float(np.min(costs)), float(np.max(costs))
                    row["aiq"] = M.aiq(curve.cost, curve.quality, cost_range=(lo, hi))
                row["fit_score_seconds"] = secs
                shares[label] = (S.mean(axis=0).tolist() if name == "oracle-mix" else
                                  M.selection_share(picks, truth.shape[1]).tolist())
                per_prompt[label] = per
            except LLMRecError as e:
                row = _failed(label, e)
            rows.append(row)
            bar.update(1)
    tidy = pd.DataFrame(rows)
    if "best-single" in per_prompt:
        base = per_prompt["best-single"]
        tidy["p_vs_best_single"] = [
            M.paired_test(per_prompt[lb], base, n_resamples=2000, seed=seed)["p_value"]
            if lb in per_prompt and lb != "best-single" else np.nan for lb in tidy["router"]]
    tidy = _order(tidy, ["router"])
    table = tidy.set_index("router")
    return ProtocolResult(tidy, table, {
        "selection_share": shares, "llms": split.test.llm_names, "cost_curves": curves,
        "reference": ref, "n_train": split.train.n_prompts, "n_val": split.val.n_prompts,
        "n_test": split.test.n_prompts, "k": k, "threshold": threshold,
        "relative": relative})


def _strong_weak(S, truth) -> dict:
    """RouteLLM's APGR / CPT for a two-LLM pool (strong = better mean on these prompts)."""
    ok = ~np.isnan(truth).any(axis=1)
    if ok.sum() < 2:
        return {}
    t = truth[ok]
    strong = int(np.argmax(t.mean(axis=0)))
    weak = 1 - strong
    if t[:, strong].mean() <= t[:, weak].mean():
        return {}
    s = np.where(np.isfinite(S[ok]), S[ok], 0.0)
    r = M.apgr(s[:, strong] - s[:, weak], t[:, strong], t[:, weak])
    return {"apgr": r["apgr"], "cpt50": r["cpt50"], "cpt80": r["cpt80"]}


def _ranking_metrics(S, truth, k, threshold, relative, costs) -> dict:
    out = {f"recall@{k}": M.recall_at_k(S, truth, k, threshold, relative),
           f"ndcg@{k}": M.ndcg_at_k(S, truth, k, threshold, relative),
           "mrr": M.mrr(S, truth, threshold, relative)}
    c = M.cascade_metrics(S, truth, k, costs=costs, threshold=threshold, relative=relative)
    out.update({f"cascade@{k}_{key}": v for key, v in c.items()})
    return out


# -------------------------------------------------------------------- cold LLM
def cold_llm_protocol(records: PerformanceRecords, routers, held_out=0.2, n_probe: int = 50,
                      encoder="tfidf", seed: int = 42, test: float = 0.2,
                      stratify: str | None = "benchmark", reference=None, n_boot: int = 200,
                      split=None, show_progress: bool = False) -> ProtocolResult:
    """New LLMs: routers fitted without them, then ``add_llm`` from ``n_probe`` probes.

    Routers that support new LLMs add every held-out LLM from the probe records;
    the others route among the kept LLMs only (their held-out columns score -inf),
    which is what they would do in production. Test prompts carry every LLM.

    Extra columns: ``adds_llms`` (whether the router folded the new LLMs in),
    ``new_llm_share`` (share of test prompts routed to a new LLM),
    ``oracle_new_share`` (the same for the oracle's picks) and, for routers that add
    LLMs: ``new_llm_auc`` (mean over the new LLMs of the ROC AUC of their predicted
    scores against their test outcomes, success = score >= 0.5; does the fitted vector
    separate right from wrong answers?), ``mu_kept_only`` (mu of the same router
    routing among the kept LLMs only) and ``mu_gain_new`` (mu - mu_kept_only: does
    adding the new LLMs lower quality?).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> res = cold_llm_protocol(make_synthetic(200, 6, seed=0), ["best-single", "random"],
    ...                         held_out=2, n_probe=20, n_boot=0)
    >>> res.table["adds_llms"].tolist()
    [True, False]
    """
    from ..data.splits import cold_llm_split
    specs = router_specs(routers)
    s = cold_llm_split(records, held_out=held_out, n_probe=n_probe, seed=seed, test=test,
                       stratify=stratify) if split is None else split
    ref = _default_reference(records, reference)
    enc = shared_encoder(records, s.train, encoder, show_progress) \
        if _any_needs_text(specs) else None
    all_names = s.test.llm_names
    truth = s.test.dense().astype(np.float64)
    new_mask = np.isin(np.asarray(all_names, dtype=object), s.held_out)
    # the oracle's picks under the tie rule (training means of every LLM, then name)
    from ..retrieval import tie_break_argmax, tie_ranks
    tr_all = records.select_prompts(s.train_idx)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means_all = np.nanmean(tr_all.select_llms(all_names).dense(), axis=0)
    oracle_picks = tie_break_argmax(np.where(np.isnan(truth), -np.inf, truth),
                                    tie_ranks(means_all, all_names))
    rows, shares = [], {}
    with _progress(len(specs), "cold-llm", show_progress) as bar:
        for label, name, params in specs:
            bar.set_postfix_str(label)
            try:
                probe_r = _make(name, params, seed)
                adds = bool(probe_r.supports_new_llms) and not probe_r.needs_truth
                # bounds (oracle) read the truth of every LLM; the others never see new ones
                train = records.select_prompts(s.train_idx) if probe_r.needs_truth else s.train
                r, S_r, secs = _fit_score(name, params, seed, train, None, s.test, enc,
                                          add=(s.probe, s.held_out) if adds else None)
                S = np.full(truth.shape, -np.inf)
                S[:, s.test.llm_index(r.llm_names_)] = S_r
                row, picks, _ = _pool_metrics(label, name, r, S, truth, ref, seed, n_boot,
                                              llm_names=all_names)
                row.update(adds_llms=adds or probe_r.needs_truth,
                           new_llm_share=float(new_mask[picks].mean()),
                           fit_score_seconds=secs)
                if adds:
                    row.update(_new_llm_figures(S, truth, new_mask,
                                                _tie_rank(r, all_names, S.shape[1])))
                shares[label] = M.selection_share(picks, truth.shape[1]).tolist()
            except LLMRecError as e:
                row = _failed(label, e)
            rows.append(row)
            bar.update(1)
    tidy = _order(pd.DataFrame(rows), ["router"])
    tidy["oracle_new_share"] = float(new_mask[oracle_picks].mean())
    return ProtocolResult(tidy, tidy.set_index("router"), {
        "held_out": s.held_out, "kept": s.kept, "n_probe": int(s.probe.n_prompts),
        "selection_share": shares, "llms": all_names, "reference": ref})


def _new_llm_figures(S: np.ndarray, truth: np.ndarray, new_mask: np.ndarray,
                     tie=None) -> dict:
    from sklearn.metrics import roc_auc_score
    aucs = []
    for j in np.flatnonzero(new_mask):
        ok = ~np.isnan(truth[:, j]) & np.isfinite(S[:, j])
        y = truth[ok, j] >= 0.5
        if ok.sum() and 0 < y.sum() < len(y):
            aucs.append(roc_auc_score(y, S[ok, j]))
    kept = np.where(new_mask[None, :], -np.inf, S)
    mu_all = M.routereval_metrics(S, truth, tie_rank=tie)["mu"]
    mu_kept = M.routereval_metrics(kept, truth, tie_rank=tie)["mu"]
    return {"new_llm_auc": float(np.mean(aucs)) if aucs else float("nan"),
            "mu_kept_only": mu_kept, "mu_gain_new": mu_all - mu_kept}


# ------------------------------------------------------------------- scaling
def scaling_curve(records: PerformanceRecords, routers, sizes: Iterable[int] | None = None,
                  n_repeats: int = 3, encoder="tfidf", seed: int = 42, val: float = 0.1,
                  test: float = 0.1, stratify: str | None = "benchmark", split=None,
                  show_progress: bool = False) -> ProtocolResult:
    """Quality (mu, Vb) against the number of candidate LLMs, with oracle and random bounds.

    For each size m, ``n_repeats`` pools of m LLMs are drawn uniformly at random
    (``numpy.random.default_rng(seed)``); each router is fitted on the training
    prompts x pool and scored on the test prompts. ``oracle`` (best LLM per prompt)
    and ``random`` (expected score of a uniform pick, exact) are always added.
    RouterEval's observation: the oracle keeps rising with m while learned routers
    flatten or drop.

    Returns
    -------
    ProtocolResult
        ``tidy``: router, m, repeat, mu, vb; ``table``: mean and std of mu and vb per
        router and m.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> res = scaling_curve(make_synthetic(150, 5, seed=0), ["best-single"], sizes=[2, 5],
    ...                     n_repeats=2)
    >>> sorted(set(res.tidy.router))
    ['best-single', 'oracle', 'random']
    """
    from ..data.splits import cold_prompt_split
    specs = [s for s in router_specs(routers) if s[1] not in ("oracle", "random")]
    n = records.n_llms
    sizes = list(range(2, n + 1)) if sizes is None else sorted({int(x) for x in sizes})
    if not sizes or sizes[0] < 1 or sizes[-1] > n:
        raise ConfigError(f"sizes must lie in 1..{n} (the number of LLMs), got {sizes}")
    if n_repeats < 1:
        raise ConfigError(f"n_repeats must be >= 1, got {n_repeats}")
    split = cold_prompt_split(records, val=val, test=test, seed=seed, stratify=stratify) \
        if split is None else split
    enc = shared_encoder(records, split.train, encoder, show_progress) \
        if specs and _any_needs_text(specs) else None
    rng = np.random.default_rng(seed)
    truth_all = split.test.dense().astype(np.float64)
    rows = []
    va_all = split.val if split.val.n_prompts else None
    total = sum(1 if m == n else n_repeats for m in sizes) * max(len(specs), 1)
    w = _quiet()
    try:
        with _progress(total, "scaling", show_progress) as bar:
            for m in sizes:
                reps = 1 if m == n else n_repeats
                for rep in range(reps):
                    cols = np.sort(rng.choice(n, size=m, replace=False))
                    truth = truth_all[:, cols]
                    best_col = float(np.nanmax(np.nanmean(truth, axis=0)))
                    orc = np.nanmax(np.where(np.isnan(truth), -np.inf, truth), axis=1)
                    rnd = np.nanmean(truth, axis=1)
                    for lab, vals in (("oracle", orc), ("random", rnd)):
                        mu = float(np.nanmean(vals))
                        rows.append({"router": lab, "m": m, "repeat": rep, "mu": mu,
                                     "vb": mu / best_col if best_col > 0 else np.nan})
                    if not specs:
                        bar.update(1)
                    names = [split.train.llm_names[c] for c in cols]
                    tr = split.train.select_llms(names)
                    va = va_all.select_llms(names) if va_all is not None else None
                    te = split.test.select_llms(names)
                    for label, name, params in specs:
                        try:
                            r, S, _ = _fit_score(name, params, seed + rep, tr, va, te, enc)
                            mm = M.routereval_metrics(S, truth, tie_rank=r.tie_rank_)
                            rows.append({"router": label, "m": m, "repeat": rep,
                                         "mu": mm["mu"], "vb": mm["vb"]})
                        except LLMRecError as e:
                            rows.append({**_failed(label, e), "m": m, "repeat": rep})
                        bar.update(1)
    finally:
        w.__exit__(None, None, None)
    tidy = pd.DataFrame(rows)
    order = list(dict.fromkeys(tidy["router"]))
    table = (tidy.groupby(["router", "m"])[["mu", "vb"]].agg(["mean", "std"])
             .reindex(order, level=0))
    return ProtocolResult(tidy, table, {"sizes": sizes, "n_repeats": n_repeats})
