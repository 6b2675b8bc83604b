"""Read decision logs (what a deployed router chose, with which probability) and join
their outcomes.

The service and the proxy append one JSON object per decision to ``decisions.jsonl``
(fields in the module constant :data:`DECISION_FIELDS`) and outcomes posted to
``/v1/feedback`` by ``decision_id`` to a feedback log in the same folder. This module
reads both back as one table, one row per decision, with the outcome joined in
(``outcome`` is NaN where no feedback arrived). Off-policy evaluation
(:mod:`llmrec.evaluation.ope`) and learning from partial feedback
(:mod:`llmrec.policies.learning`) consume that table.

A torn last line (a crash in the middle of a write; nothing acknowledged is on it) is
skipped and counted in ``table.attrs["torn_lines"]``; any other unreadable line raises
:class:`~llmrec.errors.DataFormatError` naming the file and line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..errors import DataFormatError

__all__ = ["read_decisions", "DECISION_FIELDS", "REQUIRED_DECISION_FIELDS"]

#: fields of one decision line (INTERFACES.md)
DECISION_FIELDS = ("decision_id", "time", "prompt_id", "text_sha256", "text", "candidates",
                   "chosen", "rank", "score", "scores", "propensity", "policy", "router",
                   "router_version", "source")
#: the fields without which a decision cannot be evaluated off-policy
REQUIRED_DECISION_FIELDS = ("decision_id", "candidates", "chosen", "propensity")
DECISIONS_FILE = "decisions.jsonl"


def _read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], int]:
    """Objects of a JSONL file with their 1-based line numbers; a torn last line is skipped."""
    with open(path, "rb") as f:
        data = f.read()
    lines = data.split(b"\n")
    out, torn = [], 0
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        last = i == len(lines) - 1  # no newline after it: written in part
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            if last:
                torn += 1
                continue
            raise DataFormatError(f"{path}, line {i + 1}: not valid JSON; fix or delete that "
                                  "line (only a torn last line is skipped)") from None
        if not isinstance(obj, dict):
            if last:
                torn += 1
                continue
            raise DataFormatError(f"{path}, line {i + 1}: expected a JSON object")
        out.append((i + 1, obj))
    return out, torn


def _log_files(path: Path, outcomes) -> tuple[list[Path], list[Path]]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in (".jsonl", ".ndjson", ".parquet"))
        dec = [p for p in files if p.name.startswith("decisions")]
        if not dec:
            raise DataFormatError(f"{path}: no {DECISIONS_FILE} in this folder; point at the "
                                  "service's log directory or a decisions file")
        out = [p for p in files if p not in dec] if outcomes is None else []
    elif path.is_file():
        dec = [path]
        sib = path.parent / "feedback.jsonl"
        out = [sib] if outcomes is None and sib.is_file() and sib != path else []
    else:
        raise FileNotFoundError(os.strerror(2), str(path))
    if outcomes is not None:
        out = [Path(p) for p in ([outcomes] if isinstance(outcomes, (str, os.PathLike))
                                 else outcomes)]
        for p in out:
            if not p.is_file():
                raise FileNotFoundError(os.strerror(2), str(p))
    return dec, out


def _check_decision(obj: dict, where: str) -> None:
    missing = [k for k in REQUIRED_DECISION_FIELDS if k not in obj]
    if missing:
        raise DataFormatError(f"{where}: decision lacks field(s) {missing}")
    cands = obj["candidates"]
    if not isinstance(cands, list) or not cands:
        raise DataFormatError(f"{where}: 'candidates' must be a non-empty list of LLM names")
    if obj["chosen"] not in cands:
        raise DataFormatError(f"{where}: chosen LLM {obj['chosen']!r} is not among its "
                              "candidates")
    try:
        p = float(obj["propensity"])
    except (TypeError, ValueError):
        raise DataFormatError(f"{where}: 'propensity' {obj['propensity']!r} is not a number") \
            from None
    if not 0.0 < p <= 1.0:
        raise DataFormatError(f"{where}: 'propensity' must be in (0, 1], got {p}")
    sc = obj.get("scores")
    if sc is not None and (not isinstance(sc, list) or len(sc) != len(cands)):
        raise DataFormatError(f"{where}: 'scores' must list one score per candidate")


def read_decisions(path, outcomes=None, on_duplicate_outcome: str = "mean") -> pd.DataFrame:
    """Read a decision log and join the outcomes posted for its decisions.

    Parameters
    ----------
    path : str or Path
        The service's log directory (every ``decisions*.jsonl`` / ``.parquet`` in it is a
        decision log, every other ``.jsonl`` a feedback log), or one decisions file
        (its sibling ``feedback.jsonl`` is read for outcomes when present).
    outcomes : path or list of paths, optional
        Feedback logs to read instead of the default ones. Lines with a
        ``decision_id`` and a ``score`` are outcomes; other lines (plain
        prompt/LLM feedback) are ignored here.
    on_duplicate_outcome : {"mean", "last", "error"}
        Several outcomes for one decision: average them, keep the latest, or raise.

    Returns
    -------
    pandas.DataFrame
        One row per decision (first occurrence of a ``decision_id`` wins), columns
        :data:`DECISION_FIELDS` (missing optional ones are None) plus ``outcome``
        (float, NaN when none arrived) and ``n_outcomes``. ``attrs`` holds
        ``torn_lines`` (skipped torn last lines), ``orphan_outcomes`` (outcomes for
        decision ids not in the log) and ``files``.

    Examples
    --------
    >>> import json, os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> with open(os.path.join(d, "decisions.jsonl"), "w") as f:
    ...     _ = f.write(json.dumps({"decision_id": "a1", "candidates": ["m1", "m2"],
    ...                             "chosen": "m2", "propensity": 0.9}) + "\\n")
    ...     _ = f.write('{"decision_id": "a2", "cand')  # torn by a crash
    >>> with open(os.path.join(d, "feedback.jsonl"), "w") as f:
    ...     _ = f.write(json.dumps({"decision_id": "a1", "score": 1.0}) + "\\n")
    >>> t = read_decisions(d)
    >>> t[["decision_id", "chosen", "propensity", "outcome"]].values.tolist()
    [['a1', 'm2', 0.9, 1.0]]
    >>> t.attrs["torn_lines"]
    1
    """
    if on_duplicate_outcome not in ("mean", "last", "error"):
        raise DataFormatError(f"on_duplicate_outcome must be mean|last|error, got "
                              f"{on_duplicate_outcome!r}")
    path = Path(path)
    dec_files, out_files = _log_files(path, outcomes)
    rows, seen, torn = [], set(), 0
    for fp in dec_files:
        if fp.suffix.lower() == ".parquet":
            objs = [(i + 1, {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                             for k, v in r.items()})
                    for i, r in enumerate(pd.read_parquet(fp).to_dict("records"))]
        else:
            objs, t = _read_jsonl(fp)
            torn += t
        for line, obj in objs:
            if "chosen" not in obj and "decision_id" in obj and "score" in obj:
                continue  # an outcome written into the same file
            _check_decision(obj, f"{fp}, line {line}")
            did = str(obj["decision_id"])
            if did in seen:
                continue
            seen.add(did)
            rows.append({k: obj.get(k) for k in DECISION_FIELDS})
    outcome_objs = []
    for fp in dec_files + out_files:
        if fp.suffix.lower() == ".parquet":
            continue
        objs, t = _read_jsonl(fp)
        if fp in out_files:
            torn += t
        for line, obj in objs:
            if "chosen" in obj or "decision_id" not in obj or "score" not in obj:
                continue
            try:
                s = float(obj["score"])
            except (TypeError, ValueError):
                raise DataFormatError(f"{fp}, line {line}: outcome score {obj['score']!r} "
                                      "is not a number") from None
            if not np.isfinite(s):
                raise DataFormatError(f"{fp}, line {line}: outcome score must be finite")
            outcome_objs.append((str(obj["decision_id"]), s, obj.get("time"), f"{fp}:{line}"))
    table = pd.DataFrame(rows, columns=list(DECISION_FIELDS))
    table["decision_id"] = table["decision_id"].astype(str)
    table["propensity"] = table["propensity"].astype(float)
    by_id: dict[str, list[float]] = {}
    orphans = 0
    for did, s, _, where in outcome_objs:
        if did not in seen:
            orphans += 1
            continue
        lst = by_id.setdefault(did, [])
        if lst and on_duplicate_outcome == "error" and s != lst[-1]:
            raise DataFormatError(f"{where}: a second, different outcome for decision {did}")
        lst.append(s)
    agg = {k: (float(np.mean(v)) if on_duplicate_outcome == "mean" else v[-1])
           for k, v in by_id.items()}
    table["outcome"] = table["decision_id"].map(agg).astype(float)
    table["n_outcomes"] = table["decision_id"].map({k: len(v) for k, v in by_id.items()}) \
        .fillna(0).astype(int)
    table.attrs.update(torn_lines=torn, orphan_outcomes=orphans,
                       files=[str(p) for p in dec_files + out_files])
    return table


def decisions_to_arrays(table: pd.DataFrame, llm_names: Sequence[str],
                        require_outcome: bool = True) -> dict:
    """Arrays of a decision table over a fixed list of LLMs (internal integer ids).

    Returns a dict with ``chosen`` (n,), ``propensity`` (n,), ``reward`` (n,),
    ``mask`` (n, m) of candidates, ``rows`` (positions in ``table``) and ``logged_scores``
    (n, m, NaN where not logged). Decisions without an outcome are dropped when
    ``require_outcome``; decisions naming an LLM outside ``llm_names`` raise.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"candidates": [["a", "b"]], "chosen": ["b"], "propensity": [0.5],
    ...                   "outcome": [1.0], "scores": [[0.1, 0.7]]})
    >>> decisions_to_arrays(t, ["a", "b"])["chosen"]
    array([1])
    """
    index = {n: i for i, n in enumerate(llm_names)}
    keep = np.arange(len(table))
    if require_outcome:
        keep = np.flatnonzero(np.isfinite(table["outcome"].to_numpy(dtype=float)))
    n, m = len(keep), len(index)
    chosen = np.zeros(n, np.int64)
    mask = np.zeros((n, m), bool)
    logged = np.full((n, m), np.nan)
    cands_col = table["candidates"].to_numpy()
    chosen_col = table["chosen"].to_numpy()
    scores_col = table["scores"].to_numpy() if "scores" in table else [None] * len(table)
    for r, i in enumerate(keep):
        cands = list(cands_col[i])
        unknown = [c for c in cands if c not in index]
        if unknown:
            raise DataFormatError(f"decision {i}: LLM(s) {unknown[:5]} unknown to the model; "
                                  "evaluate a model over the same LLMs")
        pos = [index[c] for c in cands]
        mask[r, pos] = True
        chosen[r] = index[chosen_col[i]]
        sc = scores_col[i]
        if sc is not None and not (isinstance(sc, float) and np.isnan(sc)):
            logged[r, pos] = np.asarray(sc, dtype=float)
    return {"chosen": chosen, "propensity": table["propensity"].to_numpy(float)[keep],
            "reward": (table["outcome"].to_numpy(float)[keep] if "outcome" in table
                       else np.full(n, np.nan)),
            "mask": mask, "rows": keep, "logged_scores": logged}
