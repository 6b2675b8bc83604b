"""LLMRouter (ulab-uiuc/LLMRouter) DC-router JSON and its LLM price table.

``dcrouter_{train,test}.json``: a JSON list of ``{"question", "scores": {llm: score}[,
"cluster_id"]}`` (9 LLMs, scores in [0, 1]). ``default_llm.json``: ``{llm: {"size":
"7B", "feature": description, "input_price", "output_price" (USD per 1M tokens),
"model": provider path, "service"}}``, which becomes the LLM table (LLMs of the price
table without records are left out).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from ...errors import ConfigError, DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_json
from .routerdc import read_scores_json

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([BbMm])\s*$")


def parse_size(size) -> float:
    """``"7B"`` -> 7.0, ``"350M"`` -> 0.35 (billions); NaN when unknown.

    >>> parse_size("70B"), parse_size("350M")
    (70.0, 0.35)
    """
    if size is None:
        return float("nan")
    if isinstance(size, (int, float)):
        return float(size)
    m = _SIZE.match(str(size))
    if not m:
        return float("nan")
    v = float(m.group(1))
    return v / 1000.0 if m.group(2).lower() == "m" else v


def read_llm_table(path) -> pd.DataFrame:
    """``default_llm.json`` as an LLM table (``name, params_b, price_input, price_output,
    provider, description, model_path``)."""
    data = read_json(path, "LLM table JSON")
    if not isinstance(data, dict) or not data:
        raise DataFormatError(f"{path}: expected a non-empty object {{llm name: {{...}}}}")
    rows = []
    for name, info in data.items():
        if not isinstance(info, dict):
            raise DataFormatError(f"{path}, field '{name}': expected an object")
        row = {"name": str(name), "params_b": parse_size(info.get("size"))}
        for src, dst in (("input_price", "price_input"), ("output_price", "price_output")):
            v = info.get(src)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise DataFormatError(f"{path}, field '{name}.{src}': {v!r} is not a number "
                                      "(USD per 1M tokens)")
            row[dst] = float(v) if v is not None else np.nan
        row["provider"] = info.get("service")
        row["description"] = info.get("feature")
        row["model_path"] = info.get("model")
        rows.append(row)
    return pd.DataFrame(rows)


def read_llmrouter(path, split: str | None = None) -> PerformanceRecords:
    """Read LLMRouter's DC-router data (``dcrouter_train.json``, ``dcrouter_test.json``)
    with prices from ``default_llm.json`` when it lies in the same folder.

    Parameters
    ----------
    path : str or Path
        The folder, or one ``dcrouter_*.json`` file.
    split : {"train", "test"}, optional

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "dcrouter_train.json").write_text(json.dumps(
    ...     [{"question": "q", "scores": {"a": 1.0}}]))
    >>> _ = (d / "default_llm.json").write_text(json.dumps(
    ...     {"a": {"size": "7B", "input_price": 0.2, "output_price": 0.3}}))
    >>> read_llmrouter(d).llms[["name", "params_b", "price_output"]].values.tolist()
    [['a', 7.0, 0.3]]
    """
    if split not in (None, "train", "test"):
        raise ConfigError(f"split must be 'train', 'test' or None, got {split!r}")
    p = as_path(path, "LLMRouter folder or file")
    if p.is_dir():
        files = sorted(p.glob("dcrouter_*.json"))
        price = p / "default_llm.json"
    else:
        files, price = [p], p.parent / "default_llm.json"
    if not files:
        raise DataFormatError(f"{p}: no dcrouter_*.json files")

    def split_of(f):
        stem = Path(f).stem
        return stem.split("_")[-1] if stem.split("_")[-1] in ("train", "test") else "train"

    rec = read_scores_json(files, name="llmrouter", split=split, score_kind="graded",
                           benchmark_of=lambda f: (None, split_of(f)),
                           id_of=lambda f, i: f"{split_of(f)}/{i}")
    if price.is_file():
        table = read_llm_table(price)
        table = table[table["name"].isin(rec.llm_names)]
        known = pd.DataFrame({"name": rec.llm_names}).merge(table, on="name", how="left")
        rec = PerformanceRecords(rec.scores, rec.prompts, known, observed=rec.observed,
                                 score_range=rec.score_range, name=rec.name,
                                 score_kind=rec.score_kind)
    return rec
