"""From scores to a training signal, read from the records' score kind.

Routing needs the *order* of LLMs within a prompt, not the absolute level of the
scores. The routers that learn from success / failure labels (the implicit-feedback
CF routers ALS, BPR and LightFM, and the multi-label classifier) therefore derive
their labels here, never from a hard-coded threshold:

* ``feedback="relative"`` (the default): a record is judged against the prompt's
  mean over the LLMs observed on it. It is positive when the LLM did clearly better
  than that mean: above ``mean + top * (best - mean)`` with ``top = 0.8`` (for
  binary scores simply "succeeded where some LLM failed"); every other record is
  negative. The margin ``score - prompt mean``, divided by the mean absolute margin
  of the training records, is the confidence (weight); records at exactly the
  mean (e.g. every LLM solved the prompt) carry no signal (weight 0). This works
  the same for every score kind: on preference data a reference LLM fixed at 0.5
  is positive only where the other LLMs lose to it. (Plain "above the mean" made
  consistently average LLMs look best on graded and preference data: on synthetic
  preference records ALS / BPR / LightFM reached mu 0.71-0.72 with it against
  0.78 with ``top=0.8``, the level of kNN.)
* ``feedback="threshold"``: a record is positive when its score reaches a
  threshold. ``threshold=None`` takes the kind's default: 0.5 for binary and graded
  scores, the midpoint of the score range for judge scores, and *strictly above*
  0.5 for preferences (a tie with the reference is not a success). The weight is
  the score rescaled to [0, 1] for positives and one minus that for negatives.

:func:`per_prompt_centered` gives the other half of the same idea to routers that
regress scores: the score minus the prompt's mean (the user-bias term of classic
rating models).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..data.records import PerformanceRecords
from ..errors import ConfigError

__all__ = ["Feedback", "implicit_feedback", "default_threshold", "resolve_feedback",
           "per_prompt_centered", "prompt_means", "warn_constant_llms", "ConstantScoreWarning",
           "FEEDBACK_MODES"]

FEEDBACK_MODES = ("relative", "threshold")
#: share of the way from the prompt's mean to its best score that a positive must pass
RELATIVE_TOP = 0.8


class ConstantScoreWarning(UserWarning):
    """An LLM's training scores are all equal: it carries no per-prompt signal."""


@dataclass
class Feedback:
    """Implicit feedback of every observed record (COO order of ``records.scores``).

    ``positive`` says whether the record counts as a success; ``weight`` (>= 0) is
    its confidence; ``margin`` is the signed signal it came from (relative margin,
    or score minus threshold).
    """

    rows: np.ndarray
    cols: np.ndarray
    positive: np.ndarray
    weight: np.ndarray
    margin: np.ndarray
    mode: str
    threshold: float | None


def resolve_feedback(feedback: str | None, threshold: float | None) -> str:
    """The feedback mode a router uses: an explicit threshold selects ``"threshold"``.

    Examples
    --------
    >>> resolve_feedback(None, None), resolve_feedback(None, 0.7)
    ('relative', 'threshold')
    """
    if feedback is None:
        return "threshold" if threshold is not None else "relative"
    if feedback not in FEEDBACK_MODES:
        raise ConfigError(f"feedback must be one of {FEEDBACK_MODES}, got {feedback!r}")
    return feedback


def _bounds(records: PerformanceRecords) -> tuple[float, float]:
    if records.score_range is not None:
        return float(records.score_range[0]), float(records.score_range[1])
    d = records.scores.data
    if records.score_kind in ("binary", "graded", "preference") or not d.size:
        return 0.0, 1.0
    return float(d.min()), float(d.max())


def default_threshold(records: PerformanceRecords) -> tuple[float, bool]:
    """(threshold, strict) of the kind's default success rule.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> default_threshold(make_synthetic(20, 3, seed=0, kind="preference"))
    (0.5, True)
    >>> default_threshold(make_synthetic(20, 3, seed=0, kind="judge"))
    (5.5, False)
    """
    kind = getattr(records, "score_kind", None)
    if kind == "preference":
        return 0.5, True
    lo, hi = _bounds(records)
    if kind == "judge":
        return (lo + hi) / 2.0, False
    return 0.5, False


