"""Per-router constants of the request path, computed once per loaded router.

Reading LLM names and prices from the router's pandas LLM table costs about a
millisecond per request (a pandas lookup per cell); the service reads them here
instead, from a cache keyed by the router object (a reload brings a new router and
so a new entry; ``add_llm`` replaces the table, which is noticed).
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import numpy as np

_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


@dataclass(frozen=True)
class RouterInfo:
    """LLM names in column order, name -> column, and per-LLM price fields."""

    table: object
    names: list
    index: dict
    prices: list


def price_fields(router) -> list[dict]:
    """Per-LLM known prices from the model's LLM table (None where unknown)."""
    t = router.llms_
    costs = router.llm_costs_
    out = []
    for i in range(len(t)):
        d = {}
        for col in ("price_input", "price_output"):
            if col in t.columns:
                v = t[col].iloc[i]
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    v = float("nan")
                d[col] = None if math.isnan(v) else v
        if costs is not None and np.isfinite(costs[i]):
            d["cost"] = float(costs[i])
        out.append(d)
    return out


def router_info(router) -> RouterInfo:
    """The cached :class:`RouterInfo` of a fitted router.

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> r = make_router("best-single").fit(make_synthetic(30, 3, seed=0))
    >>> info = router_info(r)
    >>> info.names == r.llm_names_, router_info(r) is info
    (True, True)
    """
    info = _CACHE.get(router)
    if info is not None and info.table is router.llms_:
        return info
    names = list(router.llms_["name"])
    info = RouterInfo(router.llms_, names, {n: i for i, n in enumerate(names)},
                      price_fields(router))
    with _LOCK:
        _CACHE[router] = info
    return info
