"""The ``llmrec`` command line: data, encode, fit, recommend, evaluate, bench, demo, serve.

Every subcommand has ``--help`` with examples. User mistakes (any
:class:`~llmrec.errors.LLMRecError`, a missing file, a bad option) print one line
``error: ...`` on stderr and exit with code 2; an unexpected failure exits with 1.
``llmrec --debug ...`` shows the traceback; ``llmrec --quiet ...`` hides progress bars.

This module is a face: it only calls the layers below it and nothing imports it.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
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

from .errors import CapabilityError, ConfigError, DataFormatError, DatasetNotFoundError, \
    LLMRecError

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


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="show tracebacks on errors"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars")):
    _OPTS["debug"] = debug or _OPTS["debug"]
    _OPTS["quiet"] = quiet
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


def load_data(spec: str):
    """Records from a dataset name or a path (what ``--data`` and ``data info`` accept).

    Feedback logs written by the service are read with
    :func:`llmrec.service.feedback.read_feedback_log`; everything else goes through
    ``llmrec.datasets.load`` when it exists, else a small built-in reader of
    ``synthetic``, saved records, long CSV/parquet/JSONL tables and directories with
    ``records.csv`` (+ ``prompts.csv``, ``llms.csv``).
    """
    from .service.feedback import is_feedback_log, read_feedback_log
    if is_feedback_log(spec):
        return read_feedback_log(spec)
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


def _load_model(model: Path):
    from .routers import load_router
    if not model.exists():
        raise FileNotFoundError(f"model directory {model} does not exist; make one with "
                                "llmrec fit ... --out DIR")
    return load_router(model)


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
                  "omitted.\n\nExamples:\n\n  llmrec data convert synthetic synth.csv\n\n"
                  "  llmrec data convert records.csv out.parquet --to parquet")
def data_convert(source: str = typer.Argument(..., help="dataset name or path"),
                 out: Path = typer.Argument(..., help="output path"),
                 to: Optional[str] = typer.Option(None, "--to", help="|".join(_CONVERT_TO))):
    if to is None:
        suf = out.suffix.lower()
        to = {".csv": "long-csv", ".parquet": "parquet", ".pkl": "routereval",
              "": "records"}.get(suf)
        if to is None:
            raise ConfigError(f"cannot guess the format of {out}; pass --to "
                              f"{'|'.join(_CONVERT_TO)}")
    if to not in _CONVERT_TO:
        raise ConfigError(f"--to {to!r}: choose one of {', '.join(_CONVERT_TO)}")
    rec = load_data(source)
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
             "served by a PrecomputedEncoder.\n\n"
             "Examples:\n\n  llmrec encode synthetic --encoder tfidf --out emb.npy\n\n"
             "  llmrec encode mmlu-pro --encoder minilm --out mmlu.npy --cache-dir .emb")
def encode(source: str = typer.Argument(..., help="dataset name or path"),
           encoder: str = typer.Option("tfidf", "--encoder", help="tfidf|minilm|<model path>"),
           out: Path = typer.Option(..., "--out", help="output .npy file"),
           encoder_param: List[str] = typer.Option([], "--encoder-param",
                                                   help="encoder setting key=value"),
           cache_dir: Optional[Path] = typer.Option(None, "--cache-dir",
                                                    help="on-disk embedding cache")):
    from .encoders import encode_records, make_encoder
    try:
        enc = make_encoder(encoder, **_parse_params(encoder_param, "--encoder-param"))
    except TypeError as e:
        raise ConfigError(f"--encoder-param: {e}") from None
    rec = load_data(source)
    if not rec.has_text:
        raise DataFormatError(f"{source}: the records carry no prompt text to encode")
    out.parent.mkdir(parents=True, exist_ok=True)
    res = encode_records(rec, encoder=enc, out_path=out, cache_dir=cache_dir,
                         show_progress=_progress())
    _echo(f"wrote {res['n']} x {res['dim']} embeddings to {res['npy']} (ids: {res['ids']}; "
          f"encoder {res['encoder']})")


# ------------------------------------------------------------------------- fit
@app.command(help="Fit a router and save it to a model directory.\n\n"
             "--param key=value sets router parameters (repeatable). --data may be "
             "repeated; the records are concatenated. --warm-start DIR starts from a saved "
             "model: same router and parameters, and the new records (e.g. the service's "
             "feedback log) are folded in: by partial_fit when the router has one, else by "
             "refitting on the model's original data (recorded in DIR/fit_info.json) plus "
             "the new records.\n\nExamples:\n\n"
             "  llmrec fit --data synthetic --router best-single --out model\n\n"
             "  llmrec fit --data synthetic --router knn --param k=5 --encoder tfidf "
             "--out model\n\n"
             "  llmrec fit --data feedback.jsonl --warm-start model --out model-v2")
def fit(data: List[str] = typer.Option(..., "--data", help="dataset name or path (repeatable)"),
        router: Optional[str] = typer.Option(None, "--router",
                                             help="router registry name (default: auto)"),
        param: List[str] = typer.Option([], "--param", help="router parameter key=value"),
        encoder: Optional[str] = typer.Option(None, "--encoder", help="tfidf|minilm|<path>"),
        encoder_param: List[str] = typer.Option([], "--encoder-param",
                                                help="encoder setting key=value, e.g. dim=64"),
        side_feature: List[str] = typer.Option([], "--side-feature",
                                               help="benchmark|category|length (repeatable)"),
        out: Path = typer.Option(..., "--out", help="model directory to write"),
        warm_start: Optional[Path] = typer.Option(None, "--warm-start",
                                                  help="saved model to start from"),
        tune: bool = typer.Option(False, "--tune", help="pick the router's main settings on "
                                  "a validation share of the training prompts (grids: "
                                  "llmrec.routers.tuning.DEFAULT_GRIDS)")):
    from .data.records import PerformanceRecords
    from .routers import make_router
    params = _parse_params(param)
    enc_params = _parse_params(encoder_param, "--encoder-param")
    if enc_params and encoder is None:
        encoder = "tfidf"
    side = list(side_feature)
    parts = [load_data(d) for d in data]
    data_specs = [_data_spec(d) for d in data]
    how = "fit"
    enc_obj = None
    if warm_start is not None:
        old = _load_model(warm_start)
        if router is not None and router != old.name:
            raise ConfigError(f"--warm-start model is a {old.name!r} router but --router is "
                              f"{router!r}; drop --router or use {old.name!r}")
        router = old.name
        params = {**old.get_params(), **params}
        info_p = warm_start / "fit_info.json"
        old_specs = []
        if info_p.is_file():
            try:
                old_specs = json.loads(info_p.read_text()).get("data", [])
            except ValueError:
                raise DataFormatError(f"{info_p}: corrupt JSON") from None
        if hasattr(old, "partial_fit"):
            r = old.set_params(**params).partial_fit(PerformanceRecords.concat(parts)
                                                     if len(parts) > 1 else parts[0])
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
    if router is None:
        router = "auto"  # stacked candidates with a no-regret guard (docs/routers)
    train = PerformanceRecords.concat(parts) if len(parts) > 1 else parts[0]
    if how != "partial_fit":
        r = make_router(router, **params) if not tune else None
        kw = {"show_progress": _progress(), "side_features": side}
        if enc_obj is not None:
            kw["encoder"] = enc_obj
        elif encoder is not None:
            from .encoders import make_encoder
            try:
                kw["encoder"] = make_encoder(encoder, **enc_params)
            except TypeError as e:
                raise ConfigError(f"--encoder-param: {e}") from None
        if tune:
            from .routers.tuning import tune_router
            r = tune_router(router, train, params=params, **kw)
        else:
            r.fit(train, **kw)
    from .routers.tuning import describe_tuning
    if describe_tuning(r):
        _echo(describe_tuning(r))
    r.save(out)
    (out / "fit_info.json").write_text(json.dumps(
        {"data": data_specs, "router": router, "params": _jsonable(params),
         "encoder": encoder, "encoder_params": _jsonable(enc_params), "side_features": side,
         "how": how, "warm_start": str(warm_start) if warm_start else None,
         "n_prompts": train.n_prompts, "n_llms": train.n_llms,
         "n_observed": train.n_observed}, indent=2))
    _echo(f"{how}: {router} on {train.n_prompts} prompts x {train.n_llms} LLMs "
          f"({train.n_observed:,} records) -> {out}")


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
                                                help="rank by score - w x cost"),
              as_json: bool = typer.Option(False, "--json", help="JSON lines output")):
    texts = list(prompts or [])
    if input is not None:
        texts += _read_prompts(input)
    if not texts:
        raise ConfigError("no prompts: give PROMPT arguments or --input FILE")
    if k < 1:
        raise ConfigError(f"-k must be >= 1, got {k}")
    cand = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
    r = _load_model(model)
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
             "successful LLM.\n\n"
             "Examples:\n\n  llmrec evaluate --model model --data test.csv")
def evaluate(model: Path = typer.Option(..., "--model", help="model directory"),
             data: str = typer.Option(..., "--data", help="dataset name or path"),
             as_json: bool = typer.Option(False, "--json", help="print JSON")):
    import numpy as np
    r = _load_model(model)
    rec = load_data(data)
    names = r.llm_names_
    missing = [n for n in names if n not in set(rec.llm_names)]
    if missing:
        raise DataFormatError(f"{data} lacks LLM(s) {missing[:5]} the model ranks; evaluate "
                              "on records of the same LLMs")
    rec = rec.select_llms(names)
    rec = rec.select_prompts(np.flatnonzero(rec.observed_dense().any(axis=1)))
    if rec.n_prompts == 0:
        raise DataFormatError(f"{data}: no observed records to evaluate on")
    from .evaluation.metrics import hit_at_k, routereval_metrics
    S = r.score(rec, show_progress=_progress())
    truth = rec.dense()
    rm = routereval_metrics(S, truth)
    m = {"router": r.name, "n_prompts": rm["n_prompts"], "mu": rm["mu"], "Vb": rm["vb"],
         "hit@3": hit_at_k(S, truth, k=3)}
    if as_json:
        _echo(json.dumps(m))
    else:
        _echo(f"{r.name} on {m['n_prompts']} prompts: mu {m['mu']:.4f}  Vb {m['Vb']:.4f}  "
              f"Hit@3 {m['hit@3']:.4f}")


# ---------------------------------------------------------------- bench / demo
def _extra_kwargs(args: List[str], fn) -> dict:
    """--key value / --flag / --no-flag pairs -> kwargs checked against fn's signature."""
    out, i = {}, 0
    while i < len(args):
        a = args[i]
        if not a.startswith("--"):
            raise ConfigError(f"unexpected argument {a!r}; options look like --name value")
        key = a[2:]
        if "=" in key:
            key, val = key.split("=", 1)
            out[key.replace("-", "_")] = _parse_value(val)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            out[key.replace("-", "_")] = _parse_value(args[i + 1])
            i += 2
        elif key.startswith("no-"):
            out[key[3:].replace("-", "_")] = False
            i += 1
        else:
            out[key.replace("-", "_")] = True
            i += 1
    sig = inspect.signature(fn)
    if not any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        bad = [k for k in out if k not in sig.parameters]
        if bad:
            opts = ", ".join("--" + p.replace("_", "-") for p in sig.parameters)
            raise ConfigError(f"unknown option(s) "
                              f"{', '.join('--' + b.replace('_', '-') for b in bad)}; "
                              f"accepted: {opts}")
    return out


