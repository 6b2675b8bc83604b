"""``llmrec bench``: run one protocol on one dataset, write results.json / .md / PNGs."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

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
              n_boot: int = 200, n_repeats: int = 3, **protocol_kwargs) -> BenchResults:
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