def prompt_means(records: PerformanceRecords) -> np.ndarray:
    """Per-prompt mean score over the observed LLMs (NaN for a prompt with no record)."""
    counts = np.diff(records.scores.indptr)
    rows = np.repeat(np.arange(records.n_prompts), counts)
    sums = np.bincount(rows, weights=records.scores.data.astype(np.float64),
                       minlength=records.n_prompts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def implicit_feedback(records: PerformanceRecords, feedback: str = "relative",
                      threshold: float | None = None, top: float = RELATIVE_TOP) -> Feedback:
    """Positive / negative labels with confidences for every observed record.

    Parameters
    ----------
    records : PerformanceRecords
    feedback : {"relative", "threshold"}
        See the module docstring.
    threshold : float, optional
        Success threshold of ``feedback="threshold"`` (score >= threshold);
        None takes the score kind's default (:func:`default_threshold`).
    top : float in [0, 1)
        ``feedback="relative"``: a positive scores above
        ``mean + top * (best - mean)`` of its prompt.

    Examples
    --------
    >>> import numpy as np
    >>> from llmrec.data import PerformanceRecords
    >>> rec = PerformanceRecords(np.array([[0.5, 0.9, 0.1]]), {"prompt_id": ["p"]},
    ...                          {"name": ["ref", "a", "b"]}, score_kind="preference",
    ...                          reference_llm="ref")
    >>> fb = implicit_feedback(rec)
    >>> fb.positive.tolist(), [round(float(m), 2) for m in fb.margin]
    ([False, True, False], [0.0, 0.4, -0.4])
    >>> implicit_feedback(rec, "threshold").positive.tolist()
    [False, True, False]
    """
    mode = resolve_feedback(feedback, None)
    sc = records.scores
    n, nnz = records.n_prompts, sc.nnz
    counts = np.diff(sc.indptr)
    # CSR order, no COO copy: rows expanded once (int32 where it fits), columns are the
    # records' own index array; the arithmetic runs in float64 over blocks of records
    # and is stored as float32 (RouterEval scale: 340M records)
    itype = np.int32 if max(records.shape) < 2 ** 31 else np.int64
    rows = np.repeat(np.arange(n, dtype=itype), counts)
    cols = sc.indices
    positive = np.empty(nnz, dtype=bool)
    weight = np.empty(nnz, dtype=np.float32)
    margin = np.empty(nnz, dtype=np.float32)
    blocks = [slice(s0, min(s0 + _FEEDBACK_BLOCK, nnz)) for s0 in range(0, nnz, _FEEDBACK_BLOCK)]
    if mode == "relative":
        if not 0.0 <= top < 1.0:
            raise ConfigError(f"top must be in [0, 1), got {top}")
        pm = prompt_means(records)
        best = np.full(n, -np.inf)
        full = np.flatnonzero(counts > 0)
        if len(full):
            best[full] = np.maximum.reduceat(sc.data, sc.indptr[full]).astype(np.float64)
        tol = 1e-6 * max(1.0, float(np.abs(sc.data).max(initial=0)))
        abs_sum, n_nonzero = 0.0, 0
        for b in blocks:
            s = sc.data[b].astype(np.float64)
            r = rows[b]
            mu = pm[r]
            m = s - mu
            m[np.abs(m) <= tol] = 0.0
            positive[b] = (m > 0) & (s > mu + top * (best[r] - mu))
            margin[b] = m
            abs_sum += float(np.abs(m).sum())
            n_nonzero += int(np.count_nonzero(m))
        scale = abs_sum / n_nonzero if n_nonzero else 1.0
        for b in blocks:
            weight[b] = np.abs(margin[b].astype(np.float64)) / scale
        thr = None
    else:
        if threshold is None:
            thr, strict = default_threshold(records)
        else:
            thr, strict = float(threshold), False
        lo, hi = _bounds(records)
        for b in blocks:
            s = sc.data[b].astype(np.float64)
            ok = s > thr if strict else s >= thr
            sn = np.clip((s - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.ones_like(s)
            positive[b] = ok
            weight[b] = np.where(ok, sn, 1.0 - sn)
            margin[b] = s - thr
    return Feedback(rows, cols, positive, weight, margin, mode, thr)


#: records per block of :func:`implicit_feedback`'s float64 arithmetic
_FEEDBACK_BLOCK = 1 << 22


def feedback_csr(records: PerformanceRecords, values: np.ndarray,
                 keep: np.ndarray | None = None):
    """A CSR matrix (float32) of per-record ``values`` (in the records' CSR order, as
    :func:`implicit_feedback` returns them) where ``keep``, built on the records' own
    structure: no COO sort, and no copy of the column index when every record is kept.

    Examples
    --------
    >>> import numpy as np
    >>> from llmrec.datasets import make_synthetic
    >>> rec = make_synthetic(4, 3, seed=0, binary=False)
    >>> fb = implicit_feedback(rec)
    >>> M = feedback_csr(rec, fb.weight, fb.weight > 0)
    >>> np.allclose(M.toarray()[fb.rows, fb.cols], np.where(fb.weight > 0, fb.weight, 0))
    True
    """
    import scipy.sparse as sp
    sc = records.scores
    values = np.asarray(values, dtype=np.float32)
    if keep is None or keep.all():
        M = sp.csr_matrix((values, sc.indices, sc.indptr), shape=records.shape, copy=False)
    else:
        # kept records before each row start = the new row pointers (no upcast)
        kept_before = np.zeros(sc.nnz + 1, dtype=sc.indptr.dtype)
        np.cumsum(keep, out=kept_before[1:])
        M = sp.csr_matrix((values[keep], sc.indices[keep], kept_before[sc.indptr]),
                          shape=records.shape)
    M.has_sorted_indices = bool(getattr(sc, "has_sorted_indices", False))
    return M


def per_prompt_centered(records: PerformanceRecords) -> tuple[np.ndarray, np.ndarray]:
    """(dense scores minus each prompt's mean, 0 where unobserved; observed mask).

    Examples
    --------
    >>> import numpy as np
    >>> from llmrec.data import PerformanceRecords
    >>> rec = PerformanceRecords(np.array([[1.0, 0.0], [1.0, np.nan]]), {"prompt_id": ["a", "b"]},
    ...                          {"name": ["x", "y"]})
    >>> per_prompt_centered(rec)[0].tolist()
    [[0.5, -0.5], [0.0, 0.0]]
    """
    dense, obs = records.dense(fill=0.0).astype(np.float64), records.observed_dense()
    mu = np.nan_to_num(prompt_means(records))
    return np.where(obs, dense - mu[:, None], 0.0).astype(np.float32), obs


#: records per chunk of :func:`warn_constant_llms`
_CONST_CHUNK = 1 << 22


def warn_constant_llms(records: PerformanceRecords, what: str = "fit") -> list[str]:
    """Warn (:class:`ConstantScoreWarning`) about LLMs whose training scores are all
    equal (at least two records), and return their names.

    Such an LLM carries no per-prompt signal; a preference reference LLM at a
    constant 0.5 is the usual case, and it is expected there (no warning).
    """
    n = records.n_llms
    idx, d = records.scores.indices, records.scores.data
    cnt = np.bincount(idx, minlength=n)
    if not cnt.any():
        return []
    # per-LLM min and max over chunks of records (float32, no copy of the matrix); stop
    # as soon as every LLM with two or more records is known to vary, which on real
    # data is within the first chunk
    names_all = records.llm_names
    need = cnt >= 2  # the LLMs to decide (a declared reference is expected constant)
    ref = getattr(records, "reference_llm", None)
    if ref in names_all:
        need[names_all.index(ref)] = False
    mn = np.full(n, np.inf, dtype=np.float64)
    mx = np.full(n, -np.inf, dtype=np.float64)
    chunk = _CONST_CHUNK
    for s0 in range(0, len(idx), chunk):
        np.minimum.at(mn, idx[s0:s0 + chunk], d[s0:s0 + chunk])
        np.maximum.at(mx, idx[s0:s0 + chunk], d[s0:s0 + chunk])
        if not (need & ~(mx > mn)).any():
            break
    const = need & (mn == mx)
    names = [nm for nm, c in zip(names_all, const) if c]
    if names:
        shown = ", ".join(f"{nm} ({mn[names_all.index(nm)]:g})" for nm in names[:5])
        warnings.warn(f"{what}: LLM(s) with a constant training score carry no per-prompt "
                      f"signal: {shown}{' ...' if len(names) > 5 else ''}; check the records "
                      "(a preference reference LLM should be declared as reference_llm)",
                      ConstantScoreWarning, stacklevel=3)
    return names