def _evaluation_fn(name: str):
    try:
        from . import evaluation
    except ImportError:
        evaluation = None
    fn = getattr(evaluation, name, None) if evaluation is not None else None
    if fn is None:
        raise CapabilityError(f"llmrec.evaluation.{name} is not available in this llmrec")
    return fn


_FORWARD = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command(context_settings=_FORWARD,
             help="Run the benchmark (llmrec.evaluation.run_bench); every --option value "
                  "is forwarded as a keyword argument.\n\n"
                  "Examples:\n\n  llmrec bench --data synthetic --routers best-single,knn")
def bench(ctx: typer.Context):
    fn = _evaluation_fn("run_bench")
    kwargs = _extra_kwargs(ctx.args, fn)
    if "show_progress" in inspect.signature(fn).parameters and _OPTS["quiet"]:
        kwargs.setdefault("show_progress", False)
    res = fn(**kwargs)
    text = "" if res is None else (res.to_string() if hasattr(res, "to_string") else str(res))
    if text.strip():
        _echo(text)


@app.command(context_settings=_FORWARD,
             help="Run the end-to-end demo on synthetic data (llmrec.evaluation.run_demo); "
                  "other --option value pairs are forwarded.\n\n"
                  "Examples:\n\n  llmrec demo --out demo_out")
