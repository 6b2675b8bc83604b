"""The ``llmrec`` command line: data, encode, split, fit, recommend, evaluate, bench, demo,
cache, serve.

Every subcommand has ``--help`` with examples, and every option is declared (typer),
so ``--help`` is the documentation of record (docs/cli.md is checked against it).

Exit codes: 0 success; 2 a usage error (an unknown or malformed option, a bad option
value, a missing file or unknown name; the one ``error:`` line names the option and
the closest valid choice); 1 the input data or a saved model is wrong (the line names
the file, its 1-based line, the column and the value) or an unexpected failure (the
line says "unexpected" and suggests ``--debug``). No traceback without ``--debug``;
``llmrec --quiet ...`` hides progress.

This module is a face: it only calls the layers below it and nothing imports it.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import json
import os
import re
import sys
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - older typer on top of click
    from click.exceptions import ClickException as _ClickException
try:
    from typer.exceptions import Abort as _Abort, Exit as _Exit
except ImportError:  # pragma: no cover
    from click.exceptions import Abort as _Abort, Exit as _Exit

from . import _progress as _prog
from .errors import CapabilityError, ConfigError, DataFormatError, DatasetNotFoundError, \
    LLMRecError, ModelFormatError, NotFittedError, UnknownIdError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Route prompts to LLMs as a recommendation problem.\n\n"
                       "Examples:\n\n"
                       "  llmrec data info synthetic\n\n"
                       "  llmrec fit --data synthetic --router best-single --out model\n\n"
                       "  llmrec recommend --model model -k 3 \"Solve x^2 = 4\"\n\n"
                       "  llmrec serve --model model --port 8000")
data_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Inspect and convert performance records.")
app.add_typer(data_app, name="data")

_OPTS = {"debug": False, "quiet": False}


def _show_version(value: bool):
    if value:
        from ._version import __version__
        typer.echo(f"llmrec {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks on errors"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars"),
          version: bool = typer.Option(False, "--version", callback=_show_version,
                                       is_eager=True, help="print the version and exit")):
    _OPTS["debug"] = debug or _OPTS["debug"]
    _OPTS["quiet"] = quiet
    _prog.set_quiet(quiet)
    _prog.set_log_lines(True)  # in a log (no terminal): one line per long stage
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"


def _progress() -> Optional[bool]:
    return False if _OPTS["quiet"] else None


def _echo(msg: str = ""):
    typer.echo(msg)


def _info(msg: str):
    if not _OPTS["quiet"]:
        typer.echo(msg, err=True)


# ------------------------------------------------------------------ data loading
def _parse_value(text: str):
    """'3' -> 3, '0.1' -> 0.1, 'true' -> True, 'none' -> None, '[1,2]' -> [1, 2], else str."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _parse_params(items: List[str], what: str = "--param") -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"{what} {item!r}: expected key=value, e.g. {what} k=5")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k.isidentifier():
            raise ConfigError(f"{what} {item!r}: {k!r} is not a parameter name")
        out[k] = _parse_value(v)
    return out


# ------------------------------------------------------------ option checking
def _did_you_mean(value: str, choices) -> str:
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""


def _choice(value: str, choices, option: str) -> str:
    """``value`` if it is one of ``choices``, else a usage error naming the closest one."""
    if value not in choices:
        raise ConfigError(f"{option} {value!r}: choose one of {', '.join(choices)}"
                          f"{_did_you_mean(value, choices)}")
    return value


def _kind(v) -> str:
    if isinstance(v, bool):
        return "true or false"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, (tuple, list)):
        return "a list such as (64, 32)"
    if isinstance(v, _TextOrNumber):
        return "text or a number"
    return "text"


