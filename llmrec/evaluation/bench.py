"""``llmrec bench``: run one protocol on one dataset, write results.json / .md / PNGs."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .._version import __version__
from ..data.records import PerformanceRecords
from ..errors import ConfigError
from . import protocols as P

__all__ = ["run_bench", "BenchResults", "DEFAULT_ROUTERS", "PROTOCOLS"]

#: protocol names; "routereval-exact" is RouterEval's protocol as its own code runs it
#: (:mod:`llmrec.evaluation.routereval_exact`), "routereval" llmrec's mode of it
PROTOCOLS = ("routereval", "routereval-exact", "cold-prompt", "cold-llm", "scaling")
DEFAULT_ROUTERS = ("best-single", "knn", "linear", "als", "oracle", "random")


class BenchResults(dict):
    """The results dict of :func:`run_bench`; ``to_string()`` gives the markdown report."""

    def to_string(self) -> str:
        return self.get("markdown", "")


def _load(data) -> PerformanceRecords:
    if isinstance(data, PerformanceRecords):
        return data
    try:
        from ..datasets import load
    except ImportError:  # pragma: no cover - registry absent
        raise ConfigError(f"cannot load {data!r}: this llmrec has no dataset registry; pass "
                          "PerformanceRecords") from None
    return load(data)


def _parse_routers(routers) -> list:
    if routers is None:
        return list(DEFAULT_ROUTERS)
    if isinstance(routers, str):
        return [r.strip() for r in routers.split(",") if r.strip()]
    return list(routers)


def _versions() -> dict[str, str]:
    import importlib.metadata as md
    out = {"llmrec": __version__, "python": platform.python_version()}
    for pkg in ("numpy", "scipy", "pandas", "scikit-learn", "faiss-cpu", "implicit", "torch",
                "sentence-transformers", "matplotlib"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _clean(obj):
    """JSON-safe: NaN/inf -> None, numpy -> python, DataFrames -> records."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return _clean(obj.to_dict("records"))
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    return obj


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    if isinstance(v, (float, np.floating)):
        return f"{v:.4f}"
    return str(v)


def markdown_table(df: pd.DataFrame, index: bool = True) -> str:
    """A DataFrame as a GitHub markdown table (MultiIndex columns joined with ' ')."""
    d = df.copy()
    if isinstance(d.columns, pd.MultiIndex):
        d.columns = [" ".join(str(x) for x in c) for c in d.columns]
    if index:
        d = d.reset_index()
    cols = [str(c) for c in d.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(_fmt(v) for v in row) + " |")
    return "\n".join(lines)


TIMING_COLUMNS = ("fit_score_seconds",)


