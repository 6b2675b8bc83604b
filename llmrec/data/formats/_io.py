"""Small shared helpers of the format readers: safe file reading with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ...errors import DataFormatError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".json")


def as_path(path, what: str = "file") -> Path:
    """``path`` as a :class:`Path` that must exist (else a clear :class:`DataFormatError`)."""
    p = Path(os.fspath(path)).expanduser()
    if not p.exists():
        raise DataFormatError(f"{p}: {what} does not exist; check the path")
    return p


def read_table(path, what: str = "table", **kw) -> pd.DataFrame:
    """Read a CSV, parquet or JSONL file into a DataFrame, turning every parser failure
    (truncated parquet, broken JSON lines, undecodable bytes) into :class:`DataFormatError`
    that names the file."""
    p = as_path(path, what)
    suf = p.suffix.lower()
    try:
        if suf in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        elif suf == ".jsonl":
            df = pd.read_json(p, lines=True, dtype=False)
        elif suf == ".json":
            df = pd.DataFrame(read_json(p, what))
        elif suf in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(p, sep="\t" if suf == ".tsv" else ",", **kw)
        else:
            raise DataFormatError(f"{p}: unknown {what} format '{suf}'; use .csv, .parquet "
                                  "or .jsonl")
    except DataFormatError:
        raise
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{p}: {what} file is empty") from None
    except Exception as e:  # pyarrow / json / csv parsers raise many types
        raise DataFormatError(f"{p}: cannot read {what} ({type(e).__name__}: {e}); the file "
                              "is corrupt or truncated, or not in the format its suffix says"
                              ) from None
    _note_first_line(df, suf)
    return df


def _note_first_line(df: pd.DataFrame, suf: str) -> None:
    """Record the file line of the first data row (``df.attrs["first_line"]``), so that
    error messages name the line a user sees in an editor: 2 for a CSV (after the
    header), 1 for JSONL. Left out when a text cell spans several lines (the mapping
    would be wrong); messages then give the 1-based row."""
    if suf not in (".csv", ".tsv", ".txt", ".jsonl"):
        return
    if suf != ".jsonl":
        for c in df.columns:
            col = df[c]
            if col.dtype == object and col.astype(str).str.contains("\n", regex=False).any():
                return
    df.attrs["first_line"] = 1 if suf == ".jsonl" else 2


def read_json(path, what: str = "JSON file"):
    """Parse a JSON file; a broken or truncated file gives :class:`DataFormatError`
    with the line and column of the fault."""
    p = as_path(path, what)
    try:
        with open(p, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(f"{p}: broken JSON at line {e.lineno}, column {e.colno} "
                              f"({e.msg}); the file is corrupt or truncated") from None
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{p}: not UTF-8 text ({e})") from None


def require_columns(df: pd.DataFrame, cols, source) -> None:
    """Raise :class:`DataFormatError` naming ``source`` and the missing columns."""
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataFormatError(f"{source}: missing column(s) {missing}; found "
                              f"{list(df.columns)[:20]}")


def find_table(directory: Path, stem: str) -> Path | None:
    """The first ``<stem>.(csv|parquet|jsonl|json)`` in ``directory``, or None."""
    for suf in (".parquet", ".csv", ".jsonl", ".json", ".pq"):
        p = directory / f"{stem}{suf}"
        if p.is_file():
            return p
    return None