def _fits(default, value) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, (tuple, list)):
        return isinstance(value, (tuple, list))
    if isinstance(default, _TextOrNumber):
        return isinstance(value, (str, int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def _check_params(params: dict, defaults: dict, what: str, owner: str) -> dict:
    """Refuse unknown names (naming the closest one) and values of the wrong type.

    ``defaults`` maps each accepted name to its default value; the default's type is
    the expected one (``None`` accepts anything).
    """
    for k, v in params.items():
        if k not in defaults:
            raise ConfigError(f"{what} {k}: {owner} has no parameter {k!r}"
                              f"{_did_you_mean(k, defaults)} (parameters: "
                              f"{', '.join(sorted(defaults)) or 'none'})")
        if not _fits(defaults[k], v):
            raise ConfigError(f"{what} {k}={v}: {k} expects {_kind(defaults[k])} "
                              f"(default {defaults[k]!r})")
    return params


class _TextOrNumber(str):
    """The text default of a parameter annotated to take a number too
    (``map_alpha: float | str = "auto"``): its value may be either."""


def _init_defaults(cls) -> dict:
    """Each parameter's default, the type ``--param`` values are checked against; a
    text default whose annotation also names a number accepts both."""
    sig = inspect.signature(cls.__init__)
    out = {}
    for n, p in sig.parameters.items():
        if n == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        d = None if p.default is inspect.Parameter.empty else p.default
        ann = p.annotation if isinstance(p.annotation, str) else str(p.annotation)
        if isinstance(d, str) and re.search(r"\b(float|int)\b", ann):
            d = _TextOrNumber(d)
        out[n] = d
    return out


def _router_params(router: str, items: List[str], what: str = "--param") -> dict:
    """Parse ``--param key=value`` items and check them against the router's parameters."""
    from .routers import ROUTERS, available_routers
    names = available_routers()
    if router not in ROUTERS:
        raise ConfigError(f"--router {router!r}: unknown router{_did_you_mean(router, names)} "
                          f"(available: {', '.join(names)})")
    params = _parse_params(items, what)
    defaults = _init_defaults(ROUTERS[router])
    defaults.setdefault("side_features", None)  # a fit argument, accepted by the bench
    return _check_params(params, defaults, what, f"router {router!r}")


ENCODER_SPECS = "tfidf|minilm|precomputed:FILE.npy|<sentence-transformers path>"


def _make_encoder(spec: Optional[str], items: List[str]):
    """An encoder from ``--encoder`` / ``--encoder-param``, checked before any data is read.

    ``precomputed:FILE.npy`` reads the vectors and the ``FILE.ids.json`` that
    ``llmrec encode`` writes next to them.
    """
    from .encoders import PrecomputedEncoder, SentenceTransformerEncoder, TfidfEncoder
    params = _parse_params(items, "--encoder-param")
    spec = spec or "tfidf"
    if spec.startswith("precomputed:"):
        f = Path(spec.split(":", 1)[1])
        if not f.is_file():
            raise FileNotFoundError(f"--encoder {spec}: no such file {f}; write one with "
                                    "llmrec encode DATA --out FILE.npy")
        cls = PrecomputedEncoder
        _check_params(params, {"key": "auto"}, "--encoder-param", "the precomputed encoder")
        return PrecomputedEncoder.from_file(f, **params)
    if spec == "tfidf":
        cls = TfidfEncoder
    elif spec in ("minilm", "all-MiniLM-L6-v2") or "/" in spec or Path(spec).exists():
        cls = SentenceTransformerEncoder
    else:
        raise ConfigError(f"--encoder {spec!r}: not an encoder name or an existing model "
                          f"path{_did_you_mean(spec, ['tfidf', 'minilm'])} "
                          f"(choose {ENCODER_SPECS})")
    defaults = _init_defaults(cls)
    defaults.pop("model", None)
    _check_params(params, defaults, "--encoder-param", f"encoder {spec!r}")
    if cls is TfidfEncoder:
        return TfidfEncoder(**params)
    return SentenceTransformerEncoder(**({} if spec in ("minilm", "all-MiniLM-L6-v2")
                                         else {"model": spec}), **params)


def _cached(enc, no_cache: bool, cache_dir: Optional[Path] = None):
    """Wrap a pretrained (costly) encoder in the on-disk embedding cache, unless disabled.

    TF-IDF (fitted per model, cheap) and precomputed vectors are never wrapped.
    """
    from .encoders import CachedEncoder, PrecomputedEncoder
    from .encoders.cache import default_cache_dir
    if no_cache or enc is None or enc.requires_fit or isinstance(
            enc, (CachedEncoder, PrecomputedEncoder)):
        return enc
    return CachedEncoder(enc, cache_dir or default_cache_dir())


def _out_dir(path: Path, option: str = "--out") -> Path:
    """A directory to write into: refuse an existing file there (a usage error)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is an existing file, expected a directory; "
                          "choose another path")
    return path


def _out_file(path: Path, option: str = "--out") -> Path:
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a directory, expected a file path such as "
                          f"{path / 'out.npy'}")
    return path


NO_CACHE_HELP = ("do not use the embedding cache (default: on for sentence encoders; "
                 "directory $LLMREC_CACHE/emb or ~/.cache/llmrec/emb, see llmrec cache info)")
ON_DUPLICATE_HELP = ("repeated (prompt, LLM) records with different scores: error|mean|first "
                     "(long tables)")


def _read_table(path: Path):
    import pandas as pd
    suf = "".join(path.suffixes[-2:]).lower() if path.suffix.lower() == ".gz" else \
        path.suffix.lower()
    try:
        if suf in (".csv", ".csv.gz"):
            return pd.read_csv(path)
        if suf in (".tsv",):
            return pd.read_csv(path, sep="\t")
        if suf == ".parquet":
            return pd.read_parquet(path)
        if suf in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        if suf == ".json":
            return pd.read_json(path)
    except (ValueError, OSError, pd.errors.ParserError) as e:
        raise DataFormatError(f"{path}: cannot read ({e})") from None
    raise DataFormatError(f"{path}: unknown file type {suf!r}; use .csv, .parquet or .jsonl")


def _records_from_table(df, source: str, prompts=None, llms=None):
    from .data.records import PerformanceRecords
    if prompts is None and "text" in df.columns and "prompt_id" in df.columns:
        cols = [c for c in ("prompt_id", "text", "benchmark", "category") if c in df.columns]
        prompts = df[cols].drop_duplicates("prompt_id").reset_index(drop=True)
    return PerformanceRecords.from_long(df, prompts=prompts, llms=llms, source=source,
                                        name=Path(source).stem)


def _attach_text(rec, path: Path):
    """Prompt text/benchmark/category from a single long table's own columns, when the
    reader left them out (the long-table reader takes text only from a prompts file)."""
    import pandas as pd
    from .data.records import PerformanceRecords
    if path.suffix.lower() not in (".csv", ".parquet", ".jsonl", ".ndjson"):
        return rec
    try:
        df = _read_table(path)
    except DataFormatError:
        return rec
    if "text" not in df.columns or "prompt_id" not in df.columns:
        return rec
    df = df.assign(prompt_id=df["prompt_id"].astype(str)).drop_duplicates("prompt_id")
    df = df.set_index("prompt_id")
    prompts = rec.prompts.copy()
    for col in ("text", "benchmark", "category"):
        if col in df.columns:
            vals = df[col].reindex(prompts["prompt_id"].astype(str)).to_numpy()
            empty = prompts[col].isna() | (prompts[col].astype(str) == "")
            prompts[col] = prompts[col].where(~empty, pd.Series(vals, index=prompts.index))
    return PerformanceRecords(rec.scores, prompts, rec.llms, observed=rec.observed,
                              cost=rec.cost, score_range=rec.score_range, name=rec.name,
                              score_kind=rec.score_kind, reference_llm=rec.reference_llm)


def load_data(spec: str, on_duplicate: str = "error"):
    """Records from a dataset name or a path (what ``--data`` and ``data info`` accept).

    ``on_duplicate`` (``error``, ``mean``, ``first``) merges repeated (prompt, LLM)
    records of a long table (``--on-duplicate``).

    Feedback logs written by the service are read with
    :func:`llmrec.service.feedback.read_feedback_log`; everything else goes through
    ``llmrec.datasets.load`` when it exists, else a small built-in reader of
    ``synthetic``, saved records, long CSV/parquet/JSONL tables and directories with
    ``records.csv`` (+ ``prompts.csv``, ``llms.csv``).
    """
    from .service.feedback import is_feedback_log, read_feedback_log
    if is_feedback_log(spec):
        return read_feedback_log(spec)
    _choice(on_duplicate, ("error", "mean", "first"), "--on-duplicate")
    if on_duplicate != "error":
        from .data.formats import read_long
        p = Path(spec)
        if not (p.is_dir() or p.suffix.lower() in (".csv", ".parquet", ".jsonl")):
            raise ConfigError(f"--on-duplicate {on_duplicate}: applies to long tables "
                              f"(.csv, .parquet, .jsonl or a records directory), not {spec!r}")
        if not p.exists():
            raise DatasetNotFoundError(f"{spec}: no such file or directory")
        return read_long(p, on_duplicate=on_duplicate)
    try:
        from .datasets import load as ds_load
    except ImportError:
        ds_load = None
    if ds_load is not None:
        rec = ds_load(spec)
        if not rec.has_text and Path(spec).is_file():
            rec = _attach_text(rec, Path(spec))
        return rec
    if spec == "synthetic":
        from .datasets import make_synthetic
        return make_synthetic()
    path = Path(spec)
    if not path.exists():
        raise DatasetNotFoundError(f"{spec}: no such file, directory or dataset name "
                                   "(known names: synthetic)")
    if path.is_dir():
        from .data.records import PerformanceRecords
        if (path / "meta.json").is_file():
            return PerformanceRecords.load(path)
        if (path / "records.csv").is_file():
            prompts = llms = None
            if (path / "prompts.csv").is_file():
                prompts = _read_table(path / "prompts.csv")
            if (path / "llms.csv").is_file():
                llms = _read_table(path / "llms.csv")
            return _records_from_table(_read_table(path / "records.csv"),
                                       str(path / "records.csv"), prompts, llms)
        raise DataFormatError(f"{path}: a directory without records.csv or meta.json")
    return _records_from_table(_read_table(path), str(path))


def _load_model(model: Path, no_cache: bool = True):
    """A saved router; its sentence encoder reads and fills the embedding cache unless
    ``no_cache``."""
    from .routers import load_router
    if not model.exists():
        raise FileNotFoundError(f"model directory {model} does not exist; make one with "
                                "llmrec fit ... --out DIR")
    if not model.is_dir():
        raise ConfigError(f"--model {model}: is a file, expected a model directory written by "
                          "llmrec fit")
    r = load_router(model)
    feat = getattr(r, "featurizer_", None)
    if feat is not None and not no_cache:
        feat.encoder = _cached(feat.encoder, no_cache)
    return r


# ------------------------------------------------------------------------ data
@data_app.command("info", help="Summarise records: size, density, scores, per-LLM means.\n\n"
                  "SOURCE is a dataset name (synthetic, mmlu-pro, ...) or a path: a long "
                  "CSV/parquet/JSONL table (prompt_id, llm, score[, text, ...]), a directory "
                  "with records.csv (+ prompts.csv, llms.csv), a saved records directory, "
                  "a service feedback log, or any format llmrec.datasets reads.\n\n"
                  "Examples:\n\n  llmrec data info synthetic\n\n"
                  "  llmrec data info records.csv")
def data_info(source: str = typer.Argument(..., help="dataset name or path")):
    _echo(load_data(source).summary())


_CONVERT_TO = ("long-csv", "parquet", "records", "routereval")


@data_app.command("convert", help="Convert records to another format.\n\n"
                  "--to long-csv (one row per record, with text), parquet (same table), "
                  "records (PerformanceRecords directory) or routereval (a RouterEval "
                  "pickle; needs llmrec.data.formats.routereval). Guessed from OUT when "
                  "omitted.\n\nImporting your own long table: --prompt-col / --llm-col / "
                  "--score-col / --cost-col name its columns, --prompts / --llms add a prompt "
                  "table (text, benchmark, category, ...) and an LLM table (name, params_b, "
                  "price_input, price_output, ...), --on-duplicate merges repeated records; "
                  "every command then reads OUT as it is.\n\n"
                  "Examples:\n\n  llmrec data convert synthetic synth.csv\n\n"
                  "  llmrec data convert records.csv out.parquet --to parquet\n\n"
                  "  llmrec data convert raw.csv records --prompt-col q --llm-col model "
                  "--score-col acc --llms llms.csv --on-duplicate mean")
def data_convert(source: str = typer.Argument(..., help="dataset name or path"),
                 out: Path = typer.Argument(..., help="output path"),
                 to: Optional[str] = typer.Option(None, "--to", help="|".join(_CONVERT_TO)),
                 prompt_col: Optional[str] = typer.Option(None, "--prompt-col",
                                                          help="prompt id column of SOURCE "
                                                               "(default prompt_id)"),
                 llm_col: Optional[str] = typer.Option(None, "--llm-col",
                                                       help="LLM column (default llm)"),
                 score_col: Optional[str] = typer.Option(None, "--score-col",
                                                         help="score column (default score)"),
                 cost_col: Optional[str] = typer.Option(None, "--cost-col",
                                                        help="per-record cost column "
                                                             "(default cost, when present)"),
                 prompts: Optional[Path] = typer.Option(None, "--prompts",
                                                        help="prompt table: prompt_id, text"
                                                             "[, benchmark, category, ...]"),
                 llms: Optional[Path] = typer.Option(None, "--llms",
                                                     help="LLM table: name[, params_b, "
                                                          "price_input, price_output, ...]"),
                 on_duplicate: str = typer.Option("error", "--on-duplicate",
                                                  help=ON_DUPLICATE_HELP),
                 score_kind: Optional[str] = typer.Option(
                     None, "--score-kind", help="what the scores mean: binary|graded|judge|"
                     "preference (default: inferred from the values; preference must be "
                     "declared), saved with the records"),
                 reference_llm: Optional[str] = typer.Option(
                     None, "--reference-llm", help="the reference LLM of preference scores "
                     "(with --score-kind preference)")):
    if score_kind is not None:
        _choice(score_kind, ("binary", "graded", "judge", "preference"), "--score-kind")
    if to is None:
        suf = out.suffix.lower()
        to = {".csv": "long-csv", ".parquet": "parquet", ".pkl": "routereval",
              "": "records"}.get(suf)
        if to is None:
            raise ConfigError(f"cannot guess the format of {out}; pass --to "
                              f"{'|'.join(_CONVERT_TO)}")
    _choice(to, _CONVERT_TO, "--to")
    if to == "records":
        _out_dir(out, "OUT")
    else:
        _out_file(out, "OUT")
    custom = {k: v for k, v in (("prompt_col", prompt_col), ("llm_col", llm_col),
                                ("score_col", score_col), ("cost_col", cost_col),
                                ("prompts", prompts), ("llms", llms),
                                ("score_kind", score_kind), ("reference_llm", reference_llm))
              if v is not None}
    if custom:
        from .data.formats import read_long
        for opt, f in (("--prompts", prompts), ("--llms", llms)):
            if f is not None and not f.is_file():
                raise FileNotFoundError(f"{opt} {f}: no such file")
        if not Path(source).exists():
            raise DatasetNotFoundError(f"{source}: no such file or directory (--prompt-col, "
                                       "--llms, ... apply to a long table file)")
        _choice(on_duplicate, ("error", "mean", "first"), "--on-duplicate")
        rec = read_long(Path(source), on_duplicate=on_duplicate, **custom)
    else:
        rec = load_data(source, on_duplicate)
    out.parent.mkdir(parents=True, exist_ok=True)
    if to == "long-csv":
        rec.to_long(with_text=True).to_csv(out, index=False)
    elif to == "parquet":
        rec.to_long(with_text=True).to_parquet(out, index=False)
    elif to == "records":
        rec.save(out)
    else:
        try:
            from .data.formats import routereval as rfmt
        except ImportError:
            rfmt = None
        writer = getattr(rfmt, "write_routereval", None) if rfmt else None
        if writer is None:
            raise CapabilityError("the RouterEval writer (llmrec.data.formats.routereval."
                                  "write_routereval) is not available in this llmrec")
        writer(rec, out)
    _echo(f"wrote {rec.n_observed:,} records ({rec.n_prompts} prompts x {rec.n_llms} LLMs) "
          f"to {out} [{to}]")


# ---------------------------------------------------------------------- encode
@app.command(help="Encode the prompt texts of records into a float32 .npy array.\n\n"
             "Rows follow the records' prompt order; a sidecar OUT-stem.ids.json lists the "
             "prompt ids (and texts) and the encoder fingerprint, so the vectors can be "
             "given back as --encoder precomputed:OUT.npy.\n\n"
             "Examples:\n\n  llmrec encode synthetic --encoder tfidf --out emb.npy\n\n"
             "  llmrec encode mmlu-pro --encoder minilm --out mmlu.npy")
def encode(source: str = typer.Argument(..., help="dataset name or path"),
           encoder: str = typer.Option("tfidf", "--encoder", help=ENCODER_SPECS),
           out: Path = typer.Option(..., "--out", help="output .npy file, e.g. emb.npy"),
           encoder_param: List[str] = typer.Option([], "--encoder-param",
                                                   help="encoder setting key=value, e.g. dim=64"),
           cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                    help="embedding cache directory "
                                                         "(default: see llmrec cache info)"),
           no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
           on_duplicate: str = typer.Option("error", "--on-duplicate", help=ON_DUPLICATE_HELP)):
    from .encoders import encode_records
    _out_file(out)
    enc = _make_encoder(encoder, encoder_param)
    rec = load_data(source, on_duplicate)
    _require_text(rec, source, "encode")
    out.parent.mkdir(parents=True, exist_ok=True)
    explicit = cache_dir if not no_cache else None  # an explicit --cache-dir caches any encoder
    if explicit is None:
        enc = _cached(enc, no_cache)
    res = encode_records(rec, encoder=enc, out_path=out, cache_dir=explicit,
                         show_progress=_progress())
    _echo(f"wrote {res['n']} x {res['dim']} embeddings to {res['npy']} (ids: {res['ids']}; "
          f"encoder {res['encoder']})")


@app.command("finetune-encoder",
             help="Fine-tune MiniLM on evaluation records (contrastive, as RouterDC).\n\n"
             "Each prompt's embedding is pulled towards the LLMs that scored above the "
             "prompt's mean and away from those below it; the last --layers transformer "
             "layers train, within --max-seconds of wall time. OUT is a sentence-transformers "
             "folder with llmrec_finetune.json (settings, loss curve, weights hash); give it "
             "to --encoder of fit, encode or bench. A router fitted with it carries the "
             "weights in its model directory. Fine-tune on training records only.\n\n"
             "Examples:\n\n  llmrec finetune-encoder splits/train --out ft-minilm\n\n"
             "  llmrec fit --data splits/train --encoder ft-minilm --out model")
def finetune_encoder(source: str = typer.Argument(..., help="training records: dataset "
                                                             "name or path"),
                     out: Path = typer.Option(..., "--out", help="output model folder"),
                     base: str = typer.Option("minilm", "--base",
                                              help="model to start from: minilm or a local "
                                                   "sentence-transformers folder"),
                     layers: int = typer.Option(2, "--layers",
                                                help="top transformer layers to train"),
                     max_seconds: float = typer.Option(600.0, "--max-seconds",
                                                       help="training time budget"),
                     epochs: float = typer.Option(1.0, "--epochs",
                                                  help="passes over the prompts, within "
                                                       "the budget"),
                     seed: int = typer.Option(0, "--seed", help="seed of order and init"),
                     on_duplicate: str = typer.Option("error", "--on-duplicate",
                                                      help=ON_DUPLICATE_HELP)):
    from .encoders.finetune import finetune_sentence_encoder
    rec = load_data(source, on_duplicate)
    _require_text(rec, source, "fine-tuning")
    enc = finetune_sentence_encoder(rec, out, base=base, layers=layers,
                                    max_seconds=max_seconds, epochs=epochs, seed=seed,
                                    show_progress=_progress())
    i = enc.finetune_info_
    _echo(f"fine-tuned {i['base']} on {i['n_prompts_used']:,} of {i['n_prompts']:,} prompts "
          f"({i['epochs_done']:.2f} epochs, {i['steps']} steps, {i['seconds']:.0f} s, stopped "
          f"by {i['stopped_by']}); loss {i['loss_first']:.3f} -> {i['loss_last']:.3f}; "
          f"wrote {out} (use --encoder {out})")


def _require_text(rec, source: str, what: str) -> None:
    """Every prompt must carry text for ``what`` (an encoder, a text-based router)."""
    texts = rec.texts
    empty = [i for i, t in enumerate(texts) if not t.strip()]
    if len(empty) == len(texts):
        raise DataFormatError(f"{source}: the records carry no prompt text (no 'text' column, "
                              f"or it is empty), which {what} needs; add a 'text' column or a "
                              "prompts file")
    if empty:
        pid = rec.prompt_ids[empty[0]]
        raise DataFormatError(f"{source}, column 'text': prompt '{pid}' (and {len(empty) - 1} "
                              f"more) has empty text, which {what} needs; fill it or drop "
                              "those records")


def _check_side_features(rec, side: List[str], source: str) -> None:
    from .encoders import SIDE_FEATURES
    for s in side:
        _choice(s, SIDE_FEATURES, "--side-feature")
        if s in ("benchmark", "category"):
            col = rec.prompts[s] if s in rec.prompts.columns else None
            if col is None or col.isna().all() or (col.astype(str).str.strip() == "").all():
                raise DataFormatError(f"{source}: --side-feature {s} needs a '{s}' column with "
                                      f"values in the records; it has none")


# ------------------------------------------------------------------------- fit
@app.command(help="Fit a router and save it to a model directory.\n\n"
             "--param key=value sets router parameters (repeatable; names and types are "
             "checked). --data may be repeated; the records are concatenated. --warm-start "
             "DIR starts from a saved model: same router and parameters, and the new records "
             "(e.g. the service's feedback log) are folded in: by partial_fit when the router "
             "has one, else by refitting on the model's original data (recorded in "
             "DIR/fit_info.json) plus the new records.\n\n"
             "Examples:\n\n"
             "  llmrec fit --data synthetic --router best-single --out model\n\n"
             "  llmrec fit --data synthetic --router knn --param k=5 --encoder tfidf "
             "--out model\n\n"
             "  llmrec fit --data feedback.jsonl --warm-start model --out model-v2")
def fit(data: List[str] = typer.Option(..., "--data", help="dataset name or path (repeatable)"),
        router: Optional[str] = typer.Option(None, "--router",
                                             help="router name, e.g. knn (default: auto, "
                                                  "see docs/routers/auto.md)"),
        param: List[str] = typer.Option([], "--param", help="router parameter key=value, "
                                                            "e.g. k=5"),
        encoder: Optional[str] = typer.Option(None, "--encoder",
                                              help=ENCODER_SPECS + " (default tfidf)"),
        encoder_param: List[str] = typer.Option([], "--encoder-param",
                                                help="encoder setting key=value, e.g. dim=64"),
        side_feature: List[str] = typer.Option([], "--side-feature",
                                               help="benchmark|category|length (repeatable)"),
        out: Optional[Path] = typer.Option(None, "--out", help="model directory to write "
                                           "(required unless --dry-run)"),
        warm_start: Optional[Path] = typer.Option(None, "--warm-start",
                                                  help="saved model to start from"),
        on_duplicate: str = typer.Option("error", "--on-duplicate", help=ON_DUPLICATE_HELP),
        no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
        val: Optional[str] = typer.Option(None, "--val",
                                          help="validation records for routers that tune a "
                                               "grid or stop early, e.g. splits/val"),
        dry_run: bool = typer.Option(False, "--dry-run",
                                     help="fit samples of the data and print the estimated "
                                          "time and peak memory of the fit; write nothing"),
        max_minutes: Optional[float] = typer.Option(
            None, "--max-minutes", min=0.0,
            help="estimate the fit first (as --dry-run) and refuse it when the estimate "
                 "is above this many CPU minutes"),
        tune: bool = typer.Option(False, "--tune", help="pick the router's main settings on "
                                  "validation prompts (--val, else a share of the training "
                                  "prompts; grids: llmrec.routers.tuning.DEFAULT_GRIDS)")):
    from .data.records import PerformanceRecords
    from .routers import ROUTERS, make_router
    if out is None and not dry_run:
        raise ConfigError("--out is required (the model directory to write), or pass "
                          "--dry-run to only estimate the cost")
    if dry_run and warm_start is not None:
        raise ConfigError("--dry-run estimates a fresh fit; drop --warm-start")
    if out is not None:
        _out_dir(out)
    # every option is checked before any data is read
    if router is None and warm_start is None:
        router = "auto"  # stacked candidates with a no-regret guard (docs/routers/auto.md)
    params = _parse_params(param)
    if router is not None:
        params = _router_params(router, param)
    if "side_features" in params:
        raise ConfigError("--param side_features: use --side-feature NAME (repeatable)")
    enc_params = _parse_params(encoder_param, "--encoder-param")
    if enc_params and encoder is None:
        encoder = "tfidf"
    enc_obj = _make_encoder(encoder, encoder_param) if encoder is not None else None
    side = [_choice(s, ("benchmark", "category", "length"), "--side-feature")
            for s in side_feature]
    if warm_start is not None and not warm_start.is_dir():
        raise FileNotFoundError(f"--warm-start {warm_start}: no such model directory")
    parts = [load_data(d, on_duplicate) for d in data]
    data_specs = [_data_spec(d) for d in data]
    how = "fit"
    if warm_start is not None:
        old = _load_model(warm_start)
        if router is not None and router != old.name:
            raise ConfigError(f"--warm-start model is a {old.name!r} router but --router is "
                              f"{router!r}; drop --router or use {old.name!r}")
        router = old.name
        params = {**old.get_params(), **_router_params(router, param)}
        info_p = warm_start / "fit_info.json"
        old_specs = []
        if info_p.is_file():
            try:
                old_specs = json.loads(info_p.read_text()).get("data", [])
            except ValueError:
                raise DataFormatError(f"{info_p}: corrupt JSON") from None
        if hasattr(old, "partial_fit"):
            new = PerformanceRecords.concat(parts) if len(parts) > 1 else parts[0]
            r = old.set_params(**params).partial_fit(new)
            _remember_prompts(r, new)
            how = "partial_fit"
            data_specs = old_specs + data_specs
        else:
            if not old_specs:
                raise CapabilityError(f"{old.name!r} has no partial_fit and {warm_start} does "
                                      "not record its training data (fit_info.json); pass the "
                                      "original data too: --data ORIGINAL --data NEW")
            missing = [s for s in old_specs if s != "synthetic" and not Path(s).exists()]
            if missing:
                raise DatasetNotFoundError(f"the data {warm_start} was fitted on is gone: "
                                           f"{missing}; pass it with --data")
            parts = [load_data(s) for s in old_specs if s not in data_specs] + parts
            data_specs = [s for s in old_specs if s not in data_specs] + data_specs
            how = "refit (warm start)"
            if encoder is None and old.featurizer_ is not None:
                # same encoder settings as before, refitted on the combined prompts
                from .encoders import encoder_from_state
                cfg = old.featurizer_.encoder.get_config()
                encoder = cfg.get("type")
                enc_obj = encoder_from_state(cfg, {})
                side = side or list(old.featurizer_.side_features)
    train = PerformanceRecords.concat(parts) if len(parts) > 1 else parts[0]
    source = ", ".join(data)
    if dry_run or max_minutes is not None:
        from .routers.cost import _fmt_seconds, estimate_fit_cost
        needs_text = getattr(ROUTERS.get(router), "needs_text", False)
        est_enc = enc_obj if enc_obj is not None else (
            _make_encoder("tfidf", []) if needs_text else None)
        est = estimate_fit_cost(make_router(router, **params), train, encoder=est_enc,
                                side_features=side)
        if dry_run:
            _echo(est.summary())
            return
        if est.seconds > max_minutes * 60:
            raise CapabilityError(
                f"the {router} fit would take about {_fmt_seconds(est.seconds)} of CPU "
                f"(estimated from sample fits), above --max-minutes {max_minutes:g}; see "
                "docs/scaling.md for routers that fit this size, or raise --max-minutes")
    if how != "partial_fit":
        if getattr(ROUTERS.get(router), "needs_text", False):
            _require_text(train, source, f"router {router!r}")
        _check_side_features(train, side, source)
        r = make_router(router, **params)
        kw = {"show_progress": _progress(), "side_features": side}
        if val is not None:
            kw["val_records"] = load_data(val, on_duplicate)
        if enc_obj is not None:
            kw["encoder"] = _cached(enc_obj, no_cache)
        elif getattr(ROUTERS.get(router), "needs_text", False):
            kw["encoder"] = _make_encoder("tfidf", [])
        with _prog.stage(f"fit {router} on {train.n_prompts} prompts x {train.n_llms} LLMs",
                         show=_progress()):
            if tune:
                from .routers.tuning import tune_router
                r = tune_router(router, train, params=params, **kw)
            else:
                r.fit(train, **kw)
        feat = getattr(r, "featurizer_", None)
        if feat is not None and type(feat.encoder).__name__ == "CachedEncoder":
            feat.encoder = feat.encoder.encoder  # the saved model never names a cache path
    from .routers.tuning import describe_tuning
    if describe_tuning(r):
        _echo(describe_tuning(r))
    if getattr(r, "map_alpha", None) == "auto" and getattr(r, "user_map", None) == "ridge":
        _echo(f"{r.name}: cold-prompt map penalty {r.map_alpha_:g}, chosen by leave-one-out "
              "on the training prompts (map_alpha=auto)")
    r.save(out)
    (out / "fit_info.json").write_text(json.dumps(
        {"data": data_specs, "router": router, "params": _jsonable(params),
         "encoder": encoder, "encoder_params": _jsonable(enc_params), "side_features": side,
         "how": how, "warm_start": str(warm_start) if warm_start else None,
         "val": _data_spec(val) if val else None,
         "on_duplicate": on_duplicate,
         "n_prompts": train.n_prompts, "n_llms": train.n_llms,
         "n_observed": train.n_observed}, indent=2))
    _echo(f"{how}: {router} on {train.n_prompts} prompts x {train.n_llms} LLMs "
          f"({train.n_observed:,} records) -> {out}")


def _remember_prompts(router, records) -> None:
    """Add ``records``' prompts to those the router was trained on (for ``evaluate``'s
    overlap count) after a ``partial_fit``."""
    import numpy as np
    from .routers.base import prompt_hashes
    known = getattr(router, "train_prompt_hashes_", None)
    if known is None:
        return
    ids, texts = prompt_hashes(records)
    router.train_prompt_hashes_ = {"ids": np.union1d(known["ids"], ids),
                                   "texts": np.union1d(known["texts"], texts)}


def _data_spec(spec: str) -> str:
    p = Path(spec)
    return str(p.resolve()) if p.exists() else spec


def _jsonable(obj):
    try:
        json.dumps(obj)
        return obj
    except TypeError:
        return {k: str(v) for k, v in obj.items()} if isinstance(obj, dict) else str(obj)


# ------------------------------------------------------------------- recommend
def _read_prompts(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"--input {path}: no such file")
    out = []
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            if path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise DataFormatError(f"{path}, line {i}: not valid JSON") from None
                if isinstance(obj, str):
                    out.append(obj)
                elif isinstance(obj, dict) and isinstance(obj.get("text", obj.get("prompt")),
                                                          str):
                    out.append(obj.get("text", obj.get("prompt")))
                else:
                    raise DataFormatError(f"{path}, line {i}: expected a string or an object "
                                          "with a 'text' (or 'prompt') field")
            else:
                out.append(line)
    return out


@app.command(help="Recommend the top-k LLMs for prompts.\n\n"
             "Prompts come as arguments or from --input (a .jsonl of {\"text\": ...} "
             "objects or strings, or a text file with one prompt a line).\n\n"
             "Examples:\n\n  llmrec recommend --model model -k 3 \"Solve x^2 = 4\"\n\n"
             "  llmrec recommend --model model --input prompts.jsonl --json\n\n"
             "  llmrec recommend --model model \"hi\" --candidates llm-0,llm-3 "
             "--cost-weight 0.01")
def recommend(prompts: List[str] = typer.Argument(None, help="prompt texts"),
              model: Path = typer.Option(..., "--model", help="model directory"),
              k: int = typer.Option(3, "-k", "--k", help="LLMs per prompt"),
              input: Optional[Path] = typer.Option(None, "--input", help="prompts file"),
              candidates: Optional[str] = typer.Option(None, "--candidates",
                                                       help="comma-separated LLM names"),
              cost_weight: float = typer.Option(0.0, "--cost-weight",
                                                help="rank by score - w x cost (auto: its "
                                                     "no-regret guard at that weight)"),
              as_json: bool = typer.Option(False, "--json", help="JSON lines output"),
              no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP)):
    texts = list(prompts or [])
    if input is not None:
        texts += _read_prompts(input)
    if not texts:
        raise ConfigError("no prompts: give PROMPT arguments or --input FILE")
    blank = [i for i, t in enumerate(texts) if not t.strip()]
    if blank:
        raise ConfigError(f"prompt {blank[0] + 1} is empty; give the text to route "
                          "(the service refuses empty prompts too)")
    if k < 1:
        raise ConfigError(f"-k must be >= 1, got {k}")
    cand = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    r = _load_model(model, no_cache)
    names, scores = r.recommend(texts, k=k, candidates=cand, cost_weight=cost_weight,
                                show_progress=_progress())
    for i, t in enumerate(texts):
        if as_json:
            _echo(json.dumps({"prompt": t, "llms": [
                {"name": str(n), "score": float(s)} for n, s in zip(names[i], scores[i])]}))
        else:
            short = t if len(t) <= 60 else t[:57] + "..."
            _echo(f"{short}\n  " + "\n  ".join(f"{j + 1}. {n}  {s:.4f}" for j, (n, s)
                                               in enumerate(zip(names[i], scores[i]))))


# -------------------------------------------------------------------- evaluate
@app.command(help="Evaluate a saved router on records: mu, Vb and Hit@3.\n\n"
             "mu: mean true score of the routed LLM; Vb: mu / the best single LLM's mean "
             "score on these records (RouterEval's definitions, llmrec.evaluation.metrics); "
             "Hit@3: share of solvable prompts (some LLM scores >= 0.5) whose top-3 holds a "
             "successful LLM. Prompts the model was trained on are counted and reported "
             "(a warning: the figures are then not those of unseen prompts); "
             "--exclude-train drops them.\n\n"
             "With --logs DECISIONS instead of --data: off-policy estimates (IPS, SNIPS, "
             "DM, DR, with bootstrap intervals and effective sample size) of the model's "
             "mean score from a service's decision log (llmrec.evaluation.ope), with a "
             "warning when the logging policy does not cover the model's choices.\n\n"
             "Examples:\n\n  llmrec evaluate --model model --data test.csv\n\n"
             "  llmrec split --data synthetic --out splits && "
             "llmrec evaluate --model model --data splits/test\n\n"
             "  llmrec evaluate --model model-v2 --logs logs/")
def evaluate(model: Path = typer.Option(..., "--model", help="model directory"),
             data: Optional[str] = typer.Option(None, "--data", help="dataset name or path"),
             as_json: bool = typer.Option(False, "--json", help="print JSON"),
             exclude_train: bool = typer.Option(False, "--exclude-train",
                                                help="drop prompts the model was trained on"),
             on_duplicate: str = typer.Option("error", "--on-duplicate",
                                              help=ON_DUPLICATE_HELP),
             no_cache: bool = typer.Option(False, "--no-cache", help=NO_CACHE_HELP),
             logs: Optional[Path] = typer.Option(
                 None, "--logs", help="decision log (decisions.jsonl or the service's log "
                                      "folder): estimate off-policy instead of --data"),
             policy: str = typer.Option("greedy", "--policy",
                                        help="with --logs: how the model would choose, e.g. "
                                             "greedy, epsilon-greedy:eps=0.1"),
             n_boot: int = typer.Option(1000, "--n-boot", help="with --logs: bootstrap "
                                                               "replicates"),
             level: float = typer.Option(0.9, "--level", help="with --logs: interval level"),
             clip: Optional[float] = typer.Option(None, "--clip",
                                                  help="with --logs: cap on importance "
                                                       "weights (default none)"),
             reward_model: Optional[Path] = typer.Option(
                 None, "--reward-model", help="with --logs: a saved model whose predicted "
                                              "scores are DM/DR's reward model (default: a "
                                              "ridge cross-fitted on the logs)")):
    import numpy as np
    if logs is not None:
        if data is not None:
            raise ConfigError("give --data (full-information records) or --logs (a decision "
                              "log), not both")
        return _evaluate_logs(model, logs, policy, n_boot, level, clip, as_json, reward_model,
                              no_cache)
    if data is None:
        raise ConfigError("--data or --logs is required")
    r = _load_model(model, no_cache)
    rec = load_data(data, on_duplicate)
    names = r.llm_names_
    missing = [n for n in names if n not in set(rec.llm_names)]
    if missing:
        raise DataFormatError(f"{data} lacks LLM(s) {missing[:5]} the model ranks; evaluate "
                              "on records of the same LLMs")
    rec = rec.select_llms(names)
    rec = rec.select_prompts(np.flatnonzero(rec.observed_dense().any(axis=1)))
    if rec.n_prompts == 0:
        raise DataFormatError(f"{data}: no observed records to evaluate on")
    seen = _seen_in_training(r, rec)
    n_seen = int(seen.sum()) if seen is not None else None
    if n_seen:
        if exclude_train:
            rec = rec.select_prompts(np.flatnonzero(~seen))
            _info(f"warning: dropped {n_seen} of {len(seen)} prompts the model was trained on")
            if rec.n_prompts == 0:
                raise DataFormatError(f"{data}: every prompt was in the model's training "
                                      "data; evaluate on held-out prompts (llmrec split)")
        else:
            _info(f"warning: {n_seen} of {rec.n_prompts} prompts ({n_seen / rec.n_prompts:.0%}) "
                  "were in the model's training data; these figures are not those of unseen "
                  "prompts (use llmrec split, or --exclude-train)")
    from .evaluation.metrics import hit_at_k, routereval_metrics
    S = r.score(rec, show_progress=_progress())
    truth = rec.dense()
    rm = routereval_metrics(S, truth, tie_rank=r.tie_rank_)
    m = {"router": r.name, "n_prompts": rm["n_prompts"], "mu": rm["mu"], "Vb": rm["vb"],
         "hit@3": hit_at_k(S, truth, k=3),
         "n_train_overlap": 0 if exclude_train and n_seen else n_seen}
    if as_json:
        _echo(json.dumps(m))
    else:
        _echo(f"{r.name} on {m['n_prompts']} prompts: mu {m['mu']:.4f}  Vb {m['Vb']:.4f}  "
              f"Hit@3 {m['hit@3']:.4f}")


def _seen_in_training(router, rec):
    """Boolean mask of ``rec``'s prompts found in the router's training prompts, or None
    when the model predates the training-prompt fingerprint."""
    from .routers.base import prompt_hashes
    known = getattr(router, "train_prompt_hashes_", None)
    if known is None:
        return None
    ids, texts = prompt_hashes(rec)
    import numpy as np
    return np.isin(ids, known["ids"]) | (np.isin(texts, known["texts"]) & (texts != 0))


def _evaluate_logs(model: Path, logs: Path, policy: str, n_boot: int, level: float,
                   clip: Optional[float], as_json: bool, reward_model: Optional[Path] = None,
                   no_cache: bool = False):
    """``evaluate --logs``: off-policy estimates of a saved model from a decision log."""
    import warnings
    from .data.decisions import read_decisions
    from .evaluation.ope import SupportWarning, evaluate_logs
    if not 0 < level < 1:
        raise ConfigError(f"--level must be in (0, 1), got {level}")
    if n_boot < 2:
        raise ConfigError(f"--n-boot must be >= 2, got {n_boot}")
    if clip is not None and clip <= 0:
        raise ConfigError(f"--clip must be > 0, got {clip}")
    r = _load_model(model, no_cache)
    q = _load_model(reward_model, no_cache) if reward_model is not None else None
    table = read_decisions(logs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SupportWarning)  # printed below, once
        res = evaluate_logs(table, r, policy=policy, n_boot=n_boot, level=level, clip=clip,
                            reward_router=q)
    res.update(router=r.name, model=str(model), n_decisions=len(table),
               torn_lines=table.attrs.get("torn_lines", 0))
    if as_json:
        _echo(json.dumps(res))
    else:
        _echo(f"{r.name} ({res['policy']}) off-policy on {res['n']} decisions with outcomes "
              f"(of {len(table)} logged); logging policy's mean outcome "
              f"{res['logged_mean']:.4f}")
        _echo(f"  {'estimator':<10}{'estimate':>10}  {int(level * 100)}% interval")
        for e in ("ips", "snips", "dm", "dr"):
            if e in res:
                v = res[e]
                _echo(f"  {e.upper():<10}{v['estimate']:>10.4f}  [{v['low']:.4f}, "
                      f"{v['high']:.4f}]")
        _echo(f"  effective sample size {res['ess']:.1f}; unsupported choice mass "
              f"{res['unsupported_mass']:.3f} (support checked: {res['support_checked']})")
    for w in res["warnings"]:
        typer.echo(f"warning: {w}", err=True)


@app.command(help="Refit a model on a service's decision log (partial feedback).\n\n"
             "Each logged decision with an outcome is one observed record (prompt, chosen "
             "LLM, outcome); the other LLMs stay unobserved. Routers that accept weights "
             "(linear) weight records by the clipped inverse propensity. The new model has "
             "the router type, parameters and encoder settings of --warm-start; with "
             "--data the full-information records are added (e.g. the data the deployed "
             "model was fitted on).\n\n"
             "Examples:\n\n  llmrec refit --logs logs/ --warm-start model --out model-v2\n\n"
             "  llmrec refit --logs logs/ --warm-start model --data train.csv --out model-v2")
def refit(logs: Path = typer.Option(..., "--logs", help="decision log file or folder"),
          warm_start: Path = typer.Option(..., "--warm-start",
                                          help="the deployed model (router, parameters, LLMs)"),
          out: Path = typer.Option(..., "--out", help="model directory to write"),
          data: List[str] = typer.Option([], "--data", help="full-information records to "
                                                             "add (repeatable)"),
          clip: float = typer.Option(10.0, "--clip", help="cap on 1/propensity"),
          weighting: str = typer.Option("ips", "--weighting", help="ips|none")):
    from .data.decisions import read_decisions
    from .data.records import PerformanceRecords
    from .policies.learning import fit_logged
    from .routers import make_router
    if weighting not in ("ips", "none"):
        raise ConfigError(f"--weighting must be ips or none, got {weighting!r}")
    if clip < 1:
        raise ConfigError(f"--clip must be >= 1, got {clip}")
    old = _load_model(warm_start)
    table = read_decisions(logs)
    parts = [load_data(d) for d in data]
    full = None
    if parts:
        full = PerformanceRecords.concat(parts) if len(parts) > 1 else parts[0]
        missing = [n for n in old.llm_names_ if n not in set(full.llm_names)]
        if missing:
            raise DataFormatError(f"--data lacks LLM(s) {missing[:5]} of {warm_start}")
        full = full.select_llms(old.llm_names_)
    enc = None
    side = ()
    if old.featurizer_ is not None:
        from .encoders import encoder_from_state
        cfg = old.featurizer_.encoder.get_config()
        enc = encoder_from_state(cfg, {}) if cfg.get("type") == "tfidf" else \
            old.featurizer_.encoder
        side = tuple(old.featurizer_.side_features)
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        r = fit_logged(make_router(old.name, **old.get_params()), table, warm_start=full,
                       clip=clip, weighting=weighting, encoder=enc, side_features=side,
                       llm_names=old.llm_names_, show_progress=_progress())
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    r.save(out)
    info = {**r.logged_fit_, "logs": str(logs), "warm_start": str(warm_start),
            "data": [_data_spec(d) for d in data], "router": old.name, "how": "refit on logs"}
    (out / "fit_info.json").write_text(json.dumps(_jsonable(info), indent=2))
    _echo(f"refit {old.name} on {info['n_decisions']} logged outcomes "
          f"({'inverse-propensity weighted' if info['weighted'] else 'unweighted'}"
          + (f", plus {full.n_prompts} full-information prompts" if full is not None else "")
          + f") -> {out}")


# ---------------------------------------------------------------- bench / demo
_PROTOCOLS = ("routereval", "cold-prompt", "cold-llm", "scaling")
_BENCH_DEFAULT_ROUTERS = "best-single,knn,linear,als,oracle,random"


def _int_list(text: Optional[str], option: str) -> Optional[list]:
    if text is None:
        return None
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated integers, "
                          "e.g. 3,5,10") from None
    if not vals or min(vals) < 1:
        raise ConfigError(f"{option} {text!r}: expected positive integers, e.g. 3,5,10")
    return vals


def _bench_routers(routers: str, params: List[str]) -> list:
    """``knn,als`` + ``--param knn:k=10`` -> [("knn(k=10)", "knn", {"k": 10}), "als"]."""
    names = [r.strip() for r in routers.split(",") if r.strip()]
    if not names:
        raise ConfigError("--routers: give at least one router name, e.g. --routers knn,als")
    per: dict = {}
    for item in params:
        if ":" not in item.split("=", 1)[0]:
            raise ConfigError(f"--param {item!r}: expected ROUTER:key=value, e.g. "
                              "--param knn:k=10")
        name, kv = item.split(":", 1)
        if name not in names:
            raise ConfigError(f"--param {item!r}: router {name!r} is not in --routers"
                              f"{_did_you_mean(name, names)}")
        per.setdefault(name, []).append(kv)
    out = []
    for n in names:
        p = _router_params(n, per.get(n, []), f"--param {n}:")
        out.append((n, p) if p else n)
    return out


@app.command(help="Run a benchmark protocol on a dataset and write results.md / "
                  "results.json (llmrec.evaluation.bench).\n\n"
                  "With --seeds N the protocol runs for seeds SEED .. SEED+N-1 and the "
                  "summary gives mean ± std over seeds. Every (dataset, protocol, seed, "
                  "router, parameters) run is cached under --cache-dir, so a rerun after a "
                  "crash or after adding a router computes only what is missing.\n\n"
                  "Examples:\n\n"
                  "  llmrec bench --data synthetic --routers best-single,knn "
                  "--protocol cold-prompt --out results\n\n"
                  "  llmrec bench --data mmlu-pro --routers knn,linear --param knn:k=10 "
                  "--seeds 5 --jobs 2 --out results")
def bench(data: str = typer.Option("synthetic", "--data", help="dataset name or path"),
          protocol: str = typer.Option("routereval", "--protocol",
                                       help="|".join(_PROTOCOLS)),
          routers: str = typer.Option(_BENCH_DEFAULT_ROUTERS, "--routers",
                                      help="comma-separated router names"),
          param: List[str] = typer.Option([], "--param",
                                          help="router parameter ROUTER:key=value, e.g. "
                                               "knn:k=10 (repeatable)"),
          encoder: str = typer.Option("tfidf", "--encoder", help=ENCODER_SPECS),
          encoder_param: List[str] = typer.Option([], "--encoder-param",
                                                  help="encoder setting key=value"),
          seed: int = typer.Option(42, "--seed", help="first seed"),
          seeds: int = typer.Option(1, "--seeds", help="number of seeds (mean ± std)"),
          sizes: Optional[str] = typer.Option(None, "--sizes", "--pools",
                                              help="pool sizes, e.g. 3,5,10 (routereval, "
                                                   "scaling)"),
          n_repeats: int = typer.Option(3, "--n-repeats", help="pools per size (scaling)"),
          n_boot: int = typer.Option(200, "--n-boot", help="bootstrap resamples for CIs"),
          held_out: Optional[float] = typer.Option(None, "--held-out",
                                                   help="cold-llm: share (<1) or number of "
                                                        "LLMs held out"),
          n_probe: Optional[int] = typer.Option(None, "--n-probe",
                                                help="cold-llm: probe prompts per new LLM"),
          out: Path = typer.Option(Path("bench_out"), "--out", "--out-dir",
                                   help="output directory"),
          cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                   help="result cache (default OUT/cache)"),
          no_cache: bool = typer.Option(False, "--no-cache",
                                        help="recompute every run (and do not use the "
                                             "embedding cache)"),
          jobs: int = typer.Option(1, "--jobs", "-j", help="runs in parallel processes")):
    from .evaluation.bench import run_bench_seeds
    _choice(protocol, _PROTOCOLS, "--protocol")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    if n_boot < 0 or n_repeats < 1:
        raise ConfigError("--n-boot must be >= 0 and --n-repeats >= 1")
    pool_sizes = _int_list(sizes, "--sizes")
    specs = _bench_routers(routers, param)
    enc = _make_encoder(encoder, encoder_param)
    enc = _cached(enc, no_cache) if encoder != "tfidf" or encoder_param else "tfidf"
    _out_dir(out)
    if cache_dir is not None:
        _out_dir(cache_dir, "--cache-dir")
    extra = {}
    if held_out is not None:
        if protocol != "cold-llm":
            raise ConfigError("--held-out applies to --protocol cold-llm")
        extra["held_out"] = int(held_out) if held_out >= 1 else held_out
    if n_probe is not None:
        if protocol != "cold-llm":
            raise ConfigError("--n-probe applies to --protocol cold-llm")
        extra["n_probe"] = n_probe
    rec = load_data(data)
    res = run_bench_seeds(rec, specs, protocol=protocol, encoder=enc, out_dir=out,
                          seeds=range(seed, seed + seeds), cache_dir=cache_dir,
                          use_cache=not no_cache, jobs=jobs, show_progress=_progress(),
                          sizes=pool_sizes, n_boot=n_boot, n_repeats=n_repeats, **extra)
    _echo(res.to_string())
    _info(f"results in {out}/ (results.md, results.json)")


@app.command(help="Run the end-to-end demo on synthetic data (llmrec.evaluation.run_demo): "
                  "fit routers, compare them with 95% CIs, show the top-3 LLMs of three "
                  "prompts, plot the scaling curve.\n\n"
                  "Examples:\n\n  llmrec demo --out demo_out\n\n"
                  "  llmrec demo --out demo_small --n-prompts 300 --n-llms 6 --seed 1")
def demo(out: Path = typer.Option(Path("demo_out"), "--out", "--out-dir",
                                  help="output folder"),
         seed: int = typer.Option(0, "--seed", help="random seed"),
         n_prompts: int = typer.Option(1000, "--n-prompts", help="synthetic prompts"),
         n_llms: int = typer.Option(10, "--n-llms", help="synthetic LLMs")):
    from .evaluation import run_demo
    _out_dir(out)
    if n_prompts < 50:
        raise ConfigError(f"--n-prompts must be >= 50 (a 10% test split needs prompts), "
                          f"got {n_prompts}")
    if n_llms < 2:
        raise ConfigError(f"--n-llms must be >= 2, got {n_llms}")
    run_demo(out=out, seed=seed, quiet=_OPTS["quiet"], n_prompts=n_prompts, n_llms=n_llms,
             show_progress=_progress())  # run_demo prints its own report


# ----------------------------------------------------------------------- split
@app.command(help="Split records into train / val / test record sets (directories that "
                  "every --data option reads).\n\n"
                  "cold-prompt: by prompt, stratified by benchmark when known (every test "
                  "prompt is unseen in training); routereval: RouterEval's 80/10/10 legacy "
                  "shuffle; cold-llm: --held-out LLMs kept out of train.\n\n"
                  "Examples:\n\n"
                  "  llmrec split --data synthetic --protocol cold-prompt --seed 42 "
                  "--out splits\n\n"
                  "  llmrec fit --data splits/train --router knn --out model && "
                  "llmrec evaluate --model model --data splits/test")
def split(data: str = typer.Option(..., "--data", help="dataset name or path"),
          protocol: str = typer.Option("cold-prompt", "--protocol",
                                       help="cold-prompt|routereval|cold-llm"),
          seed: int = typer.Option(42, "--seed", help="random seed"),
          val: float = typer.Option(0.1, "--val", help="validation share (cold-prompt)"),
          test: float = typer.Option(0.1, "--test", help="test share (cold-prompt, cold-llm)"),
          held_out: float = typer.Option(0.2, "--held-out",
                                         help="cold-llm: share (<1) or number of LLMs"),
          out: Path = typer.Option(..., "--out", help="directory for train/ val/ test/"),
          on_duplicate: str = typer.Option("error", "--on-duplicate", help=ON_DUPLICATE_HELP)):
    from .data import splits as S
    _choice(protocol, ("cold-prompt", "routereval", "cold-llm"), "--protocol")
    for name, v in (("--val", val), ("--test", test)):
        if not 0 <= v < 1:
            raise ConfigError(f"{name} must be in [0, 1), got {v}")
    _out_dir(out)
    rec = load_data(data, on_duplicate)
    if protocol == "cold-prompt":
        parts = dict(zip(("train", "val", "test"),
                         S.cold_prompt_split(rec, val=val, test=test, seed=seed)))
    elif protocol == "routereval":
        parts = dict(zip(("train", "val", "test"), S.routereval_split(rec, seed=seed)))
    else:
        sp = S.cold_llm_split(rec, held_out=int(held_out) if held_out >= 1 else held_out,
                              test=test, seed=seed)
        parts = {k: getattr(sp, k) for k in ("train", "probe", "test") if hasattr(sp, k)}
    out.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.save(out / name)
        _echo(f"{name}: {part.n_prompts} prompts x {part.n_llms} LLMs "
              f"({part.n_observed:,} records) -> {out / name}")
    (out / "split.json").write_text(json.dumps(
        {"data": _data_spec(data), "protocol": protocol, "seed": seed, "val": val,
         "test": test, "held_out": held_out if protocol == "cold-llm" else None,
         "parts": {k: {"n_prompts": v.n_prompts, "n_llms": v.n_llms} for k, v in
                   parts.items()}}, indent=2) + "\n")


# ----------------------------------------------------------------------- cache
cache_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                        help="The embedding cache: where it is, its size, clearing it.\n\n"
                             "fit, recommend, evaluate, encode and bench keep sentence "
                             "embeddings there (keyed by encoder fingerprint and prompt "
                             "text), so a refit never re-encodes the same prompts. "
                             "Location: $LLMREC_CACHE/emb, else ~/.cache/llmrec/emb; --no-cache "
                             "on a command skips it.\n\nExamples:\n\n  llmrec cache info\n\n"
                             "  llmrec cache clear")
app.add_typer(cache_app, name="cache")


def _cache_entries(root: Path) -> list:
    from .encoders.cache import SHARD_GLOB
    if not root.is_dir():
        return []
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        shards = list(d.glob(SHARD_GLOB))
        if shards:
            out.append((d, len(shards), sum(f.stat().st_size for f in shards)))
    return out


@cache_app.command("info", help="Show the embedding cache directory and its size per "
                   "encoder.\n\nExamples:\n\n  llmrec cache info")
def cache_info(cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                        help="default $LLMREC_CACHE/emb or "
                                                             "~/.cache/llmrec/emb")):
    from .encoders.cache import default_cache_dir
    root = _out_dir(cache_dir or default_cache_dir(), "--cache-dir")
    entries = _cache_entries(root)
    total = sum(e[2] for e in entries)
    _echo(f"embedding cache: {root} ({len(entries)} encoder(s), {total / 2**20:.1f} MiB)")
    for d, n, size in entries:
        _echo(f"  {d.name}: {n} shard(s), {size / 2**20:.1f} MiB")


@cache_app.command("clear", help="Delete the cached embeddings (only the cache's own shard "
                   "folders).\n\nExamples:\n\n  llmrec cache clear")
def cache_clear(cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                         help="default $LLMREC_CACHE/emb or "
                                                              "~/.cache/llmrec/emb")):
    import shutil
    from .encoders.cache import default_cache_dir
    root = _out_dir(cache_dir or default_cache_dir(), "--cache-dir")
    entries = _cache_entries(root)
    for d, _, _ in entries:
        shutil.rmtree(d, ignore_errors=True)
    _echo(f"removed {len(entries)} encoder folder(s), "
          f"{sum(e[2] for e in entries) / 2**20:.1f} MiB, from {root}")


# ----------------------------------------------------------------------- serve
@app.command(help="Serve a model over HTTP (FastAPI + uvicorn); docs at /docs.\n\n"
             "Set LLMREC_API_KEY to require an X-API-Key header on /v1/*. SIGHUP or "
             "POST /v1/admin/reload reloads the model without dropping requests (admin "
             "endpoints need their own key: set LLMREC_ADMIN_KEY, send X-Admin-Key).\n\n"
             "With --upstreams upstreams.toml the service is also an OpenAI-compatible "
             "routing proxy: POST /v1/chat/completions with model llmrec-auto is routed "
             "to the best LLM (docs/service.md).\n\n"
             "Examples:\n\n  llmrec serve --model model --port 8000\n\n"
             "  curl -s localhost:8000/v1/recommend -H 'content-type: application/json' "
             "-d '{\"prompts\": [\"hi\"], \"k\": 2}'\n\n"
             "  llmrec serve --model model --upstreams upstreams.toml --workers 2")
def serve(model: Path = typer.Option(..., "--model", help="model directory"),
          host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
          port: int = typer.Option(8000, "--port", help="TCP port (a busy port: exit 2)"),
          feedback_log: Optional[Path] = typer.Option(None, "--feedback-log",
                                                      help="default: MODEL/../feedback.jsonl"),
          max_prompts: int = typer.Option(256, "--max-prompts",
                                          help="most prompts in one request"),
          max_prompt_chars: int = typer.Option(8000, "--max-prompt-chars",
                                               help="longest prompt, in characters"),
          long_prompts: str = typer.Option("truncate", "--long-prompts",
                                           help="truncate|reject"),
          batch_window_ms: float = typer.Option(5.0, "--batch-window-ms",
                                                help="micro-batching window, ms"),
          upstreams: Optional[Path] = typer.Option(
              None, "--upstreams", help="upstreams.toml: adds the OpenAI-compatible proxy "
                                        "(POST /v1/chat/completions, GET /v1/models)"),
          workers: int = typer.Option(1, "--workers", help="worker processes sharing the port "
                                                           "(each loads the model)"),
          graceful_timeout: float = typer.Option(
              30.0, "--graceful-timeout", help="seconds in-flight requests may take to finish "
                                               "on SIGTERM/SIGINT"),
          log_dir: Optional[Path] = typer.Option(
              None, "--log-dir", help="folder of feedback.jsonl and decisions.jsonl "
                                      "(default: the feedback log's folder)"),
          decision_log: bool = typer.Option(True, "--decision-log/--no-decision-log",
                                            help="log every decision to decisions.jsonl"),
          log_texts: bool = typer.Option(True, "--log-texts/--no-log-texts",
                                         help="write prompt texts into the decision log "
                                              "(off: only their SHA-256)"),
          policy: str = typer.Option("greedy", "--policy",
                                     help="how the service picks one LLM per prompt: greedy, "
                                          "epsilon-greedy:eps=0.1, softmax:temperature=0.05; "
                                          "each decision is logged with its propensity"),
          models_root: Optional[Path] = typer.Option(
              None, "--models-root", help="POST /v1/admin/reload loads only model folders "
              "under this directory (default: the folder holding MODEL); admin endpoints "
              "also need env LLMREC_ADMIN_KEY (header X-Admin-Key)"),
          max_body_bytes: int = typer.Option(16 << 20, "--max-body-bytes",
                                             help="largest request body; larger: 413")):
    try:
        from .service.server import run
    except ImportError as e:
        raise CapabilityError(f"serving needs the serve extra ({e}): "
                              "pip install 'llmrec[serve]'") from None
    if not model.exists():
        raise FileNotFoundError(f"model directory {model} does not exist")
    _choice(long_prompts, ("truncate", "reject"), "--long-prompts")
    if upstreams is not None:
        if not upstreams.is_file():
            raise FileNotFoundError(f"upstreams file {upstreams} does not exist")
        from .service.upstreams import load_upstreams
        load_upstreams(upstreams)  # a bad file fails before the port or the model is touched
    extra = _serve_policy(policy)
    _check_port_free(host, port)
    kwargs = dict(model_dir=model, feedback_log=feedback_log, max_prompts=max_prompts,
                  max_prompt_chars=max_prompt_chars, long_prompts=long_prompts,
                  batch_window_ms=batch_window_ms, upstreams=upstreams, log_dir=log_dir,
                  decision_log=decision_log, log_texts=log_texts, models_root=models_root,
                  max_body_bytes=max_body_bytes, **extra)
    run(kwargs, host=host, port=port, workers=workers, graceful_timeout=graceful_timeout,
        log_level="warning" if _OPTS["quiet"] else "info",
        announce=lambda: _info(f"serving {model} on http://{host}:{port} with {workers} "
                               "worker(s) (docs: /docs" + (", OpenAI-compatible proxy at /v1"
                                                           if upstreams is not None else "")
                               + ")"))


def _serve_policy(spec: str) -> dict:
    """``serve --policy``: the spec, checked, as create_app's keyword (none for greedy)."""
    from .policies import make_policy
    try:
        pol = make_policy(spec)
    except LLMRecError as e:
        raise ConfigError(f"--policy: {e}") from None
    if getattr(pol, "needs_std", False):
        raise ConfigError(f"--policy {spec}: the service passes no score uncertainty; use "
                          "greedy, epsilon-greedy or softmax (ucb and thompson run through "
                          "llmrec.policies.choose)")
    return {} if pol.spec == "greedy" else {"policy": pol.spec}


def _check_port_free(host: str, port: int) -> None:
    """A busy port is a usage error (exit 2) before the model loads, not uvicorn's exit 3."""
    import socket
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port}: must be in 0..65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve ({e})") from None
    fam, _, _, _, addr = infos[0]
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as e:
            raise ConfigError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror}); "
                              "another process holds it, choose another port") from None


