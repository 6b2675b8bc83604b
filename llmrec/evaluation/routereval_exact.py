"""``routereval-exact``: RouterEval's protocol as its own code runs it.

Everything here follows MilkThink-Lab/RouterEval @ 2edf54d (``get_router_dataset.py``,
``test_router.py``, ``router/*``), not its paper's description:

* **Split** (``get_router_dataset.py``, ``__main__``): ``np.random.seed(42)``; for
  each subset of prompts (RouterEval: the benchmark's sub-scenarios; here the
  ``stratify`` column's groups in order of first appearance, by default one group per
  ``benchmark``), its positions are shuffled with the legacy global stream
  (``np.random.shuffle``) and cut at ``int(0.8 n)`` and ``int(0.9 n)``.
* **Pools** (``select_candidates``): chosen on the *full* matrix (every prompt,
  test included), LLMs ranked by mean score with ``np.argsort`` (weakest first);
  the valid range starts at the first LLM whose mean is ``> 0.1`` and ends before the
  first whose mean is ``> 0.9`` (exclusive bounds); the weak / strong region is
  ``max(n_all // 5, m)`` LLMs with ``n_all`` the number of *all* LLMs, cut with
  Python slices (so near the ends a region can be shorter, and then no window fits:
  RouterEval returns no pool, and this mode skips it with a note in ``details``);
  the best window keeps the first maximum; ``strong_to_weak`` draws 1,000 times one
  LLM per stratum with ``np.random.choice`` from the *same* legacy stream, which has
  already been advanced by the split's shuffles and by the draws of the smaller pools
  (RouterEval builds sizes in ascending order, groups in the order all_strong,
  all_weak, strong_to_weak). The pool's columns keep RouterEval's order: weakest
  first (all_strong / all_weak: ascending mean; strong_to_weak: weakest stratum first).
* **Missing cells**: RouterEval's matrices have none (its leaderboard arrays mark an
  unanswered question as incorrect). This mode fills every unobserved cell with 0
  before anything else: pools, training and test scores all see 0.
* **Routing and metrics** (``knn.py``, ``cluster.py``, ``train.py``,
  ``r_o_router.py``, ``test_router.py``): a prompt goes to ``np.argmax`` of its scores
  (ties: the first column, i.e. the weakest LLM of the pool); mu = mean test score of
  the picks; Vb = mu / the best column mean of the pool's test scores; Vr = mu / the
  reference score (``mmlu_pro``: 0.637); Ep as each script computes it (see
  :mod:`llmrec.routers.routereval_baselines`; other llmrec routers: the softmax
  entropy of their scores, as ``knn.py``). ``oracle`` / ``random`` / ``oracle-mix``
  are RouterEval's r_o(p) with p = 1 / 0 / p: mu is the exact expectation of its
  1,000 simulated draws (RouterEval's figure varies by about ±0.0005 around it), Ep
  the entropy of ``p * score / row sum + (1 - p) / m``.

Validation prompts are built (and passed to llmrec routers) but RouterEval's own
baselines ignore them, as its scripts do.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..data.splits import split_from_indices
from ..errors import ConfigError, LLMRecError
from . import metrics as M

__all__ = ["routereval_exact_split", "select_candidates_exact", "exact_pools",
           "routereval_exact_protocol", "EXACT_GROUPS"]

EXACT_GROUPS = ("all_strong", "all_weak", "strong_to_weak")


def routereval_exact_split(records: PerformanceRecords, seed: int = 42,
                           stratify: str | None = "benchmark"):
    """RouterEval's split: legacy-seeded shuffle per subset, cut 80/10/10.

    Returns ``(split, rng)``: the :class:`~llmrec.data.splits.Split` and the legacy
    :class:`numpy.random.RandomState` after the shuffles (the stream that
    ``select_candidates`` goes on drawing from).

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> split, rng = routereval_exact_split(make_synthetic(100, 4, seed=0), stratify=None)
    >>> len(split.train_idx), len(split.val_idx), len(split.test_idx)
    (80, 10, 10)
    """
    rng = np.random.RandomState(seed)
    n = records.n_prompts
    if stratify is None:
        groups = [np.arange(n)]
    else:
        if stratify not in records.prompts.columns:
            raise ConfigError(f"stratify column {stratify!r} not in the prompts table")
        key = records.prompts[stratify].astype(str).fillna("").to_numpy()
        groups = [np.flatnonzero(key == g) for g in dict.fromkeys(key)]
    tr, va, te = [], [], []
    for idx in groups:
        idx = idx.copy()
        rng.shuffle(idx)
        a, b = int(0.8 * len(idx)), int(0.9 * len(idx))
        tr.extend(idx[:a])
        va.extend(idx[a:b])
        te.extend(idx[b:])
    # the parts keep the shuffled order, as RouterEval's arrays do (it matters to ties
    # between equidistant neighbours, k-means' start and the mini-batch order)
    return split_from_indices(records, np.asarray(tr, np.int64), np.asarray(va, np.int64),
                              np.asarray(te, np.int64)), rng


def _oracle(rows: np.ndarray) -> float:
    return float(np.mean(np.max(rows, axis=0)))


def select_candidates_exact(dataset: np.ndarray, m: int, group: str,
                            rng: np.random.RandomState) -> np.ndarray | None:
    """RouterEval's ``select_candidates`` on a (n_llms, n_prompts) matrix without NaN.

    Returns the chosen LLMs' row positions in RouterEval's order (weakest first), or
    None where RouterEval finds no window (its function then returns ``None``).
    ``rng`` is advanced exactly as RouterEval's global stream is.

    Examples
    --------
    >>> Y = np.array([[0.2, 0.2], [0.5, 0.3], [0.6, 0.8], [0.4, 0.4]])
    >>> select_candidates_exact(Y, 2, "all_strong", np.random.RandomState(0)).tolist()
    [3, 2]
    """
    if group not in EXACT_GROUPS:
        raise ConfigError(f"group must be one of {EXACT_GROUPS}, got {group!r}")
    Y = np.asarray(dataset, dtype=np.float64)
    if np.isnan(Y).any():
        raise ConfigError("the exact RouterEval mode reads no missing cell; fill them first")
    scores = np.mean(Y, axis=1)
    order = np.argsort(scores)
    ranked = scores[order]
    first = next((i for i, x in enumerate(ranked) if x > 0.1), None)
    last = next((i for i, x in enumerate(ranked) if x > 0.9), Y.shape[0])
    if first is None:
        return None
    split_point = max(len(order) // 5, int(m))
    if group in ("all_weak", "all_strong"):
        region = order[first:first + split_point] if group == "all_weak" else \
            order[last - split_point:last]
        best, best_score = None, -np.inf
        for s in range(len(region) - m + 1):
            sc = _oracle(Y[region[s:s + m]])
            if sc > best_score:
                best, best_score = region[s:s + m], sc
        return None if best is None else np.asarray(best, dtype=np.int64)
    valid = order[first:last]
    size, rem = len(valid) // m, len(valid) % m
    strata, start = [], 0
    for i in range(m):
        end = start + size + (1 if i < rem else 0)
        strata.append(valid[start:end])
        start = end
    # the draws, in RouterEval's order (one np.random.choice per stratum per draw) ...
    draws = np.asarray([[rng.choice(g) for g in strata] for _ in range(1000)], np.int64)
    # ... then every draw's oracle score at once; the first maximum wins (its ``>``)
    scores_ = np.empty(len(draws))
    for s in range(0, len(draws), 50):
        scores_[s:s + 50] = Y[draws[s:s + 50]].max(axis=1).mean(axis=1)
    return draws[int(np.argmax(scores_))]


def exact_pools(records: PerformanceRecords, sizes, rng: np.random.RandomState,
                groups=EXACT_GROUPS) -> tuple[dict, list]:
    """Pools of every size (ascending) and group, in RouterEval's construction order.

    Returns ``({m: {group: [names, weakest first]}}, notes)``; ``notes`` lists the
    (m, group) where RouterEval's function finds no pool.
    """
    Y = records.dense(fill=0.0).astype(np.float64).T
    names = records.llm_names
    out, notes = {}, []
    for m in sorted({int(s) for s in sizes}):
        if m < 1:
            raise ConfigError(f"pool sizes must be >= 1, got {m}")
        for g in EXACT_GROUPS:  # draws happen in this order whatever is kept
            pos = select_candidates_exact(Y, m, g, rng)
            if g not in groups:
                continue
            if pos is None:
                notes.append({"m": m, "group": g, "note": "RouterEval's select_candidates "
                              "returns no pool (no window of m LLMs fits its region)"})
                continue
            out.setdefault(m, {})[g] = [names[j] for j in pos]
    return out, notes


def _r_o(Yte: np.ndarray, p: float) -> tuple[np.ndarray, float]:
    """r_o(p): expected score per prompt and RouterEval's Ep."""
    best = Yte.max(axis=1)
    per = p * best + (1 - p) * Yte.mean(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        orc = Yte / Yte.sum(axis=1, keepdims=True)
    orc[np.isnan(orc).any(axis=1)] = 1.0 / Yte.shape[1]
    P = p * orc + (1 - p) / Yte.shape[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        terms = np.where(P > 1e-10, P * np.log2(P), 0.0)
    return per, float(-terms.sum() / Yte.shape[0])


def routereval_exact_protocol(records: PerformanceRecords, routers, sizes=(3, 5, 10, 100, 1000),
                              groups=EXACT_GROUPS, encoder="tfidf", seed: int = 42,
                              reference=None, stratify: str | None = "benchmark",
                              encoder_fit: str = "all", show_progress: bool = False):
    """RouterEval's protocol exactly as its code runs it (see the module docstring).

    Parameters
    ----------
    records : PerformanceRecords
        Prompts in RouterEval's order (the split shuffles positions).
    routers : names, (name, params) or (label, name, params)
        llmrec routers and RouterEval's baselines (``re-prknn``, ``re-cluster``,
        ``re-linear``, ``re-mlp``, ``oracle``, ``random``, ``oracle-mix``).
    sizes, groups
        Pool sizes (built in ascending order: the legacy stream depends on them, as
        in RouterEval) and groups kept.
    encoder : str or Encoder
        Prompt encoder. ``encoder_fit="all"`` fits it on every prompt's text (as
        RouterEval's embeddings come from a fixed model applied to every prompt);
        ``"train"`` on the training prompts only.
    seed : int
        The legacy seed (RouterEval: 42).

    Returns
    -------
    ProtocolResult
        ``tidy`` (router, m, group, mu, vr, vb, ep, n_test); ``table`` (averaged over
        groups, as ``test_router.py`` prints); ``details``: ``pools``, ``notes``,
        ``per_prompt`` {(label, m, group): picked score per test prompt}, split sizes.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> res = routereval_exact_protocol(make_synthetic(200, 8, seed=0), ["oracle"],
    ...                                 sizes=(3,), groups=("all_strong",), stratify=None)
    >>> res.tidy[["router", "m", "group"]].values.tolist()
    [['oracle', 3, 'all_strong']]
    """
    from ..routers import make_router
    from .protocols import (ProtocolResult, _any_needs_text, _ctor, _default_reference,
                            _order, _progress, router_specs, routereval_table)
    if encoder_fit not in ("all", "train"):
        raise ConfigError(f"encoder_fit must be 'all' or 'train', got {encoder_fit!r}")
    specs = router_specs(routers)
    filled = PerformanceRecords(records.dense(fill=0.0), records.prompts, records.llms,
                                name=records.name)
    split, rng = routereval_exact_split(filled, seed=seed, stratify=stratify)
    pools, notes = exact_pools(filled, sizes, rng, groups)
    ref = M._reference_value(_default_reference(records, reference), None)
    enc = None
    if _any_needs_text(specs) and records.has_text:
        from .protocols import shared_encoder
        enc = shared_encoder(filled, filled if encoder_fit == "all" else split.train,
                             encoder, show_progress)
    rows, per_prompt, done = [], {}, {}
    n_jobs = sum(len(g) for g in pools.values()) * len(specs)
    with _progress(n_jobs, "routereval-exact", show_progress) as bar:
        for m, by_group in pools.items():
            for group, names in by_group.items():
                tr = split.train.select_llms(names)
                va = split.val.select_llms(names) if split.val.n_prompts else None
                te = split.test.select_llms(names)
                Yte = te.dense().astype(np.float64)
                top = float(np.max(Yte.mean(axis=0)))
                for label, name, params in specs:
                    key = (label, tuple(names))  # the same pool, in the same column order
                    if key in done:
                        rows.append({**done[key][0], "group": group})
                        per_prompt[(label, int(m), group)] = done[key][1]
                        bar.update(1)
                        continue
                    t0 = time.perf_counter()
                    try:
                        if name in ("oracle", "random", "oracle-mix"):
                            p = {"oracle": 1.0, "random": 0.0}.get(name, params.get("p", 0.5))
                            per, ep = _r_o(Yte, float(p))
                        else:
                            # no seed override: RouterEval's scripts keep their own seeds
                            r = make_router(name, **_ctor(params))
                            # RouterEval's runs draw weights in its column order
                            r.canonical_llm_order = False
                            r.fit(tr, encoder=enc, val_records=va, show_progress=False,
                                  side_features=tuple(params.get("side_features", ())))
                            S = np.asarray(r.score(te, show_progress=False), np.float64)
                            S = np.where(np.isnan(S), -np.inf, S)
                            picks = np.argmax(S, axis=1)  # first column wins a tie
                            per = Yte[np.arange(len(picks)), picks]
                            if hasattr(r, "routereval_entropy"):
                                ep = r.routereval_entropy(r.features(te))
                            else:
                                from ..routers.routereval_baselines import \
                                    softmax_entropy_routereval
                                ep = softmax_entropy_routereval(np.where(
                                    np.isfinite(S), S, -1e30))
                        mu = float(per.mean())
                        row = {"router": label, "mu": mu,
                               "vr": mu / ref if ref else float("nan"),
                               "vb": mu / top if top > 0 else float("nan"), "ep": ep,
                               "fit_score_seconds": time.perf_counter() - t0}
                        per_prompt[(label, int(m), group)] = per
                    except LLMRecError as e:
                        warnings.warn(f"router {label!r} failed: {e}", stacklevel=2)
                        row = {"router": label, "error": f"{type(e).__name__}: {e}"}
                    row.update(m=int(m), group=group, n_test=te.n_prompts)
                    done[key] = (row, per_prompt.get((label, int(m), group)))
                    rows.append(row)
                    bar.update(1)
    tidy = _order(pd.DataFrame(rows), ["router", "m", "group"]) if rows else pd.DataFrame()
    return ProtocolResult(tidy, routereval_table(tidy), {
        "mode": "routereval-exact", "pools": pools, "notes": notes, "reference": ref,
        "per_prompt": per_prompt, "n_train": split.train.n_prompts,
        "n_val": split.val.n_prompts, "n_test": split.test.n_prompts,
        "test_idx": split.test_idx})
