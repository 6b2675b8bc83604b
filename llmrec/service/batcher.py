"""An async micro-batcher: concurrent requests share one ``router.recommend_ids`` call.

Requests that arrive within ``window_ms`` of the first waiting one (up to
``max_batch`` prompts) are grouped by (candidates, cost weight), concatenated, scored
in a worker thread by one call (one encoder call) and split back.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class _Item:
    prompts: list
    k: int
    candidates: tuple | None
    cost_weight: float
    future: asyncio.Future


@dataclass
class BatchStats:
    calls: int = 0            # router calls made
    requests: int = 0         # requests served
    prompts: int = 0          # prompts scored
    sizes: list = field(default_factory=list)   # requests per call (last 1000)


class MicroBatcher:
    """Collect concurrent recommend requests into batched router calls.

    Parameters
    ----------
    get_router : callable
        Returns the router to use *now* (read once per batch, so a reload swaps the
        router between batches and an in-flight batch finishes on the old one).
    window_ms : float
        How long the first request of a batch waits for others.
    max_batch : int
        Most prompts in one router call.
    """

    def __init__(self, get_router: Callable, window_ms: float = 5.0, max_batch: int = 1024):
        self.get_router = get_router
        self.window_ms = window_ms
        self.max_batch = max_batch
        self.stats = BatchStats()
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    async def start(self):
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run())

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def submit(self, prompts: list, k: int, candidates=None, cost_weight: float = 0.0):
        """Top-k (names positions, scores) for ``prompts``; awaits the batched call."""
        if self._queue is None:
            await self.start()
        elif self._task is None or self._task.done():  # restart a worker that died
            self._task = asyncio.create_task(self._run())
        fut = asyncio.get_running_loop().create_future()
        cand = tuple(candidates) if candidates else None
        await self._queue.put(_Item(list(prompts), int(k), cand, float(cost_weight), fut))
        return await fut

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            batch = [first]
            n = len(first.prompts)
            if self.window_ms > 0 and n < self.max_batch:
                # one timer per batch (not a wait_for task per request), then take
                # whatever arrived; under load the previous batch's compute time
                # collects the next batch anyway
                await asyncio.sleep(self.window_ms / 1000.0)
            while n < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                batch.append(item)
                n += len(item.prompts)
            router = self.get_router()
            groups: dict = {}
            for it in batch:
                groups.setdefault((it.candidates, it.cost_weight), []).append(it)
            for (cand, cw), items in groups.items():
                await self._serve(loop, router, cand, cw, items)

    async def _serve(self, loop, router, cand, cw, items):
        prompts = [p for it in items for p in it.prompts]
        k = max(it.k for it in items)
        try:
            ids, scores = await loop.run_in_executor(
                None, lambda: router.recommend_ids(prompts, k=k, candidates=cand,
                                                   cost_weight=cw, show_progress=False))
        except Exception as e:  # hand the error to every waiting request
            for it in items:
                if not it.future.done():
                    it.future.set_exception(e)
            return
        self.stats.calls += 1
        self.stats.requests += len(items)
        self.stats.prompts += len(prompts)
        self.stats.sizes = (self.stats.sizes + [len(items)])[-1000:]
        start = 0
        for it in items:
            end = start + len(it.prompts)
            if not it.future.done():
                it.future.set_result((router, np.asarray(ids[start:end, :it.k]),
                                      np.asarray(scores[start:end, :it.k])))
            start = end
