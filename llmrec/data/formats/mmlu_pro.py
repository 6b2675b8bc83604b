"""MMLU-Pro (TIGER-AI-Lab/MMLU-Pro): the derived correctness matrix and the native zips.

* ``correctness_matrix.csv``: ``question_id`` then one 0/1 column per model
  (``<model>_5shots``); an empty cell is unobserved. ``questions.jsonl`` next to it
  gives the text (question + lettered options), ``category`` and ``src``.
* ``eval_results/model_outputs_<model>_5shots.zip``: one JSON list per model with
  ``question_id, question, options, answer, pred, category, src, ...``; a record is
  correct when ``pred == answer`` (a missing ``pred`` is wrong).

Model names drop the ``_<k>shots`` suffix in both readers, so the two agree.
"""

from __future__ import annotations

import json
import re
import string
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_table, require_columns

BENCHMARK = "mmlu_pro"
_SHOTS = re.compile(r"_\d+shots$")
_ZIP = re.compile(r"^model_outputs_(.+?)\.zip$")


def model_name(column: str) -> str:
    """Model name without the ``_<k>shots`` suffix.

    >>> model_name("Llama-2-7b-hf_5shots")
    'Llama-2-7b-hf'
    """
    return _SHOTS.sub("", str(column))


def question_text(question: str, options) -> str:
    """``question`` followed by the options as ``A. ...`` lines.

    >>> question_text("2+2?", ["3", "4"])
    '2+2?\\nA. 3\\nB. 4'
    """
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except json.JSONDecodeError:
            options = [options]
    opts = list(options) if options is not None else []
    letters = string.ascii_uppercase
    return "\n".join([str(question)] + [f"{letters[i]}. {o}" for i, o in enumerate(opts)])


def _prompt_table(q: pd.DataFrame, source) -> pd.DataFrame:
    require_columns(q, ["question_id", "question", "options"], source)
    out = pd.DataFrame({
        "prompt_id": q["question_id"].astype(str).to_numpy(),
        "text": [question_text(a, b) for a, b in zip(q["question"], q["options"])],
        "benchmark": BENCHMARK,
        "category": q["category"].to_numpy() if "category" in q else None,
    })
    for extra in ("src", "answer"):
        if extra in q.columns:
            out[extra] = q[extra].to_numpy()
    return out


def read_mmlu_pro(path, questions=None) -> PerformanceRecords:
    """Read the MMLU-Pro correctness matrix (binary, ``score_range`` (0, 1)).

    Parameters
    ----------
    path : str or Path
        ``correctness_matrix.csv`` or the folder holding it (and ``questions.jsonl``).
    questions : str or Path, optional
        ``questions.jsonl``; defaults to the file next to the matrix (if present).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "correctness_matrix.csv").write_text(
    ...     "question_id,m_5shots,n_5shots\\n1,1,\\n2,0,1\\n")
    >>> rec = read_mmlu_pro(d)
    >>> rec.llm_names, rec.n_observed
    (['m', 'n'], 3)
    """
    p = as_path(path, "MMLU-Pro matrix or folder")
    if p.is_dir():
        p = p / "correctness_matrix.csv"
    m = read_table(p, "MMLU-Pro correctness matrix", dtype={"question_id": str})
    require_columns(m, ["question_id"], p)
    if len(m) == 0 or m.shape[1] < 2:
        raise DataFormatError(f"{p}: empty matrix; expected question_id and one column per model")
    cols = [c for c in m.columns if c != "question_id"]
    names = [model_name(c) for c in cols]
    vals = m[cols].apply(pd.to_numeric, errors="coerce")
    bad = vals.isna() & m[cols].notna()
    if bad.to_numpy().any():
        r, c = np.argwhere(bad.to_numpy())[0]
        raise DataFormatError(f"{p}, line {r + 2}, column '{cols[c]}': value "
                              f"{m[cols[c]].iloc[r]!r} is not a number (expected 0, 1 or empty)")
    arr = vals.to_numpy(dtype=np.float32)
    q_path = Path(questions) if questions is not None else p.parent / "questions.jsonl"
    ids = m["question_id"].astype(str)
    if questions is not None or q_path.is_file():
        q = read_table(q_path, "MMLU-Pro questions")
        ptab = _prompt_table(q, q_path)
        pos = pd.Index(ptab["prompt_id"]).get_indexer(ids)
        if (pos < 0).any():
            row = int(np.flatnonzero(pos < 0)[0])
            raise DataFormatError(f"{p}, line {row + 2}: question_id '{ids.iloc[row]}' is not in "
                                  f"{q_path}; use the questions file of the same release")
        ptab = ptab.iloc[pos].reset_index(drop=True)
    else:
        ptab = pd.DataFrame({"prompt_id": ids.to_numpy(), "text": "", "benchmark": BENCHMARK,
                             "category": None})
    return PerformanceRecords(arr, ptab, pd.DataFrame({"name": names}), score_range=(0.0, 1.0),
                              score_kind="binary",
                              name="mmlu-pro")