def demo(ctx: typer.Context,
         out: Optional[Path] = typer.Option(None, "--out", help="output folder")):
    fn = _evaluation_fn("run_demo")
    kwargs = _extra_kwargs(ctx.args, fn)
    if out is not None:
        kwargs["out"] = out
    params = inspect.signature(fn).parameters
    if _OPTS["quiet"]:
        for name in ("show_progress", "quiet"):
            if name in params:
                kwargs.setdefault(name, name == "quiet")
    fn(**kwargs)  # run_demo prints its own report


# ----------------------------------------------------------------------- serve
@app.command(help="Serve a model over HTTP (FastAPI + uvicorn); docs at /docs.\n\n"
             "Set LLMREC_API_KEY to require an X-API-Key header on /v1/*. SIGHUP or "
             "POST /v1/admin/reload reloads the model without dropping requests.\n\n"
             "Examples:\n\n  llmrec serve --model model --port 8000\n\n"
             "  curl -s localhost:8000/v1/recommend -H 'content-type: application/json' "
             "-d '{\"prompts\": [\"hi\"], \"k\": 2}'")
def serve(model: Path = typer.Option(..., "--model", help="model directory"),
          host: str = typer.Option("127.0.0.1", "--host"),
          port: int = typer.Option(8000, "--port"),
          feedback_log: Optional[Path] = typer.Option(None, "--feedback-log",
                                                      help="default: MODEL/../feedback.jsonl"),
          max_prompts: int = typer.Option(256, "--max-prompts"),
          max_prompt_chars: int = typer.Option(8000, "--max-prompt-chars"),
          long_prompts: str = typer.Option("truncate", "--long-prompts",
                                           help="truncate|reject"),
          batch_window_ms: float = typer.Option(5.0, "--batch-window-ms")):
    try:
        import uvicorn
        from .service.app import create_app
    except ImportError as e:
        raise CapabilityError(f"serving needs the serve extra ({e}): "
                              "pip install 'llmrec[serve]'") from None
    if not model.exists():
        raise FileNotFoundError(f"model directory {model} does not exist")
    application = create_app(model, feedback_log=feedback_log, max_prompts=max_prompts,
                             max_prompt_chars=max_prompt_chars, long_prompts=long_prompts,
                             batch_window_ms=batch_window_ms)
    _info(f"serving {model} on http://{host}:{port} (docs: /docs)")
    uvicorn.run(application, host=host, port=port,
                log_level="warning" if _OPTS["quiet"] else "info")


# ------------------------------------------------------------------------ main
def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``llmrec`` script; exits with 0, 1 (unexpected) or 2 (user error)."""
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
        typer.echo(f"error: {e.format_message()}{hint}", err=True)
        code = 2
    except (LLMRecError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        if _OPTS["debug"]:
            raise
        msg = str(e) if not isinstance(e, OSError) or not e.filename else \
            f"{e.strerror}: {e.filename}"
        typer.echo(f"error: {msg or type(e).__name__}", err=True)
        code = 2
    except KeyboardInterrupt:
        code = 130
    except Exception as e:  # noqa: BLE001 - the last resort of a command line
        if _OPTS["debug"]:
            raise
        typer.echo(f"error: unexpected {type(e).__name__}: {e} (rerun with --debug for the "
                   "traceback)", err=True)
        code = 1
    sys.exit(code)