def run_bench(data="synthetic", routers=None, protocol: str = "routereval", encoder="tfidf",
              out_dir="bench_out", seed: int = 42, show_progress: bool = True, sizes=None,
              n_boot: int = 200, n_repeats: int = 3, plots: bool = True,
              **protocol_kwargs) -> BenchResults:
    """Run a protocol and write ``results.json``, ``results.md`` and PNG plots.

    Parameters
    ----------
    data : str, path or PerformanceRecords
        A dataset name or path for :func:`llmrec.datasets.load`, or records.
    routers : list or comma-separated str
        Router names, ``(name, params)`` or ``(label, name, params)``; default
        :data:`DEFAULT_ROUTERS`.
    protocol : {"routereval", "routereval-exact", "cold-prompt", "cold-llm", "scaling"}
        ``routereval`` is llmrec's mode of RouterEval's protocol, ``routereval-exact``
        RouterEval's own (see ``docs/splits_and_pools.md``).
    encoder : str or Encoder
        ``"tfidf"``, ``"minilm"``, a sentence-transformers path, or an Encoder.
    out_dir : path
    seed : int
        Every random choice derives from it: same seed, same figures.
    sizes : sequence of int, optional
        Pool sizes (routereval) or pool sizes of the curve (scaling).
    n_boot : int
        Bootstrap resamples for the CIs.
    n_repeats : int
        Pools per size (scaling).
    plots : bool
        Write the PNG plots (``False`` saves about a second per run).
    **protocol_kwargs
        Passed to the protocol function (e.g. ``groups``, ``held_out``, ``n_probe``).

    Returns
    -------
    BenchResults
        The dict written to ``results.json``: ``settings``, ``versions``, ``data``,
        ``results`` (tidy rows), ``table``, ``details``, ``timings``, ``files``.

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> res = run_bench(make_synthetic(150, 5, seed=0), ["best-single", "oracle"],
    ...                 protocol="cold-prompt", out_dir=tempfile.mkdtemp(), n_boot=0,
    ...                 show_progress=False)
    >>> [r["router"] for r in res["results"]]
    ['best-single', 'oracle']
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    t0 = time.perf_counter()
    records = _load(data)
    specs = P.router_specs(_parse_routers(routers))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    enc_name = encoder if isinstance(encoder, str) else repr(encoder)
    common = dict(encoder=encoder, seed=seed, show_progress=show_progress)
    if isinstance(sizes, str):
        sizes = [int(s) for s in sizes.split(",") if s.strip()]
    if protocol == "routereval-exact":
        from .routereval_exact import routereval_exact_protocol
        res = routereval_exact_protocol(records, specs,
                                        **({"sizes": sizes} if sizes is not None else {}),
                                        **common, **protocol_kwargs)
    elif protocol == "routereval":
        res = P.routereval_protocol(records, specs, n_boot=n_boot,
                                    **({"sizes": sizes} if sizes is not None else {}),
                                    **common, **protocol_kwargs)
    elif protocol == "cold-prompt":
        res = P.cold_prompt_protocol(records, specs, n_boot=n_boot, **common, **protocol_kwargs)
    elif protocol == "cold-llm":
        res = P.cold_llm_protocol(records, specs, n_boot=n_boot, **common, **protocol_kwargs)
    else:
        res = P.scaling_curve(records, specs, sizes=sizes, n_repeats=n_repeats, **common,
                              **protocol_kwargs)

    tidy = res.tidy.copy()
    timing_cols = [c for c in TIMING_COLUMNS if c in tidy]
    timings = tidy[["router"] + timing_cols].to_dict("records") if timing_cols else []
    tidy = tidy.drop(columns=timing_cols)
    files = {}
    try:
        if plots:
            files.update(_plots(protocol, res, out))
    except Exception as e:  # noqa: BLE001 - a failed plot must not lose the figures
        files["plot_error"] = f"{type(e).__name__}: {e}"
    details = {k: v for k, v in res.details.items() if k != "cost_curves"}
    if "cost_curves" in res.details:
        details["cost_curves"] = {k: v.to_dict("list") for k, v in
                                  res.details["cost_curves"].items()}
    table = res.table.drop(columns=[c for c in timing_cols if c in res.table], errors="ignore")
    md = _markdown(protocol, records, specs, tidy, table, seed, enc_name)
    result = BenchResults({
        "format": "llmrec.bench", "format_version": 1,
        "settings": {"protocol": protocol, "routers": [list(s) for s in specs],
                     "encoder": enc_name, "seed": seed, "sizes": sizes, "n_boot": n_boot,
                     "n_repeats": n_repeats, **{k: repr(v) if not isinstance(
                         v, (int, float, str, list, tuple, type(None))) else v
                         for k, v in protocol_kwargs.items()}},
        "versions": _versions(),
        "data": {"name": records.name, "n_prompts": records.n_prompts,
                 "n_llms": records.n_llms, "density": records.density},
        "results": tidy, "table": _table_records(table), "details": details,
        "timings": {"per_router": timings, "total_seconds": time.perf_counter() - t0},
    })
    (out / "results.md").write_text(md + "\n")
    files["results.md"] = "results.md"
    files["results.json"] = "results.json"
    result["files"] = files
    clean = _clean(dict(result))
    (out / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    final = BenchResults(clean)
    final["markdown"] = md
    return final


def _table_records(table: pd.DataFrame) -> list[dict]:
    t = table.copy()
    if isinstance(t.columns, pd.MultiIndex):
        t.columns = ["_".join(str(x) for x in c) for c in t.columns]
    return t.reset_index().to_dict("records")


def _plots(protocol: str, res, out: Path) -> dict[str, str]:
    from . import plots
    files = {}
    if protocol == "scaling":
        plots.plot_scaling(res.tidy, out / "scaling_mu.png", "mu")
        plots.plot_scaling(res.tidy, out / "scaling_vb.png", "vb")
        files.update(scaling_mu="scaling_mu.png", scaling_vb="scaling_vb.png")
    if res.details.get("selection_share"):
        plots.plot_selection_share(res.details["selection_share"], res.details["llms"],
                                   out / "selection_share.png")
        files["selection_share"] = "selection_share.png"
    if res.details.get("cost_curves"):
        plots.plot_quality_cost(res.details["cost_curves"], out / "quality_cost.png")
        files["quality_cost"] = "quality_cost.png"
    return files


def _markdown(protocol, records, specs, tidy, table, seed, enc_name) -> str:
    head = [f"# llmrec bench: {protocol}", "",
            f"Data: {records.name or 'records'} ({records.n_prompts} prompts x "
            f"{records.n_llms} LLMs, {records.density:.1%} observed); encoder {enc_name}; "
            f"seed {seed}; llmrec {__version__}.", ""]
    if protocol in ("routereval", "routereval-exact"):
        mode = "routereval-exact" if protocol == "routereval-exact" else "llmrec"
        head += [f"Protocol mode: {mode}.", "",
                 "## RouterEval table (mean over candidate groups)", "",
                 markdown_table(table), "", "## Every pool", "",
                 markdown_table(tidy, index=False)]
    elif protocol == "scaling":
        head += ["## Quality vs pool size (mean, std over random pools)", "",
                 markdown_table(table)]
    else:
        head += ["## Results", "", markdown_table(tidy, index=False)]
    if "error" in tidy:
        errs = tidy.dropna(subset=["error"])
        if len(errs):
            head += ["", "## Failed routers", ""] + [f"- {r.router}: {r.error}"
                                                     for r in errs.itertuples()]
    return "\n".join(head)


# ------------------------------------------------------------ seeds + result cache
#: columns that identify a row of a protocol's tidy table (besides the seed)
_ID_COLUMNS = ("router", "m", "group", "repeat")
#: the figures shown as mean ± std over seeds
_SUMMARY_METRICS = ("mu", "vb", "hit@3")


def records_fingerprint(records: PerformanceRecords) -> str:
    """A short hash of the records' ids, texts, scores and observed mask.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> records_fingerprint(make_synthetic(20, 3, seed=0)) == \\
    ...     records_fingerprint(make_synthetic(20, 3, seed=0))
    True
    """
    import hashlib
    h = hashlib.sha256()
    s = records.scores.tocsr()
    for a in (s.indptr, s.indices, s.data):
        h.update(np.ascontiguousarray(a).tobytes())
    obs = records.observed.tocsr() if hasattr(records.observed, "tocsr") else records.observed
    if hasattr(obs, "indices"):
        h.update(np.ascontiguousarray(obs.indices).tobytes())
    for values in (records.prompt_ids, records.llm_names, records.texts):
        h.update("\x1f".join(map(str, values)).encode("utf-8"))
    return h.hexdigest()[:16]


def _unit_key(fields: dict) -> str:
    import hashlib
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()
                          ).hexdigest()[:20]


def _run_unit(records, spec, protocol, encoder, seed, unit_dir, kwargs):
    res = run_bench(records, [spec], protocol=protocol, encoder=encoder, out_dir=unit_dir,
                    seed=seed, show_progress=False, plots=False, **kwargs)
    return res["results"]


def run_bench_seeds(data="synthetic", routers=None, protocol: str = "routereval",
                    encoder="tfidf", out_dir="bench_out", seeds=(42,), cache_dir=None,
                    use_cache: bool = True, jobs: int = 1, show_progress: bool | None = None,
                    sizes=None, n_boot: int = 200, n_repeats: int = 3,
                    **protocol_kwargs) -> BenchResults:
    """:func:`run_bench` over several seeds, one router at a time, with a result cache.

    Each (dataset, protocol, seed, router, parameters, settings) unit is run by
    :func:`run_bench` into ``cache_dir/<key>/`` (its own ``results.json``, ``.md`` and
    plots); a unit already there is read back, not recomputed, so a rerun after a
    crash, or after adding a router, computes only what is missing. The summary gives
    every figure as the mean and the standard deviation over the seeds (each seed's
    pools, groups and repeats averaged first) and is written to ``out_dir/results.json``
    and ``results.md``.

    Parameters
    ----------
    data, routers, protocol, encoder, sizes, n_boot, n_repeats, **protocol_kwargs
        As for :func:`run_bench`.
    seeds : sequence of int
        One full run per seed (splits, pools and router seeds all derive from it).
    cache_dir : path, optional
        Default ``out_dir/cache``.
    use_cache : bool
        ``False`` recomputes (and rewrites) every unit.
    jobs : int
        Units run in this many processes.

    Returns
    -------
    BenchResults
        ``settings``, ``data``, ``results`` (every unit's tidy rows with a ``seed``
        column), ``summary`` (mean/std per router (and pool size)), ``units``
        (key, seed, router, cached) and ``markdown``.

    Examples
    --------
    >>> import tempfile
    >>> from llmrec.datasets import make_synthetic
    >>> d = tempfile.mkdtemp()
    >>> res = run_bench_seeds(make_synthetic(150, 5, seed=0), ["best-single"],
    ...                       protocol="cold-prompt", out_dir=d, seeds=[1, 2], n_boot=0)
    >>> [u["cached"] for u in res["units"]]
    [False, False]
    >>> res = run_bench_seeds(make_synthetic(150, 5, seed=0), ["best-single"],
    ...                       protocol="cold-prompt", out_dir=d, seeds=[1, 2], n_boot=0)
    >>> [u["cached"] for u in res["units"]]
    [True, True]
    """
    from .._progress import progress
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("seeds: give at least one seed")
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}")
    t0 = time.perf_counter()
    records = _load(data)
    specs = P.router_specs(_parse_routers(routers))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache_dir) if cache_dir is not None else out / "cache"
    enc_id = encoder if isinstance(encoder, str) else getattr(encoder, "fingerprint",
                                                              repr(encoder))
    if isinstance(sizes, str):
        sizes = [int(s) for s in sizes.split(",") if s.strip()]
    kwargs = dict(sizes=sizes, n_boot=n_boot, n_repeats=n_repeats, **protocol_kwargs)
    base = {"format": 1, "data": records_fingerprint(records), "protocol": protocol,
            "encoder": enc_id, "sizes": sizes, "n_boot": n_boot,
            "n_repeats": n_repeats if protocol == "scaling" else None,
            "protocol_kwargs": {k: repr(v) for k, v in sorted(protocol_kwargs.items())}}
    units, todo = [], []
    for seed in seeds:
        for spec in specs:
            key = _unit_key({**base, "seed": seed, "router": list(spec)})
            d = cache / key
            done = d / "unit.json"
            cached = use_cache and done.is_file() and (d / "results.json").is_file()
            units.append({"key": key, "seed": seed, "router": spec[0], "cached": cached})
            if not cached:
                todo.append((len(units) - 1, spec, seed, d))
    rows: dict[int, list] = {}
    bar = progress(total=len(todo), desc=f"bench {protocol}", show=show_progress,
                   unit="runs")
    try:
        if int(jobs) > 1 and len(todo) > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor
            with ProcessPoolExecutor(max_workers=int(jobs),
                                     mp_context=mp.get_context("spawn")) as ex:
                futs = {ex.submit(_run_unit, records, spec, protocol, encoder, seed, d, kwargs):
                        (i, d) for i, spec, seed, d in todo}
                from concurrent.futures import as_completed
                for f in as_completed(futs):
                    i, d = futs[f]
                    rows[i] = f.result()
                    _mark_done(d, units[i], base)
                    bar.update()
        else:
            for i, spec, seed, d in todo:
                rows[i] = _run_unit(records, spec, protocol, encoder, seed, d, kwargs)
                _mark_done(d, units[i], base)
                bar.update()
    finally:
        bar.close()
    all_rows = []
    for i, u in enumerate(units):
        got = rows.get(i)
        if got is None:
            got = json.loads((cache / u["key"] / "results.json").read_text())["results"]
        for r in got:
            all_rows.append({"seed": u["seed"], **r})
    tidy = pd.DataFrame(all_rows)
    ident = [c for c in _ID_COLUMNS if c in tidy.columns]
    tidy = tidy.drop_duplicates(subset=["seed"] + ident).reset_index(drop=True)
    summary = summarize_seeds(tidy)
    files = {"results.md": "results.md", "results.json": "results.json"}
    if protocol == "scaling":
        try:
            from . import plots
            plots.plot_scaling(tidy, out / "scaling_mu.png", "mu")
            plots.plot_scaling(tidy, out / "scaling_vb.png", "vb")
            files.update(scaling_mu="scaling_mu.png", scaling_vb="scaling_vb.png")
        except Exception as e:  # noqa: BLE001 - a failed plot must not lose the figures
            files["plot_error"] = f"{type(e).__name__}: {e}"
    md = _seeds_markdown(protocol, records, summary, seeds, enc_id, units, cache)
    result = BenchResults({
        "format": "llmrec.bench-seeds", "format_version": 1,
        "settings": {"protocol": protocol, "routers": [list(s) for s in specs],
                     "encoder": enc_id, "seeds": seeds, "sizes": sizes, "n_boot": n_boot,
                     "n_repeats": n_repeats, "cache_dir": str(cache),
                     **{k: repr(v) for k, v in protocol_kwargs.items()}},
        "versions": _versions(),
        "data": {"name": records.name, "n_prompts": records.n_prompts,
                 "n_llms": records.n_llms, "density": records.density,
                 "fingerprint": base["data"]},
        "results": tidy, "summary": summary, "units": units,
        "timings": {"total_seconds": time.perf_counter() - t0,
                    "computed_units": len(todo), "cached_units": len(units) - len(todo)},
        "files": files,
    })
    (out / "results.md").write_text(md + "\n")
    clean = _clean(dict(result))
    (out / "results.json").write_text(json.dumps(clean, indent=2) + "\n")
    final = BenchResults(clean)
    final["markdown"] = md
    return final


def _mark_done(d: Path, unit: dict, base: dict) -> None:
    """Written last: a unit directory without it (a crash mid-run) is recomputed."""
    tmp = d / "unit.json.tmp"
    tmp.write_text(json.dumps({**base, **{k: v for k, v in unit.items() if k != "cached"}},
                              default=str) + "\n")
    os.replace(tmp, d / "unit.json")


def summarize_seeds(tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds of every numeric figure, per router (and pool size ``m``).

    Within a seed, pools, groups and repeats are averaged first, so the std measures
    the spread between seeds (splits, pools, router seeds), not between pools.
    """
    by = ["router"] + (["m"] if "m" in tidy.columns else [])
    skip = set(_ID_COLUMNS) | {"seed"}
    metrics = [c for c in tidy.columns if c not in skip
               and pd.api.types.is_numeric_dtype(tidy[c]) and not tidy[c].isna().all()]
    per_seed = tidy.groupby(by + ["seed"], sort=False)[metrics].mean().reset_index()
    g = per_seed.groupby(by, sort=False)[metrics]
    mean, std = g.mean(), g.std(ddof=1)
    out = mean.add_suffix("_mean").join(std.add_suffix("_std"))
    out["n_seeds"] = per_seed.groupby(by, sort=False)["seed"].nunique()
    out = out.reset_index()
    order = {r: i for i, r in enumerate(pd.unique(tidy["router"]))}
    keys = [out["router"].map(order)] + ([out["m"]] if "m" in out.columns else [])
    idx = np.lexsort([k.to_numpy() for k in reversed(keys)])
    return out.iloc[idx].reset_index(drop=True)