# ---------------------------------------------------------------------- doctor
@app.command(help="Find what crashes leave behind: leftovers of interrupted saves, torn "
             "log tails, saved models that fail their checksums.\n\n"
             "Exit code 0 when nothing is wrong (or --clean fixed it all), 1 otherwise.\n\n"
             "Examples:\n\n  llmrec doctor models/\n\n  llmrec doctor --clean models/ logs/")
def doctor(paths: List[Path] = typer.Argument(None, help="folders to check (default: .)"),
           clean: bool = typer.Option(False, "--clean", help="restore interrupted swaps, "
                                      "remove dead temporary folders and stale .old copies, "
                                      "move torn log tails aside")):
    from .doctor import diagnose
    found = diagnose(paths or [Path(".")], clean=clean)
    for f in found:
        _echo(f"{f.kind}: {f.path}: {f.detail}" + (f" -> {f.fixed}" if f.fixed else ""))
    left = [f for f in found if not (clean and f.fixable)
            and f.kind not in ("save-in-progress", "torn-tail-file")]
    _echo(f"{len(found)} finding(s)" + (f", {len(found) - len(left)} fixed" if clean else "")
          + ("" if found else ": nothing to do"))
    if left:
        raise typer.Exit(1)


# ------------------------------------------------------------------------ main
#: exceptions that mean "the command was given something wrong": exit 2
_USAGE = (ConfigError, CapabilityError, UnknownIdError, DatasetNotFoundError, FileNotFoundError,
          IsADirectoryError, NotADirectoryError, PermissionError, FileExistsError, LLMRecError)
