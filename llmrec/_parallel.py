"""Blocks of rows on every core, BLAS at one thread each.

The dense solvers (``llmrec.routers.als_dense``, mlc's joint logistic objective)
split their rows into blocks whose work is a few small matrix products and
element-wise passes: one BLAS thread per block and the blocks on threads (numpy and
BLAS release the GIL) use the cores better than multi-threaded BLAS on small
products. Results come back in block order, so a reduction over them does not depend
on the thread count.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["cpu_threads", "map_blocks"]


def cpu_threads() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def map_blocks(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None
               ) -> list[R]:
    """``[fn(x) for x in items]`` on ``threads`` threads (None or 0: every CPU this
    process may use), BLAS limited to one thread, results in item order.

    Examples
    --------
    >>> map_blocks(lambda x: x * x, range(4), threads=2)
    [0, 1, 4, 9]
    """
    from threadpoolctl import threadpool_limits
    items = list(items)
    n = int(threads) if threads else cpu_threads()
    with threadpool_limits(1, "blas"):
        if n <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(n, len(items))) as ex:
            return list(ex.map(fn, items))
