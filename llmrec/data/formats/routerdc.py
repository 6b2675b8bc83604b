"""RouterDC JSON (shuhao02/RouterDC ``datasets/split2_model7/*.json``).

Each file is a JSON list of ``{"question": str, "scores": {model: score}[,
"cluster_id": str]}``. The benchmark comes from the file name (``mmlu_train.json``
-> ``mmlu``), and so does the split (``train`` / ``test``); files without a split in
their name (``ceval``, ``mbpp``, ``MATH_prealgebra``, ``javascript``) are RouterDC's
out-of-distribution test sets and get split ``test``. Prompt ids are
``<file stem>/<position>``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ...errors import ConfigError, DataFormatError
from ..records import PerformanceRecords
from ._io import as_path, read_json

_SPLIT = re.compile(r"[_-](train|test)$")


def _parse_name(stem: str) -> tuple[str, str]:
    m = _SPLIT.search(stem)
    return (stem[:m.start()], m.group(1)) if m else (stem, "test")


def read_scores_json(files, *, name: str, score_range=(0.0, 1.0), split: str | None = None,
                     score_kind: str | None = None,
                     benchmark_of=None, id_of=None, text_key: str = "question",
                     ) -> PerformanceRecords:
    """Shared reader of JSON lists ``[{"question": ..., "scores": {llm: score}}, ...]``."""
    longs, ptabs, names = [], [], {}
    for f in files:
        data = read_json(f, "scores JSON")
        if not isinstance(data, list):
            raise DataFormatError(f"{f}: expected a JSON list of {{'{text_key}', 'scores'}} "
                                  f"objects, got {type(data).__name__}")
        if not data:
            raise DataFormatError(f"{f}: empty list; no records")
        bench, fsplit = benchmark_of(f)
        if split is not None and fsplit != split:
            continue
        pids, llms, scores = [], [], []
        texts, clusters = [], []
        for i, row in enumerate(data):
            if not isinstance(row, dict) or text_key not in row or "scores" not in row:
                got = list(row)[:5] if isinstance(row, dict) else type(row).__name__
                raise DataFormatError(f"{f}, element {i}: expected keys '{text_key}' and "
                                      f"'scores', got {got}")
            sc = row["scores"]
            if not isinstance(sc, dict) or not sc:
                raise DataFormatError(f"{f}, element {i}, field 'scores': expected a non-empty "
                                      "object {LLM name: score}")
            pid = id_of(f, i)
            for m, v in sc.items():
                if isinstance(v, bool) or not isinstance(v, (int, float)) or v is None:
                    raise DataFormatError(f"{f}, element {i}, field 'scores', LLM '{m}': "
                                          f"score {v!r} is not a number")
                pids.append(pid)
                llms.append(str(m))
                scores.append(float(v))
                names.setdefault(str(m), None)
            texts.append(str(row[text_key]))
            clusters.append(row.get("cluster_id"))
        ptab = pd.DataFrame({"prompt_id": [id_of(f, i) for i in range(len(data))],
                             "text": texts, "benchmark": bench, "category": None,
                             "split": fsplit})
        if any(c is not None for c in clusters):
            ptab["cluster_id"] = [None if c is None else str(c) for c in clusters]
        ptabs.append(ptab)
        longs.append(pd.DataFrame({"prompt_id": pids, "llm": llms, "score": scores}))
    if not longs:
        raise DataFormatError(f"no file of split '{split}' among {[str(f) for f in files][:5]}")
    prompts = pd.concat(ptabs, ignore_index=True)
    return PerformanceRecords.from_long(
        pd.concat(longs, ignore_index=True), prompts, pd.DataFrame({"name": list(names)}),
        score_range=score_range, name=name, source=", ".join(str(f.name) for f in files),
        cost_col=None, score_kind=score_kind)


def read_routerdc(path, split: str | None = None) -> PerformanceRecords:
    """Read RouterDC JSON file(s): 7 open 7-8B LLMs, scores in [0, 1].

    Parameters
    ----------
    path : str or Path
        A folder of ``*.json`` (sorted by name) or one file.
    split : {"train", "test"}, optional
        Keep only files of that split.

    Examples
    --------
    >>> import json, tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "gsm8k-train.json").write_text(json.dumps(
    ...     [{"question": "1+1?", "scores": {"a": 1.0, "b": 0.4}}]))
    >>> rec = read_routerdc(d)
    >>> rec.prompts[["prompt_id", "benchmark", "split"]].values.tolist()
    [['gsm8k-train/0', 'gsm8k', 'train']]
    """
    if split not in (None, "train", "test"):
        raise ConfigError(f"split must be 'train', 'test' or None, got {split!r}")
    p = as_path(path, "RouterDC JSON file or folder")
    files = sorted(p.glob("*.json")) if p.is_dir() else [p]
    if not files:
        raise DataFormatError(f"{p}: no .json files in this folder")
    return read_scores_json(files, name="routerdc", split=split, score_kind="graded",
                            benchmark_of=lambda f: _parse_name(Path(f).stem),
                            id_of=lambda f, i: f"{Path(f).stem}/{i}")
