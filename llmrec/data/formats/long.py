"""Generic long tables: one row per (prompt, LLM) record, in CSV, parquet or JSONL.

This is how users bring their own records: a file ``prompt_id, llm, score[, cost]``
(column names configurable), optionally with a prompts file (``prompt_id, text[,
benchmark, category, ...]``) and an LLM file (``name[, params_b, price_input,
price_output, provider, ...]``), or a directory holding ``records.(csv|parquet|jsonl)``
and optionally ``prompts.*``, ``llms.*`` and ``meta.json`` (name, score range).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..._atomic import atomic_directory
from ...errors import ConfigError, DataFormatError, UnknownIdError
from ..records import PerformanceRecords, _table_for_parquet, _where
from ._io import as_path, find_table, read_table, require_columns

_FORMATS = {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}


def _read_ids_table(path, id_col: str, what: str) -> pd.DataFrame:
    p = Path(path)
    kw = {"dtype": {id_col: str}, "keep_default_na": True} if p.suffix.lower() == ".csv" else {}
    return read_table(p, what, **kw)


def read_long(path, prompts=None, llms=None, *, prompt_col: str = "prompt_id",
              llm_col: str = "llm", score_col: str = "score", cost_col: str | None = "cost",
              score_range: tuple[float, float] | None = None, name: str | None = None,
              on_duplicate: str = "error", unknown_ids: str | None = None,
              score_kind: str | None = None, reference_llm: str | None = None
              ) -> PerformanceRecords:
    """Read records from a long table (or a directory of ``records.*``, ``prompts.*``, ``llms.*``).

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.parquet`` or ``.jsonl`` file with one row per record, or a
        directory holding ``records.<ext>`` and optionally ``prompts.<ext>``,
        ``llms.<ext>`` and ``meta.json``.
    prompts, llms : str, Path or DataFrame, optional
        Prompt table (id column ``prompt_id`` or ``prompt_col``; ``text``,
        ``benchmark``, ``category`` and extras) and LLM table (id column ``name`` or
        ``llm_col``). Override the files found in a directory.
    prompt_col, llm_col, score_col, cost_col : str
        Column names in the records table. ``cost_col`` is used when present.
    score_range : (float, float), optional
        Declared score range; scores outside raise :class:`DataFormatError`.
    on_duplicate : {"error", "mean", "first"}
        Repeated (prompt, LLM) pairs with conflicting scores.
    score_kind : {"binary", "graded", "judge", "preference"}, optional
        What the scores mean. Default: ``meta.json``'s ``score_kind`` in a directory,
        else inferred from the scores (0/1: binary, within [0, 1]: graded, otherwise
        judge; see :func:`llmrec.data.infer_score_kind`).
    reference_llm : str, optional
        For ``score_kind="preference"``: the LLM the scores are measured against.
    unknown_ids : {"error", "keep"}, optional
        A prompt or LLM listed in the prompts / LLM file but absent from the records
        is an error by default (usually a typo); ``"keep"`` keeps it with no records
        (e.g. an LLM known only by its metadata). Directories written by
        :func:`write_long` default to ``"keep"``.

    Returns
    -------
    PerformanceRecords

    Examples
    --------
    >>> import tempfile, pandas as pd
    >>> from llmrec.data.formats import read_long
    >>> d = tempfile.mkdtemp()
    >>> pd.DataFrame({"q": ["a", "a", "b"], "model": ["x", "y", "x"],
    ...               "acc": [1, 0, 1]}).to_csv(f"{d}/r.csv", index=False)
    >>> read_long(f"{d}/r.csv", prompt_col="q", llm_col="model", score_col="acc")
    <PerformanceRecords 'r': 2 prompts x 2 LLMs, 75.0% observed>
    """
    if on_duplicate not in ("error", "mean", "first"):
        raise ConfigError(f"on_duplicate must be 'error', 'mean' or 'first', got {on_duplicate!r}")
    if unknown_ids not in (None, "error", "keep"):
        raise ConfigError(f"unknown_ids must be 'error' or 'keep', got {unknown_ids!r}")
    p = as_path(path, "records file or directory")
    meta = {}
    if p.is_dir():
        rec_p = find_table(p, "records")
        if rec_p is None:
            raise DataFormatError(f"{p}: no records.csv, records.parquet or records.jsonl in "
                                  "this directory; put the long table there")
        if prompts is None:
            prompts = find_table(p, "prompts")
        if llms is None:
            llms = find_table(p, "llms")
        if (p / "meta.json").is_file():
            try:
                meta = json.loads((p / "meta.json").read_text())
            except json.JSONDecodeError as e:
                raise DataFormatError(f"{p / 'meta.json'}: broken JSON ({e})") from None
        default_name = p.name
    else:
        rec_p = p
        default_name = p.stem
    kw = {}
    if rec_p.suffix.lower() == ".csv":
        kw = {"dtype": {prompt_col: str, llm_col: str}}
    df = read_table(rec_p, "records table", **kw)
    require_columns(df, [prompt_col, llm_col, score_col], rec_p)

    ptab = _load_side_table(prompts, ("prompt_id", prompt_col), "prompt_id", "prompts")
    if ptab is None and "text" in df.columns:
        # a single file may carry the prompt text (and benchmark/category) on each row:
        # the first row of each prompt gives its prompt table entry
        cols = [c for c in ("text", "benchmark", "category") if c in df.columns]
        _check_one_text_per_prompt(df, prompt_col, rec_p)
        ptab = (df[[prompt_col] + cols].drop_duplicates(prompt_col)
                .rename(columns={prompt_col: "prompt_id"}).reset_index(drop=True))
    ltab = _load_side_table(llms, ("name", llm_col), "name", "LLM")
    if score_range is None and meta.get("score_range"):
        score_range = tuple(meta["score_range"])
    if score_kind is None and reference_llm is None:
        score_kind, reference_llm = meta.get("score_kind"), meta.get("reference_llm")
    rec = PerformanceRecords.from_long(
        df, ptab, ltab, prompt_col=prompt_col, llm_col=llm_col, score_col=score_col,
        cost_col=cost_col, score_range=score_range, name=name or meta.get("name") or default_name,
        source=str(rec_p), on_duplicate=on_duplicate, score_kind=score_kind,
        reference_llm=reference_llm)
    if unknown_ids is None:
        unknown_ids = "keep" if meta.get("format") == "llmrec.long" else "error"
    if unknown_ids == "error":
        _check_no_extra(rec, ptab, ltab, prompts, llms)
    return rec


def _check_one_text_per_prompt(df: pd.DataFrame, prompt_col: str, source) -> None:
    """One prompt id given two different texts is an error (which text would a router
    learn from?), naming both lines."""
    t = df["text"]
    ok = t.notna() & (t.astype(str).str.strip() != "")
    sub = df.loc[ok, [prompt_col, "text"]]
    first = sub.drop_duplicates(prompt_col).set_index(prompt_col)["text"]
    other = sub["text"].to_numpy() != first.reindex(sub[prompt_col]).to_numpy()
    if other.any():
        j = int(np.flatnonzero(other)[0])
        row_b = int(sub.index[j])
        pid = sub[prompt_col].iloc[j]
        row_a = int(sub.index[(sub[prompt_col] == pid).to_numpy()][0])
        raise DataFormatError(
            f"{source}: prompt id '{pid}' has two different texts ({_where(df, row_a)} and "
            f"{_where(df, row_b)}, column 'text'); give each prompt one text or distinct ids")


def _load_side_table(tab, id_cols, key: str, what: str) -> pd.DataFrame | None:
    if tab is None:
        return None
    source = "given DataFrame"
    if not isinstance(tab, pd.DataFrame):
        source = str(tab)
        p = as_path(tab, f"{what} file")
        tab = read_table(p, f"{what} table",
                         **({"dtype": {c: str for c in id_cols}} if p.suffix.lower() == ".csv"
                            else {}))
    if key not in tab.columns:
        alt = [c for c in id_cols if c in tab.columns]
        if not alt:
            raise DataFormatError(f"{source}: {what} table has no id column "
                                  f"{' or '.join(repr(c) for c in dict.fromkeys(id_cols))}; "
                                  f"found {list(tab.columns)[:20]}")
        tab = tab.rename(columns={alt[0]: key})
    if len(tab) == 0:
        raise DataFormatError(f"{source}: {what} table is empty")
    tab = tab.copy()
    tab.attrs["source"] = source
    return tab


def _check_no_extra(rec: PerformanceRecords, ptab, ltab, prompts, llms) -> None:
    if ptab is not None:
        counts = np.diff(rec.scores.indptr)
        if (counts == 0).any():
            row = int(np.flatnonzero(counts == 0)[0])
            raise UnknownIdError(
                f"{ptab.attrs.get('source', prompts)}, {_where(ptab, row)}: prompt id "
                f"'{rec.prompt_ids[row]}' has no record in the records table; fix the id or "
                "pass unknown_ids='keep' to keep prompts without records")
    if ltab is not None:
        counts = np.bincount(rec.scores.indices, minlength=rec.n_llms)
        if (counts == 0).any():
            row = int(np.flatnonzero(counts == 0)[0])
            raise UnknownIdError(
                f"{ltab.attrs.get('source', llms)}, {_where(ltab, row)}: LLM '{rec.llm_names[row]}' has "
                "no record in the records table; fix the name or pass unknown_ids='keep' to "
                "keep LLMs known only by their metadata")


def write_long(records: PerformanceRecords, path, format: str = "csv") -> Path:
    """Write records as a directory ``records.<ext>``, ``prompts.<ext>``, ``llms.<ext>``,
    ``meta.json`` that :func:`read_long` reads back.

    The write is atomic (a temporary directory renamed into place).

    Parameters
    ----------
    records : PerformanceRecords
    path : str or Path
        Target directory (replaced if it exists).
    format : {"csv", "parquet", "jsonl"}

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.data.formats import read_long, write_long
    >>> rec = make_synthetic(20, 3, seed=0)
    >>> out = write_long(rec, tempfile.mkdtemp() + "/mine")
    >>> read_long(out).equals(rec, check_tables=False)
    True
    """
    if not isinstance(records, PerformanceRecords):
        raise DataFormatError(f"write_long needs PerformanceRecords, got {type(records).__name__}")
    if format not in _FORMATS:
        raise ConfigError(f"format must be one of {sorted(_FORMATS)}, got {format!r}")
    suf = _FORMATS[format]
    path = Path(os.fspath(path))
    with atomic_directory(path, check_existing=_refuse_non_directory) as tmp:
        tables = {"records": records.to_long(), "prompts": _table_for_parquet(records.prompts),
                  "llms": _table_for_parquet(records.llms)}
        for stem, df in tables.items():
            f = tmp / f"{stem}{suf}"
            if format == "csv":
                df.to_csv(f, index=False)
            elif format == "parquet":
                df.to_parquet(f, index=False)
            else:
                df.to_json(f, orient="records", lines=True, force_ascii=False)
        meta = {"format": "llmrec.long", "name": records.name,
                "score_range": list(records.score_range) if records.score_range else None,
                "score_kind": records.score_kind, "reference_llm": records.reference_llm}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
    return path


def _refuse_non_directory(path: Path) -> None:
    if not path.is_dir():
        raise DataFormatError(f"{path}: exists and is not a directory; write_long "
                              "writes a directory")
