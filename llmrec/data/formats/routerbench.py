"""RouterBench wide CSVs (as shipped in RouterDC's ``datasets/routerbench_zs``).

Columns: ``sample_id, prompt, eval_name``, one score column per model, per-model
``<model>|total_cost`` (USD for that record) and ``<model>|model_response``, and
``oracle_model_to_route_to``. An empty score cell is unobserved. RouterBench repeats
some ``sample_id`` values for different prompts, so the prompt id is the original row
number (the unnamed first column) as ``routerbench/<row>``; ``sample_id`` is kept.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_table, require_columns

_META_COLS = {"Unnamed: 0", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"}
_SPLIT = re.compile(r"_(train|test|val)$")


def unwrap_prompt(text) -> str:
    """RouterBench stores prompts as the ``str()`` of a Python list; return the text.

    >>> unwrap_prompt("['What is 2+2?']")
    'What is 2+2?'
    >>> unwrap_prompt("plain")
    'plain'
    """
    if not isinstance(text, str):
        return "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        try:
            val = ast.literal_eval(s)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
        if isinstance(val, list) and all(isinstance(v, str) for v in val):
            return "\n".join(val)
    return text


def _files(path, split) -> list[Path]:
    p = as_path(path, "RouterBench CSV or folder")
    files = sorted(p.glob("*.csv")) if p.is_dir() else [p]
    if not files:
        raise DataFormatError(f"{p}: no .csv files in this folder")
    if split is not None:
        if split not in ("train", "test", "val"):
            raise ConfigError(f"split must be 'train', 'test' or None, got {split!r}")
        files = [f for f in files if (m := _SPLIT.search(f.stem)) and m.group(1) == split]
        if not files:
            raise DataFormatError(f"{p}: no *_{split}.csv file")
    return files


def read_routerbench(path, split: str | None = None) -> PerformanceRecords:
    """Read RouterBench wide CSV file(s) (scores in [0, 1], per-record cost in USD).

    Parameters
    ----------
    path : str or Path
        One ``<benchmark>_<split>.csv`` or a folder of them.
    split : {"train", "test"}, optional
        Only files of that split.

    Returns
    -------
    PerformanceRecords
        Prompt table: ``prompt_id, text, benchmark (eval_name), category, split,
        sample_id, oracle_model``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "x_train.csv"
    >>> _ = f.write_text(",sample_id,prompt,eval_name,m,m|total_cost\\n"
    ...                  "0,a.1,['hi'],x,1.0,0.002\\n")
    >>> read_routerbench(f).cost_dense()
    array([[0.002]], dtype=float32)
    """
    longs, ptabs, names = [], [], []
    for f in _files(path, split):
        df = read_table(f, "RouterBench CSV", dtype={"sample_id": str})
        require_columns(df, ["sample_id", "prompt"], f)
        if len(df) == 0:
            raise DataFormatError(f"{f}: no rows")
        models = [c for c in df.columns if "|" not in c and c not in _META_COLS]
        if not models:
            raise DataFormatError(f"{f}: no model score columns (every column other than "
                                  f"{sorted(_META_COLS)} and '<model>|...' is a model)")
        m = _SPLIT.search(f.stem)
        fsplit = m.group(1) if m else None
        bench = df["eval_name"].astype(str) if "eval_name" in df else pd.Series(
            _SPLIT.sub("", f.stem), index=df.index)
        if "Unnamed: 0" in df.columns:
            ids = "routerbench/" + df["Unnamed: 0"].astype(str)
        else:
            ids = df["sample_id"].astype(str)
        ptab = pd.DataFrame({"prompt_id": ids.to_numpy(),
                             "text": [unwrap_prompt(t) for t in df["prompt"]],
                             "benchmark": bench.to_numpy(), "category": None,
                             "split": fsplit, "sample_id": df["sample_id"].to_numpy()})
        if "oracle_model_to_route_to" in df:
            ptab["oracle_model"] = df["oracle_model_to_route_to"].to_numpy()
        ptabs.append(ptab)
        for mname in models:
            raw = df[mname]
            score = pd.to_numeric(raw, errors="coerce")
            bad = score.isna() & raw.notna()
            if bad.any():
                row = int(np.flatnonzero(bad.to_numpy())[0])
                raise DataFormatError(f"{f}, row {row}, column '{mname}': score {raw.iloc[row]!r} "
                                      "is not a number")
            keep = score.notna().to_numpy()
            part = pd.DataFrame({"prompt_id": ids.to_numpy()[keep], "llm": mname,
                                 "score": score.to_numpy()[keep]})
            ccol = f"{mname}|total_cost"
            if ccol in df.columns:
                cost = pd.to_numeric(df[ccol], errors="coerce").to_numpy()[keep]
                part["cost"] = cost
            longs.append(part)
            if mname not in names:
                names.append(mname)
    long = pd.concat(longs, ignore_index=True)
    if "cost" in long.columns and long["cost"].isna().any():
        # a model without a cost column in one file: costs are incomplete, drop them
        long = long.drop(columns="cost")
    prompts = pd.concat(ptabs, ignore_index=True)
    src = str(path)
    return PerformanceRecords.from_long(long, prompts, pd.DataFrame({"name": names}),
                                        score_range=(0.0, 1.0), name="routerbench", source=src,
                                        score_kind="graded")
