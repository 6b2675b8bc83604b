"""Predict what a fit will cost before running it: time and peak memory.

:func:`estimate_fit_cost` fits the router on random samples of the records
(a share of the prompts, every LLM), doubling
the sample until a fit takes ``min_seconds`` of CPU time, and extrapolates the last
two samples linearly in the number of observed records: every router here costs
``a + b * records`` in time and memory for fixed settings (iterations, epochs,
factors; see each router's "Cost" notes and docs/scaling.md). A router with a
``max_updates`` budget (bpr, mlp, mlc: fewer epochs on more records) gets the
budget scaled to the sample, so the sample fit runs the epochs of the whole fit. Memory is the growth
of the process's resident set during the sample fit, polled every few
milliseconds, on top of what the process holds already (the loaded records).

This is what ``llmrec fit --dry-run`` prints.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..data.records import PerformanceRecords
from ..errors import ConfigError, LLMRecError


def rss_bytes() -> int:
    """Resident set size of this process (bytes; 0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # pragma: no cover - non-Linux
        return 0


class _PeakRSS:
    """Context manager polling RSS in a thread; ``peak`` is the largest growth seen."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0

    def __enter__(self):
        self.base = rss_bytes()
        self._stop = threading.Event()

        def poll():
            while not self._stop.is_set():
                self.peak = max(self.peak, rss_bytes() - self.base)
                self._stop.wait(self.interval)

        self._t = threading.Thread(target=poll, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_bytes() - self.base)
        return False


@dataclass
class FitCostEstimate:
    """Predicted cost of fitting a router on some records.

    Attributes
    ----------
    seconds : float
        Predicted CPU seconds of the fit (wall time is about this on an idle
        machine with one busy core; more when the machine is shared).
    fit_bytes : int
        Predicted growth of resident memory during the fit.
    base_bytes : int
        Resident memory before the fit (records already loaded).
    samples : list of dict
        The sample fits measured: prompts, LLMs, records, CPU seconds, bytes.
    exact : bool
        True when the last sample was the whole data (the figures are measured).
    """

    router: str
    n_prompts: int
    n_llms: int
    n_observed: int
    seconds: float
    fit_bytes: int
    base_bytes: int
    samples: list = field(default_factory=list)
    exact: bool = False

    @property
    def peak_bytes(self) -> int:
        """Predicted peak resident memory of the process (records + fit)."""
        return self.base_bytes + self.fit_bytes

    def summary(self) -> str:
        """Human-readable lines (what ``llmrec fit --dry-run`` prints)."""
        s = self.samples
        how = ("measured on the whole data" if self.exact else
               "extrapolated linearly from sample fits of "
               + " and ".join(f"{x['n_prompts']:,} x {x['n_llms']:,}" for x in s[-2:]))
        lines = [f"dry run: {self.router} on {self.n_prompts:,} prompts x {self.n_llms:,} "
                 f"LLMs ({self.n_observed:,} records)",
                 f"estimated fit time: {_fmt_seconds(self.seconds)} of CPU ({how})",
                 f"estimated peak memory: {_fmt_bytes(self.peak_bytes)} "
                 f"({_fmt_bytes(self.base_bytes)} held before the fit + "
                 f"{_fmt_bytes(self.fit_bytes)} during it)"]
        avail = _available_bytes()
        if avail and self.fit_bytes > avail:
            lines.append(f"warning: the fit needs about {_fmt_bytes(self.fit_bytes)} more "
                         f"memory, this machine has {_fmt_bytes(avail)} available")
        return "\n".join(lines)


def _fmt_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _fmt_bytes(b: float) -> str:
    for unit, k in (("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if b >= k:
            return f"{b / k:.2f} {unit}"
    return f"{b / 1024:.0f} KiB"


def _available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 0


def _sample(records: PerformanceRecords, frac: float, rng) -> PerformanceRecords:
    """A random ``frac`` share of the prompts (at least 50), all LLMs, in order.

    Only prompts are sampled: every cost term of a fit (per record, per prompt, per
    LLM, fixed) is then linear in the sample size, so a line through two samples
    extrapolates exactly up to noise."""
    n_p = max(50, int(round(records.n_prompts * frac)))
    if n_p >= records.n_prompts:
        return records
    return records.select_prompts(np.sort(rng.choice(records.n_prompts, size=n_p,
                                                     replace=False)))


def _malloc_returns_memory() -> None:
    """Make glibc hand large blocks straight back to the OS (a fixed mmap threshold,
    then a trim), so that the resident set measures what a fit holds, not what an
    earlier fit freed. No-op where glibc is absent."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD = 1 MiB (disables the dynamic rise)
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


def estimate_fit_cost(router, records: PerformanceRecords, encoder=None,
                      side_features=(), min_seconds: float = 1.0,
                      min_fraction: float = 0.05, max_fraction: float = 0.25,
                      max_sample_seconds: float = 60.0, start_records: int = 20_000,
                      random_state: int = 0) -> FitCostEstimate:
    """Predict CPU time and peak memory of ``router.fit(records, ...)`` from sample fits.

    Parameters
    ----------
    router : Router
        An unfitted router (it is cloned for every sample fit; it is not fitted).
    records : PerformanceRecords
    encoder, side_features
        As for :meth:`Router.fit`.
    min_seconds : float
        The sample doubles until one fit takes at least this much CPU time (or
        reaches ``max_fraction`` of the records), so that fixed overheads do not
        dominate the extrapolation.
    min_fraction : float
        Smallest share of the prompts the last sample must reach (memory growth of
        tiny samples is lost in the noise), unless a sample fit takes
        ``max_sample_seconds`` first.
    max_fraction : float
        Largest sample, as a share of the prompts. When the data is small enough
        that a sample reaches all of it, the figures are measured, not predicted.
    start_records : int
        Records in the first sample.

    Returns
    -------
    FitCostEstimate

    Examples
    --------
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> rec = make_synthetic(400, 10, seed=0)
    >>> est = estimate_fit_cost(make_router("best-single"), rec, min_seconds=0.01)
    >>> est.seconds >= 0 and est.peak_bytes > 0
    True
    """
    if not isinstance(records, PerformanceRecords):
        raise ConfigError("estimate_fit_cost needs PerformanceRecords")
    if records.n_observed == 0:
        raise ConfigError("cannot estimate a fit on empty records")
    from .base import make_router
    rng = np.random.default_rng(random_state)
    total = records.n_observed
    # small data (the first sample would pass max_fraction): measure the whole fit
    frac = start_records / total if start_records < max_fraction * total else 1.0
    samples: list[dict] = []

    def fit_once(sub):
        params = router.get_params()
        if params.get("max_updates") is not None:
            # a budget of SGD updates / record visits (bpr, mlp, mlc) shrinks with the
            # sample, so that the sample runs the epochs the whole fit will run
            params["max_updates"] = max(1, int(params["max_updates"] * sub.n_observed
                                               / total))
        clone = make_router(router.name, **params)
        c0 = time.process_time()
        with _PeakRSS() as mem:
            try:
                clone.fit(sub, encoder=encoder, side_features=side_features,
                          show_progress=False)
            except LLMRecError as e:
                raise type(e)(f"dry run: the sample fit ({sub.n_prompts} x {sub.n_llms}) "
                              f"failed: {e}") from None
        return time.process_time() - c0, int(mem.peak)

    _malloc_returns_memory()
    if frac < 1.0:  # warm-up: lazy imports and first-call costs stay out of the samples
        fit_once(_sample(records, min(frac, 1000 / total), rng))
    base = rss_bytes()
    while True:
        sub = _sample(records, frac, rng)
        _malloc_returns_memory()
        cpu, peak = fit_once(sub)
        samples.append({"n_prompts": sub.n_prompts, "n_llms": sub.n_llms,
                        "records": sub.n_observed, "cpu_s": cpu, "bytes": peak})
        if sub is records:
            return FitCostEstimate(router.name, records.n_prompts, records.n_llms, total,
                                   cpu, peak, base, samples, exact=True)
        enough = len(samples) >= 2 and cpu >= min_seconds and frac >= min_fraction
        if enough or frac >= max_fraction or cpu >= max_sample_seconds:
            break
        frac = min(frac * 2, max(max_fraction, frac))
    if len(samples) == 1:  # one sample fit already took max_sample_seconds: scale it
        samples.insert(0, {"n_prompts": 0, "n_llms": records.n_llms, "records": 0,
                           "cpu_s": 0.0, "bytes": 0})
    a, b = samples[-2], samples[-1]
    secs = _extrapolate(a["records"], a["cpu_s"], b["records"], b["cpu_s"], total)
    mem = _extrapolate(a["records"], a["bytes"], b["records"], b["bytes"], total)
    return FitCostEstimate(router.name, records.n_prompts, records.n_llms, total, secs,
                           int(mem), base, samples)


def budgeted_passes(cap: int, max_updates: int | None, per_pass: int,
                    floor: int = 1) -> int:
    """Passes (epochs, iterations) a fit with an update budget runs: ``cap``, bounded
    by ``max_updates`` units of work at ``per_pass`` units a pass, never below
    ``floor`` (nor above ``cap``). ``max_updates=None``: ``cap``. The budgets of
    bpr (SGD updates), mlp (record visits) and mlc's joint solver (record
    evaluations); :func:`estimate_fit_cost` scales them to its samples.

    Examples
    --------
    >>> budgeted_passes(100, 10**9, 4 * 10**7), budgeted_passes(100, None, 10**9)
    (25, 100)
    >>> budgeted_passes(1000, 10**9, 10**9, floor=20)
    20
    """
    if max_updates is None:
        return int(cap)
    if int(max_updates) < 1:
        raise ConfigError(f"max_updates must be >= 1 or None, got {max_updates}")
    return min(int(cap), max(int(floor), int(max_updates) // max(1, int(per_pass))))


def _extrapolate(x1: float, y1: float, x2: float, y2: float, x: float) -> float:
    """Line through the two samples, evaluated at x; never below proportional-to-the-
    larger-sample growth's half or the larger sample itself."""
    slope = (y2 - y1) / (x2 - x1) if x2 != x1 else 0.0
    slope = max(slope, 0.0)
    lin = y2 + slope * (x - x2)
    # noisy tiny samples can give a flat or negative slope: fall back to proportional
    prop = y2 * x / x2
    return float(max(lin, 0.5 * prop, y2))