def _seeds_markdown(protocol, records, summary, seeds, enc_id, units, cache) -> str:
    n_cached = sum(u["cached"] for u in units)
    head = [f"# llmrec bench: {protocol}, {len(seeds)} seed(s)", "",
            f"Data: {records.name or 'records'} ({records.n_prompts} prompts x "
            f"{records.n_llms} LLMs, {records.density:.1%} observed); encoder {enc_id}; "
            f"seeds {', '.join(map(str, seeds))}; llmrec {__version__}. "
            f"{len(units)} runs ({n_cached} read from the cache {cache}).", "",
            "Mean ± std over seeds (each seed's pools and repeats averaged first).", ""]
    by = ["router"] + (["m"] if "m" in summary.columns else [])
    shown = [m for m in _SUMMARY_METRICS if f"{m}_mean" in summary.columns]
    lines = ["| " + " | ".join(by + shown + ["seeds"]) + " |",
             "|" + "---|" * (len(by) + len(shown) + 1)]
    for row in summary.to_dict("records"):
        cells = [str(row[c]) for c in by]
        for m in shown:
            mu, sd = row[f"{m}_mean"], row[f"{m}_std"]
            cells.append("" if pd.isna(mu) else (f"{mu:.4f}" if pd.isna(sd) else
                                                  f"{mu:.4f} ± {sd:.4f}"))
        cells.append(str(row["n_seeds"]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(head + lines)


__all__ += ["run_bench_seeds", "summarize_seeds", "records_fingerprint"]