def _read_zip(path: Path) -> list:
    try:
        with zipfile.ZipFile(path) as z:
            members = [n for n in z.namelist() if n.endswith(".json")]
            if len(members) != 1:
                raise DataFormatError(f"{path}: expected one .json member, found {z.namelist()}")
            raw = z.read(members[0])
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as e:
        raise DataFormatError(f"{path}: corrupt or truncated zip ({e}); download it again"
                              ) from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"{path}: broken JSON inside the zip ({e})") from None
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected a JSON list of answers, got "
                              f"{type(data).__name__}")
    return data


def read_mmlu_pro_zips(paths) -> PerformanceRecords:
    """Read native ``model_outputs_<model>_5shots.zip`` files (score = ``pred == answer``).

    Parameters
    ----------
    paths : str, Path or list of them
        A folder (every ``model_outputs_*.zip`` in it, sorted by name) or zip files.

    Returns
    -------
    PerformanceRecords
        Prompts in order of first appearance; a question that a model did not answer
        is unobserved for that model.

    Examples
    --------
    >>> import json, tempfile, zipfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rows = [{"question_id": 1, "question": "q", "options": ["x", "y"], "answer": "B",
    ...          "pred": "B", "category": "math"}]
    >>> with zipfile.ZipFile(d / "model_outputs_m_5shots.zip", "w") as z:
    ...     z.writestr("model_outputs_m_5shots.json", json.dumps(rows))
    >>> read_mmlu_pro_zips(d).dense()
    array([[1.]], dtype=float32)
    """
    if isinstance(paths, (str, Path)):
        p = as_path(paths, "MMLU-Pro zip or folder")
        files = sorted(p.glob("model_outputs_*.zip")) if p.is_dir() else [p]
        if not files:
            raise DataFormatError(f"{p}: no model_outputs_*.zip files in this folder")
    else:
        files = [as_path(f, "MMLU-Pro zip") for f in paths]
    if not files:
        raise DataFormatError("read_mmlu_pro_zips: no zip files given")
    prompt_rows: dict[str, dict] = {}
    longs, names = [], []
    for f in files:
        mt = _ZIP.match(f.name)
        name = model_name(mt.group(1)) if mt else model_name(f.stem)
        data = _read_zip(f)
        if not data:
            raise DataFormatError(f"{f}: empty answer list")
        qids, scores = [], []
        for i, row in enumerate(data):
            if not isinstance(row, dict) or "question_id" not in row or "answer" not in row:
                raise DataFormatError(f"{f}, element {i}: expected an object with "
                                      "'question_id' and 'answer' (and 'pred')")
            qid = str(row["question_id"])
            qids.append(qid)
            pred = row.get("pred")
            scores.append(1.0 if pred is not None and pred == row["answer"] else 0.0)
            if qid not in prompt_rows:
                prompt_rows[qid] = {"question_id": qid, "question": row.get("question", ""),
                                    "options": row.get("options") or [],
                                    "category": row.get("category"), "src": row.get("src"),
                                    "answer": row["answer"]}
        longs.append(pd.DataFrame({"prompt_id": qids, "llm": name, "score": scores}))
        names.append(name)
    if len(set(names)) != len(names):
        raise DataFormatError(f"two zip files give the same model name: {names}")
    ptab = _prompt_table(pd.DataFrame(list(prompt_rows.values())), "MMLU-Pro zips")
    return PerformanceRecords.from_long(pd.concat(longs, ignore_index=True), ptab,
                                        pd.DataFrame({"name": names}), score_range=(0.0, 1.0),
                                        score_kind="binary",
                                        name="mmlu-pro", source=", ".join(map(str, files)),
                                        cost_col=None)
