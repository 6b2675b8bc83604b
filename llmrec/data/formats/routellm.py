"""RouteLLM evaluation responses (lm-sys/RouteLLM ``routellm/evals/``).

* MMLU: ``mmlu/responses/mmlu_<subject>.csv`` with ``prompt`` and one boolean column
  per model (True = correct). Category = subject.
* GSM8K: ``gsm8k_responses.csv``: the same, plus ``<model>_response`` text columns.
* MT-Bench: ``judgements.jsonl`` (GPT-4 judge scores 1-10 per question, model and
  turn) with ``question.jsonl`` (text of the turns, category). One prompt per
  (question, turn); the text of turn 2 holds both user turns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_table, require_columns


def _wide_bool(f: Path, benchmark: str, category, id_prefix: str):
    df = read_table(f, "RouteLLM responses CSV")
    require_columns(df, ["prompt"], f)
    if len(df) == 0:
        raise DataFormatError(f"{f}: no rows")
    models = [c for c in df.columns if c != "prompt" and not c.endswith("_response")]
    if not models:
        raise DataFormatError(f"{f}: no model columns besides 'prompt'")
    ids = [f"{id_prefix}/{i}" for i in range(len(df))]
    longs = []
    for m in models:
        col = df[m]
        if col.dtype == bool:
            vals = col.to_numpy(dtype=np.float64)
            keep = np.ones(len(col), bool)
        else:
            low = col.astype(str).str.strip().str.lower()
            mapped = low.map({"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0, "1.0": 1.0,
                              "0.0": 0.0})
            keep = col.notna().to_numpy()
            bad = mapped.isna().to_numpy() & keep
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                # 1-based file line: the header is line 1 (a quoted multi-line cell above
                # would shift it, which these single-line CSVs do not have)
                raise DataFormatError(f"{f}, line {row + 2}, column '{m}': '{col.iloc[row]}' "
                                      "is not True/False")
            vals = mapped.to_numpy(dtype=np.float64)
        longs.append(pd.DataFrame({"prompt_id": np.asarray(ids)[keep], "llm": m,
                                   "score": vals[keep]}))
    ptab = pd.DataFrame({"prompt_id": ids, "text": df["prompt"].astype(str).to_numpy(),
                         "benchmark": benchmark, "category": category})
    return longs, ptab, models


def read_routellm_csv(paths, benchmark: str | None = None, name: str = "routellm"
                      ) -> PerformanceRecords:
    """Read RouteLLM boolean response CSV(s) (binary scores).

    Parameters
    ----------
    paths : str, Path or list
        A folder of ``mmlu_<subject>.csv`` files (MMLU), one CSV (e.g. GSM8K), or a list.
    benchmark : str, optional
        Default: ``mmlu`` for ``mmlu_*`` files, else the file stem before ``_``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "mmlu_anatomy.csv"
    >>> _ = f.write_text("prompt,weak,strong\\nq1,False,True\\n")
    >>> rec = read_routellm_csv(f)
    >>> rec.dense().tolist(), rec.prompts.category[0]
    ([[0.0, 1.0]], 'anatomy')
    """
    if isinstance(paths, (str, Path)):
        p = as_path(paths, "RouteLLM CSV or folder")
        files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    else:
        files = [as_path(f, "RouteLLM CSV") for f in paths]
    if not files:
        raise DataFormatError(f"{paths}: no .csv files")
    longs, ptabs, names = [], [], {}
    for f in files:
        stem = f.stem
        if stem.startswith("mmlu_"):
            bench, cat = benchmark or "mmlu", stem[len("mmlu_"):]
        else:
            bench, cat = benchmark or stem.split("_")[0], None
        lg, pt, ms = _wide_bool(f, bench, cat, f"{bench}/{cat}" if cat else bench)
        longs += lg
        ptabs.append(pt)
        names.update(dict.fromkeys(ms))
    return PerformanceRecords.from_long(
        pd.concat(longs, ignore_index=True), pd.concat(ptabs, ignore_index=True),
        pd.DataFrame({"name": list(names)}), score_range=(0.0, 1.0), name=name,
        score_kind="binary",
        source=str(paths), cost_col=None)


def read_mt_bench(judgements, questions=None) -> PerformanceRecords:
    """Read MT-Bench GPT-4 judgements (scores 1-10) as records.

    Parameters
    ----------
    judgements : str or Path
        ``judgements.jsonl`` (fields ``question_id, model, score, turn``), or the
        folder holding ``mt_bench_judgements.jsonl`` and ``mt_bench_question.jsonl``.
    questions : str or Path, optional
        ``question.jsonl`` (``question_id, category, turns``).

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "j.jsonl").write_text(json.dumps(
    ...     {"question_id": 1, "model": "m", "score": 9, "turn": 1}) + "\\n")
    >>> read_mt_bench(d / "j.jsonl").dense()
    array([[9.]], dtype=float32)
    """
    p = as_path(judgements, "MT-Bench judgements")
    if p.is_dir():
        questions = questions or (p / "mt_bench_question.jsonl")
        p = p / "mt_bench_judgements.jsonl"
    j = read_table(p, "MT-Bench judgements")
    require_columns(j, ["question_id", "model", "score", "turn"], p)
    if len(j) == 0:
        raise DataFormatError(f"{p}: no judgements")
    turn = pd.to_numeric(j["turn"], errors="coerce")
    if turn.isna().any():
        row = int(np.flatnonzero(turn.isna().to_numpy())[0])
        raise DataFormatError(f"{p}, record {row + 1}, field 'turn': '{j['turn'].iloc[row]}' "
                              "is not 1 or 2")
    j = j.assign(prompt_id=j["question_id"].astype(str) + "/turn"
                 + turn.astype(int).astype(str))
    ptab = None
    if questions is not None and Path(questions).is_file():
        q = read_table(questions, "MT-Bench questions")
        require_columns(q, ["question_id", "turns"], questions)
        rows = []
        for r in q.itertuples(index=False):
            turns = list(r.turns) if isinstance(r.turns, (list, tuple)) else [str(r.turns)]
            for t in range(1, len(turns) + 1):
                rows.append({"prompt_id": f"{r.question_id}/turn{t}",
                             "text": "\n\n".join(str(x) for x in turns[:t]),
                             "benchmark": "mt_bench",
                             "category": getattr(r, "category", None), "turn": t})
        ptab = pd.DataFrame(rows)
        ptab = ptab[ptab["prompt_id"].isin(set(j["prompt_id"]))].reset_index(drop=True)
    rec = PerformanceRecords.from_long(j, ptab, prompt_col="prompt_id", llm_col="model",
                                       score_col="score", cost_col=None, score_range=(1.0, 10.0),
                                       score_kind="judge",
                                       name="routellm-mt-bench", source=str(p))
    if ptab is None:
        rec.prompts["benchmark"] = "mt_bench"
    return rec