#: exceptions that mean "the data or the saved model is wrong": exit 1
_DATA = (DataFormatError, ModelFormatError, NotFittedError)


def _one_line(msg: str) -> str:
    return " ".join(msg.split()) if "\n" in msg else msg


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``llmrec`` script.

    Exits with 0 (success), 2 (a usage error: bad option or value, missing file, unknown
    name) or 1 (bad data or model, naming file, line and column; or an unexpected
    failure). One ``error:`` line on stderr, no traceback unless ``--debug``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    _OPTS["debug"] = "--debug" in args or os.environ.get("LLMREC_DEBUG") == "1"
    try:
        rv = app(args=args, prog_name="llmrec", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except _Exit as e:
        code = getattr(e, "exit_code", 0)
    except _Abort:
        typer.echo("error: aborted", err=True)
        code = 1
    except _ClickException as e:
        if _OPTS["debug"]:
            raise
        if type(e).__name__ == "NoArgsIsHelpError":  # bare `llmrec` / `llmrec data`
            typer.echo(e.format_message(), err=True)
            sys.exit(2)
        hint = ""
        ctx = getattr(e, "ctx", None)
        if ctx is not None:
            hint = f" (see: {ctx.command_path} --help)"
        typer.echo(f"error: {_one_line(e.format_message())}{hint}", err=True)
        code = 2
    except (_USAGE + _DATA) as e:
        if _OPTS["debug"]:
            raise
        msg = str(e) if not isinstance(e, OSError) or not e.filename else \
            f"{e.strerror}: {e.filename}"
        typer.echo(f"error: {_one_line(msg or type(e).__name__)}", err=True)
        code = 1 if isinstance(e, _DATA) else 2
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 - the last resort of a command line
        if _OPTS["debug"]:
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {_one_line(str(e))} (rerun with "
                   "--debug for the traceback)", err=True)
        code = 1
    finally:  # an in-process caller (tests, notebooks) gets the library defaults back
        _prog.set_quiet(False)
        _prog.set_log_lines(False)
    sys.exit(code)
