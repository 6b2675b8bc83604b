"""PNG plots of evaluation results (matplotlib, Agg canvas; no global backend change).

Each function takes the plain outputs of :mod:`.protocols` (DataFrames, dicts) and a
path, writes one PNG and returns the path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..errors import DataFormatError

__all__ = ["plot_scaling", "plot_quality_cost", "plot_selection_share"]


def _figure(size=(6.4, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png", bbox_inches="tight")
    return path


def _legend(ax):
    n = len(ax.get_legend_handles_labels()[1])
    if n > 8:  # many routers: a legend beside the axes, not over the curves
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    else:
        ax.legend(fontsize=8)


def _style(i: int, label: str) -> dict:
    """Distinct colours for many routers (tab20), dashed black/gray for the bounds."""
    if label == "oracle":
        return {"color": "black", "ls": "--"}
    if label == "random":
        return {"color": "gray", "ls": "--"}
    import matplotlib
    cmap = matplotlib.colormaps["tab20"]
    # strong shades first, then light ones; tab20's grays (14, 15) are left to the bounds
    order = [j for j in range(0, 20, 2) if j != 14] + [j for j in range(1, 20, 2) if j != 15]
    return {"color": cmap(order[i % len(order)]),
            "ls": ("-", "-.", ":")[(i // len(order)) % 3]}


def plot_scaling(tidy: pd.DataFrame, path, metric: str = "mu", title: str | None = None) -> Path:
    """Quality (``metric``: ``mu`` or ``vb``) vs number of candidate LLMs, mean +- std.

    ``tidy`` is :func:`~llmrec.evaluation.protocols.scaling_curve`'s ``tidy`` (columns
    router, m, metric). Oracle and random are drawn dashed, as bounds.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> df = pd.DataFrame({"router": ["oracle", "oracle"], "m": [2, 4], "mu": [0.6, 0.8]})
    >>> p = plot_scaling(df, os.path.join(tempfile.mkdtemp(), "s.png"))
    >>> p.stat().st_size > 0
    True
    """
    for c in ("router", "m", metric):
        if c not in tidy:
            raise DataFormatError(f"plot_scaling: column {c!r} missing; pass "
                                  "scaling_curve(...).tidy")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    groups = tidy.dropna(subset=[metric]).groupby("router", sort=False)
    for i, (router, g) in enumerate(groups):
        s = g.groupby("m")[metric].agg(["mean", "std"]).fillna({"std": 0.0})
        (line,) = ax.plot(s.index, s["mean"], marker="o", ms=3, label=router,
                          **_style(i, router))
        ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], alpha=0.15,
                        color=line.get_color())
    ax.set_xlabel("number of candidate LLMs (m)")
    ax.set_ylabel({"mu": "mu (mean true score of routed LLM)", "vb": "Vb"}.get(metric, metric))
    if tidy["m"].max() / max(tidy["m"].min(), 1) > 20:
        ax.set_xscale("log")
    ax.set_title(title or f"Routing quality vs pool size ({metric})")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def plot_quality_cost(curves: Mapping[str, pd.DataFrame], path, title: str | None = None,
                      llm_points: pd.DataFrame | None = None) -> Path:
    """Quality-cost curves (one per router) from ``quality_cost_curve``.

    ``llm_points`` (columns llm, cost, quality), when given, marks each single LLM.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> c = {"knn": pd.DataFrame({"cost": [1.0, 2.0], "quality": [0.5, 0.7]})}
    >>> plot_quality_cost(c, os.path.join(tempfile.mkdtemp(), "c.png")).suffix
    '.png'
    """
    if not curves:
        raise DataFormatError("plot_quality_cost: no curves (LLM costs unknown?)")
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, df) in enumerate(curves.items()):
        d = pd.DataFrame(df).sort_values("cost")
        ax.plot(d["cost"], d["quality"], marker=".", label=label, **_style(i, label))
    if llm_points is not None and len(llm_points):
        ax.scatter(llm_points["cost"], llm_points["quality"], marker="x", color="gray",
                   label="single LLMs", zorder=3)
    ax.set_xlabel("mean cost per prompt")
    ax.set_ylabel("mean true score")
    ax.set_title(title or "Quality vs cost (cost weight swept)")
    ax.grid(alpha=0.3)
    _legend(ax)
    return _save(fig, path)


def plot_selection_share(shares: Mapping[str, Sequence[float]], llms: Sequence[str], path,
                         title: str | None = None, max_llms: int = 40) -> Path:
    """Heat map of the share of prompts each router sends to each LLM.

    With more than ``max_llms`` LLMs only the most chosen ones (over all routers) are
    shown.

    Examples
    --------
    >>> import tempfile, os
    >>> p = plot_selection_share({"a": [0.5, 0.5]}, ["x", "y"],
    ...                          os.path.join(tempfile.mkdtemp(), "h.png"))
    >>> p.name
    'h.png'
    """
    if not shares:
        raise DataFormatError("plot_selection_share: no routers")
    labels = list(shares)
    A = np.asarray([shares[k] for k in labels], dtype=float)
    names = np.asarray(list(llms), dtype=object)
    if A.shape[1] != len(names):
        raise DataFormatError(f"selection shares have {A.shape[1]} LLMs, names {len(names)}")
    if A.shape[1] > max_llms:
        keep = np.sort(np.argsort(-A.max(axis=0), kind="stable")[:max_llms])
        A, names = A[:, keep], names[keep]
    fig = _figure((max(5.0, 0.3 * A.shape[1] + 2.5), max(2.5, 0.35 * len(labels) + 1.5)))
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(A, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(A.max(), 1e-9))
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    fig.colorbar(im, ax=ax, label="share of prompts")
    ax.set_title(title or "Which LLM each router picks")
    return _save(fig, path)
