"""EmbedLLM / llm2vec correctness tables (thwu1/llm2vec ``data/``).

* ``triple_correctness.csv``: long ``model_id, prompt_id, label`` (0/1).
* ``mmlu_correctness_1k.csv``: wide, one row per model (row position = model id),
  one column per prompt id.

Models and prompts are anonymous integer ids; names are kept as strings (``"0"``..).
There is no prompt text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...errors import DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_table


def read_embedllm(path, benchmark: str | None = "mmlu") -> PerformanceRecords:
    """Read the llm2vec long (``model_id, prompt_id, label``) or wide correctness CSV.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "t.csv"
    >>> _ = f.write_text("model_id,prompt_id,label\\n0,0,1\\n1,0,0\\n")
    >>> read_embedllm(f).dense().tolist()
    [[1.0, 0.0]]
    """
    p = as_path(path, "EmbedLLM CSV")
    if p.is_dir():
        p = p / "triple_correctness.csv"
    df = read_table(p, "EmbedLLM CSV", dtype=str)
    if len(df) == 0:
        raise DataFormatError(f"{p}: no rows")
    if {"model_id", "prompt_id", "label"} <= set(df.columns):
        rec = PerformanceRecords.from_long(df, prompt_col="prompt_id", llm_col="model_id",
                                           score_col="label", cost_col=None,
                                           score_range=(0.0, 1.0), name="embedllm",
                                           source=str(p), score_kind="binary")
        # integer ids in numeric order
        rec = rec.select_prompts(sorted(rec.prompt_ids, key=_num)).select_llms(
            sorted(rec.llm_names, key=_num))
    else:
        cols = list(df.columns)
        if not all(c.strip().lstrip("-").isdigit() for c in cols):
            raise DataFormatError(f"{p}: expected columns model_id, prompt_id, label (long) or "
                                  f"integer prompt ids (wide); found {cols[:8]}")
        vals = df.apply(pd.to_numeric, errors="coerce")
        bad = vals.isna() & df.notna()
        if bad.to_numpy().any():
            r, c = np.argwhere(bad.to_numpy())[0]
            raise DataFormatError(f"{p}, line {r + 2}, column '{cols[c]}': "
                                  f"{df.iloc[r, c]!r} is not 0 or 1")
        arr = vals.to_numpy(dtype=np.float32).T  # prompts x models
        rec = PerformanceRecords(arr, pd.DataFrame({"prompt_id": cols}),
                                 pd.DataFrame({"name": [str(i) for i in range(len(df))]}),
                                 score_range=(0.0, 1.0), name="embedllm",
                                 score_kind="binary")
    if benchmark:
        rec.prompts["benchmark"] = benchmark
    return rec


def _num(x):
    try:
        return (0, int(x), "")
    except ValueError:
        return (1, 0, str(x))
