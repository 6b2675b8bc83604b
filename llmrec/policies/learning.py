"""Learn from partial feedback: refit routers on logged (prompt, chosen LLM, outcome).

A deployed router sees one outcome per prompt, for the LLM its policy chose; the
other cells stay *missing* (never 0). :func:`logged_records` turns a decision table
(:func:`llmrec.data.read_decisions`) into sparse :class:`~llmrec.data.PerformanceRecords`
and a weight per observed record, the clipped inverse propensity ``min(1/p, clip)``
rescaled to mean 1, so that LLMs the policy rarely chose on some kind of prompt are
not under-represented there. :func:`fit_logged` fits a router on them: routers with
``supports_sample_weight`` (``linear``) use the weights, the collaborative-filtering
routers read the sparse matrix as it is, and a full-information table (the data the
deployed model was fitted on) can be added as a warm start.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..data.records import PerformanceRecords
from ..errors import ConfigError, DataFormatError

__all__ = ["logged_records", "fit_logged", "ipw_weights"]


def ipw_weights(propensity, clip: float | None = 10.0, normalize: bool = True) -> np.ndarray:
    """Clipped inverse-propensity weights, rescaled to mean 1 when ``normalize``.

    Examples
    --------
    >>> ipw_weights([0.5, 0.05, 1.0], clip=10, normalize=False).tolist()
    [2.0, 10.0, 1.0]
    """
    p = np.asarray(propensity, dtype=np.float64)
    if np.any(~(p > 0)) or np.any(p > 1):
        raise DataFormatError("propensities must be in (0, 1]")
    w = 1.0 / p
    if clip is not None:
        if clip < 1:
            raise ConfigError(f"clip must be >= 1, got {clip}")
        w = np.minimum(w, float(clip))
    return w / w.mean() if normalize and len(w) else w


def logged_records(table: pd.DataFrame, llm_names=None, clip: float | None = 10.0,
                   name: str = "decisions") -> tuple[PerformanceRecords, np.ndarray]:
    """Sparse records of the logged outcomes and their inverse-propensity weights.

    Parameters
    ----------
    table : pandas.DataFrame
        A decision table from :func:`llmrec.data.read_decisions`; decisions without an
        outcome are left out.
    llm_names : list of str, optional
        Column order (default: every LLM named as a candidate, sorted). LLMs of the
        list that were never chosen get an empty column.
    clip : float, optional
        Cap on ``1 / propensity`` (None: no cap).

    Returns
    -------
    records : PerformanceRecords
        One row per prompt (``prompt_id``; repeated prompts merged, outcomes of the
        same (prompt, LLM) averaged), one observed cell per distinct logged choice.
    weights : ndarray, shape (n_prompts, n_llms)
        Summed normalised weights of the records of each cell (0 where unobserved).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"prompt_id": ["p1", "p2", "p1"], "text": ["a", "b", "a"],
    ...                   "candidates": [["x", "y"]] * 3, "chosen": ["x", "y", "y"],
    ...                   "propensity": [0.5, 0.25, 0.5], "outcome": [1.0, 0.0, 1.0]})
    >>> rec, w = logged_records(t)
    >>> rec.n_prompts, rec.n_observed, w.round(2).tolist()
    (2, 3, [[0.75, 0.75], [0.0, 1.5]])
    """
    need = [c for c in ("chosen", "propensity", "outcome", "candidates") if c not in table]
    if need:
        raise DataFormatError(f"decision table lacks column(s) {need}; read it with "
                              "llmrec.data.read_decisions")
    t = table[np.isfinite(table["outcome"].to_numpy(dtype=float))]
    if len(t) == 0:
        raise DataFormatError("no logged decision has an outcome; nothing to learn from")
    if llm_names is None:
        llm_names = sorted({c for cands in t["candidates"] for c in cands})
    llm_names = [str(n) for n in llm_names]
    known = set(llm_names)
    unknown = sorted(set(t["chosen"]) - known)
    if unknown:
        raise DataFormatError(f"logged choices name LLM(s) {unknown[:5]} outside llm_names")
    if "prompt_id" in t and t["prompt_id"].notna().all():
        pid = t["prompt_id"].astype(str).to_numpy()
    elif "text_sha256" in t and t["text_sha256"].notna().all():
        pid = t["text_sha256"].astype(str).to_numpy()
    else:
        raise DataFormatError("decisions need a prompt_id (or text_sha256) to be grouped")
    w = ipw_weights(t["propensity"].to_numpy(float), clip=clip)
    long = pd.DataFrame({"prompt_id": pid, "llm": t["chosen"].astype(str).to_numpy(),
                         "score": t["outcome"].to_numpy(float), "w": w})
    texts = (t["text"].to_numpy() if "text" in t else np.full(len(t), None))
    prompts = pd.DataFrame({"prompt_id": pid, "text": [x if isinstance(x, str) else ""
                                                       for x in texts]})
    prompts = prompts.drop_duplicates("prompt_id").reset_index(drop=True)
    llms = pd.DataFrame({"name": llm_names})
    rec = PerformanceRecords.from_long(long[["prompt_id", "llm", "score"]], prompts=prompts,
                                       llms=llms, on_duplicate="mean", cost_col=None,
                                       name=name, source="decision log")
    W = np.zeros(rec.shape)
    rows = rec.prompt_index(list(long["prompt_id"]))
    cols = rec.llm_index(list(long["llm"]))
    np.add.at(W, (rows, cols), long["w"].to_numpy())
    return rec, W


def fit_logged(router, table: pd.DataFrame, warm_start: PerformanceRecords | None = None,
               clip: float | None = 10.0, weighting: str = "ips", encoder=None,
               side_features=(), llm_names=None, show_progress=None):
    """Fit ``router`` on logged decisions (partial feedback), optionally with a warm start.

    Parameters
    ----------
    router : Router
        An unfitted router (fitting replaces any previous state).
    table : pandas.DataFrame
        Decisions with outcomes (:func:`llmrec.data.read_decisions`).
    warm_start : PerformanceRecords, optional
        Full-information records (the data the deployed model was fitted on); added
        to the logged records with weight 1 per record.
    clip : float, optional
        Cap on the inverse-propensity weights.
    weighting : {"ips", "none"}
        ``"ips"`` uses the weights when the router supports them (``linear``); with a
        router that does not, the records are fitted unweighted and a warning says so.
    encoder, side_features, show_progress
        As in :meth:`Router.fit`.

    Returns
    -------
    Router
        The fitted router; ``router.logged_fit_`` records what was used.

    Examples
    --------
    >>> import pandas as pd
    >>> from llmrec.routers import make_router
    >>> t = pd.DataFrame({"prompt_id": ["p1", "p2", "p3", "p4"],
    ...                   "text": ["add two numbers", "write a poem", "sum 3 and 4", "a sonnet"],
    ...                   "candidates": [["math", "poet"]] * 4,
    ...                   "chosen": ["math", "poet", "poet", "math"],
    ...                   "propensity": [0.9, 0.9, 0.1, 0.1], "outcome": [1.0, 1.0, 0.0, 0.0]})
    >>> r = fit_logged(make_router("linear"), t)
    >>> r.logged_fit_["weighted"], r.logged_fit_["n_decisions"]
    (True, 4)
    """
    if weighting not in ("ips", "none"):
        raise ConfigError(f"weighting must be 'ips' or 'none', got {weighting!r}")
    if llm_names is None and warm_start is not None:
        llm_names = list(warm_start.llm_names)
    rec, W = logged_records(table, llm_names, clip=clip)
    train = rec
    if warm_start is not None:
        missing = [n for n in rec.llm_names if n not in set(warm_start.llm_names)]
        if missing:
            raise DataFormatError(f"warm_start records lack LLM(s) {missing[:5]} of the log")
        ws = warm_start.select_llms(rec.llm_names)
        clash = set(map(str, ws.prompt_ids)) & set(map(str, rec.prompt_ids))
        if clash:  # the same id in both: keep them apart as separate rows
            rec = _rename_prompts(rec, "logged:")
        train = PerformanceRecords.concat([ws, rec])
        W = np.vstack([ws.observed_dense().astype(float), W])
    weighted = weighting == "ips" and getattr(router, "supports_sample_weight", False)
    if weighting == "ips" and not weighted:
        warnings.warn(f"{type(router).__name__} cannot weight records; fitting the logged "
                      "records unweighted (use 'linear' for inverse-propensity weighting)",
                      UserWarning, stacklevel=2)
    kw = {"encoder": encoder, "side_features": side_features, "show_progress": show_progress}
    if weighted:
        kw["sample_weight"] = W
    router.fit(train, **kw)
    router.logged_fit_ = {"n_decisions": int(np.isfinite(table["outcome"].to_numpy(float)).sum()),
                          "n_logged_prompts": rec.n_prompts, "weighted": bool(weighted),
                          "clip": clip, "warm_start_prompts": 0 if warm_start is None
                          else warm_start.n_prompts}
    return router


def _rename_prompts(rec: PerformanceRecords, prefix: str) -> PerformanceRecords:
    prompts = rec.prompts.copy()
    prompts["prompt_id"] = prefix + prompts["prompt_id"].astype(str)
    return PerformanceRecords(rec.scores, prompts, rec.llms, observed=rec.observed,
                              cost=rec.cost, score_range=rec.score_range, name=rec.name)
