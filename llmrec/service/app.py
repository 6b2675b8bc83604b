"""The HTTP recommendation service: a FastAPI app around one saved router.

Endpoints (``/docs`` and ``/openapi.json`` describe them):

* ``POST /v1/recommend`` -- ``{"prompts": [...], "k": 3, "candidates": [...]?,
  "cost_weight": 0.0?}`` -> per prompt the ranked LLMs, predicted scores and prices.
  Concurrent requests are micro-batched into one router call.
* ``GET /v1/llms`` -- the model's LLM table; ``GET /health``; ``GET /metrics``
  (Prometheus text format).
* ``POST /v1/feedback`` -- ``{"feedback": [{"prompt", "llm", "score", "record_id"?},
  ...]}`` appended (fsynced, group commit, retried record ids written once) to a JSONL
  log that ``llmrec fit --data <log> --warm-start <model>`` reads; scores are checked
  against the model's score kind and range.
* ``POST /v1/admin/reload`` -- ``{"model_dir": ...?}`` (a folder under the models
  root): load a model fully, answer a probe request with it, then swap it in
  atomically; in-flight requests finish on the old one. SIGHUP does the same for the
  current directory when the server runs in the main thread.

An API key is required on ``/v1/*`` when ``api_key`` (or env ``LLMREC_API_KEY``) is
set: header ``X-API-Key``, else 401. Admin endpoints need their own key
(``admin_key`` or env ``LLMREC_ADMIN_KEY``, header ``X-Admin-Key``) and are disabled
(403) when none is set. Every input is validated before it joins a batch; errors are
4xx naming the field, bodies over ``max_body_bytes`` get 413.
"""

from __future__ import annotations

import asyncio
import math
import os
import secrets
import signal
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Optional

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ConfigError, LLMRecError, ModelFormatError
from ..routers import load_router
from .batcher import MicroBatcher
from .feedback import FeedbackLog
from .validation import (BodyLimit, SafeJSONResponse, check_text, check_texts, score_bounds,
                         score_problem, validation_detail)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class RecommendRequest(BaseModel):
    prompts: list[str] = Field(..., min_length=1, description="prompt texts")
    k: int = Field(3, ge=1, strict=True, description="LLMs per prompt")
    candidates: Optional[list[str]] = Field(None, description="restrict to these LLMs")
    cost_weight: float = Field(0.0, ge=0.0, le=1e9, allow_inf_nan=False, strict=True,
                               description="rank by score - w x LLM cost")

    @field_validator("prompts")
    @classmethod
    def _texts(cls, v):
        check_texts(v, "prompts", allow_blank=True)  # blanks: 422 listing their indexes
        return v

    @field_validator("candidates")
    @classmethod
    def _names(cls, v):
        if v is not None:
            check_texts(v, "candidates")
        return v


class RankedLLM(BaseModel):
    name: str
    score: float
    price_input: Optional[float] = None
    price_output: Optional[float] = None
    cost: Optional[float] = None


class PromptResult(BaseModel):
    index: int
    truncated: bool = False
    llms: list[RankedLLM]


class RecommendResponse(BaseModel):
    model_version: int
    model_dir: str
    results: list[PromptResult]


class FeedbackItem(BaseModel):
    prompt: str = Field(..., min_length=1)
    llm: str = Field(..., min_length=1)
    score: float = Field(..., allow_inf_nan=False, strict=True)
    record_id: Optional[str] = Field(None, min_length=1, max_length=200,
                                     description="client id; a retry with it is written once")

    @field_validator("prompt", "llm", "record_id")
    @classmethod
    def _text(cls, v, info):
        return v if v is None else check_text(v, info.field_name)


class FeedbackRequest(BaseModel):
    feedback: list[FeedbackItem] = Field(..., min_length=1)


class ReloadRequest(BaseModel):
    model_dir: Optional[str] = Field(None, min_length=1, max_length=4096,
                                     description="a model folder under the models root")

    @field_validator("model_dir")
    @classmethod
    def _text(cls, v):
        if v is not None:
            check_text(v, "model_dir")
            if "\x00" in v:
                raise ValueError("model_dir holds a NUL character")
        return v


class _Metrics:
    """Request counts and latency histograms, written in Prometheus text format."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str, int], int] = {}
        self.hist: dict[str, list[int]] = {}
        self.sums: dict[str, float] = {}

    def observe(self, method: str, path: str, status: int, seconds: float):
        with self.lock:
            key = (method, path, status)
            self.counts[key] = self.counts.get(key, 0) + 1
            h = self.hist.setdefault(path, [0] * (len(_BUCKETS) + 1))
            for i, b in enumerate(_BUCKETS):
                if seconds <= b:
                    h[i] += 1
            h[-1] += 1
            self.sums[path] = self.sums.get(path, 0.0) + seconds

    def render(self, extra: dict[str, float]) -> str:
        out = ["# HELP llmrec_requests_total HTTP requests by method, path and status",
               "# TYPE llmrec_requests_total counter"]
        with self.lock:
            for (m, p, s), n in sorted(self.counts.items()):
                out.append(f'llmrec_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}')
            out += ["# HELP llmrec_request_seconds request latency",
                    "# TYPE llmrec_request_seconds histogram"]
            for p, h in sorted(self.hist.items()):
                for b, n in zip(_BUCKETS, h):
                    out.append(f'llmrec_request_seconds_bucket{{path="{p}",le="{b}"}} {n}')
                out.append(f'llmrec_request_seconds_bucket{{path="{p}",le="+Inf"}} {h[-1]}')
                out.append(f'llmrec_request_seconds_sum{{path="{p}"}} {self.sums[p]:.6f}')
                out.append(f'llmrec_request_seconds_count{{path="{p}"}} {h[-1]}')
        for name, v in extra.items():
            out += [f"# TYPE {name} gauge", f"{name} {v}"]
        return "\n".join(out) + "\n"


class _State:
    def __init__(self, router, model_dir: Path):
        self.router = router
        self.model_dir = model_dir
        self.version = 1
        self.loaded_at = time.time()


def _price_fields(router) -> list[dict]:
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


_PROBE = "llmrec reload probe: which model answers this prompt best?"


def load_and_probe(model_dir) -> "object":
    """Load a saved router and check it answers a probe request like a real one.

    A model that loads but cannot answer (an LLM table that does not match its arrays,
    an encoder that fails, non-finite scores) raises
    :class:`~llmrec.errors.ModelFormatError`, so it is never swapped in.

    Examples
    --------
    >>> import tempfile, os
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> d = os.path.join(tempfile.mkdtemp(), "m")
    >>> _ = make_router("best-single").fit(make_synthetic(50, 4, seed=0)).save(d)
    >>> load_and_probe(d).name
    'best-single'
    """
    router = load_router(model_dir)
    try:
        for cand, k in ((None, min(3, router.n_llms_)), (router.llm_names_[-1:], 1)):
            ids, scores = router.recommend_ids([_PROBE, "2 + 2 = ?"], k=k, candidates=cand,
                                               show_progress=False)
            ids, scores = np.asarray(ids), np.asarray(scores, dtype=np.float64)
            want = (2, k)
            if ids.shape != want or scores.shape != want:
                raise ValueError(f"answers of shape {ids.shape}, expected {want}")
            if ids.min() < 0 or ids.max() >= router.n_llms_:
                raise ValueError("answers name LLMs outside the model's LLM table")
            if not np.isfinite(scores).all():
                raise ValueError("answers hold non-finite scores")
        if router.llm_costs_ is not None and len(router.llm_costs_) != router.n_llms_:
            raise ValueError("LLM costs do not match the LLM table")
        _price_fields(router)
    except LLMRecError as e:
        raise ModelFormatError(f"{model_dir}: the model loads but fails a probe request ({e})") \
            from None
    except (ValueError, TypeError, IndexError, KeyError, RuntimeError, AttributeError) as e:
        raise ModelFormatError(f"{model_dir}: the model loads but fails a probe request "
                               f"({type(e).__name__}: {e})") from None
    return router


def create_app(model_dir, *, max_prompts: int = 256, max_prompt_chars: int = 8000,
               long_prompts: str = "truncate", max_k: int = 100, batch_window_ms: float = 5.0,
               max_batch: int = 1024, feedback_log=None, api_key: str | None = None,
               max_feedback: int = 1000, admin_key: str | None = None, models_root=None,
               max_body_bytes: int = 16 << 20) -> FastAPI:
    """Build the service app for the router saved in ``model_dir``.

    Parameters
    ----------
    model_dir : path
        A directory written by ``Router.save`` / ``llmrec fit``; loaded here.
    max_prompts : int
        Most prompts per request (more: 422).
    max_prompt_chars : int
        Longest prompt; longer ones are cut (``long_prompts="truncate"``, the result
        says ``truncated: true``) or refused with 422 (``"reject"``).
    max_k : int
        Largest ``k`` accepted.
    batch_window_ms, max_batch : float, int
        Micro-batching window and most prompts per router call.
    feedback_log : path, optional
        Where ``POST /v1/feedback`` appends; default ``<model_dir>/../feedback.jsonl``.
    api_key : str, optional
        Required ``X-API-Key`` on ``/v1/*``; default env ``LLMREC_API_KEY`` (unset or
        ``""``: open).
    admin_key : str, optional
        Required ``X-Admin-Key`` on ``/v1/admin/*`` (a key of its own: the clients'
        key does not open them); default env ``LLMREC_ADMIN_KEY``; unset or ``""``:
        admin endpoints answer 403 (SIGHUP still reloads).
    models_root : path, optional
        ``/v1/admin/reload`` loads only model folders under this directory (relative
        names are taken inside it); default: the folder holding ``model_dir``.
    max_body_bytes : int
        Largest request body; larger ones get 413 before any handler runs.

    Examples
    --------
    >>> import tempfile, os
    >>> from llmrec.datasets import make_synthetic
    >>> from llmrec.routers import make_router
    >>> d = os.path.join(tempfile.mkdtemp(), "m")
    >>> _ = make_router("best-single").fit(make_synthetic(50, 4, seed=0)).save(d)
    >>> from fastapi.testclient import TestClient
    >>> with TestClient(create_app(d)) as c:
    ...     c.post("/v1/recommend", json={"prompts": ["hi"], "k": 2}).status_code
    200
    """
    if long_prompts not in ("truncate", "reject"):
        raise ConfigError(f"long_prompts must be 'truncate' or 'reject', got {long_prompts!r}")
    for name, v in (("max_prompts", max_prompts), ("max_prompt_chars", max_prompt_chars),
                    ("max_k", max_k), ("max_batch", max_batch)):
        if int(v) < 1:
            raise ConfigError(f"{name} must be >= 1, got {v}")
    model_dir = Path(model_dir)
    state = _State(load_and_probe(model_dir), model_dir)
    key = (api_key if api_key is not None else os.environ.get("LLMREC_API_KEY")) or None
    akey = (admin_key if admin_key is not None else os.environ.get("LLMREC_ADMIN_KEY")) or None
    root = Path(models_root if models_root is not None else model_dir.resolve().parent).resolve()
    fb_log = FeedbackLog(feedback_log if feedback_log is not None
                         else model_dir.resolve().parent / "feedback.jsonl")
    batcher = MicroBatcher(lambda: state.router, batch_window_ms, max_batch)
    metrics = _Metrics()
    reload_lock = asyncio.Lock()

    async def do_reload(new_dir: Path | None):
        async with reload_lock:
            target = Path(new_dir) if new_dir else state.model_dir
            loop = asyncio.get_running_loop()
            router = await loop.run_in_executor(None, load_and_probe, target)
            state.router, state.model_dir = router, target  # one atomic swap
            state.version += 1
            state.loaded_at = time.time()
            return state.version

    async def _sighup_reload():
        try:
            await do_reload(None)
        except Exception:  # noqa: BLE001 - a failed reload keeps the current model
            pass

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        loop = asyncio.get_running_loop()
        try:  # SIGHUP: reload the current directory (main thread only)
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: asyncio.ensure_future(_sighup_reload()))
        except (RuntimeError, ValueError, NotImplementedError, AttributeError):
            pass
        yield
        try:
            loop.remove_signal_handler(signal.SIGHUP)
        except (RuntimeError, ValueError, NotImplementedError, AttributeError):
            pass
        await batcher.stop()

    app = FastAPI(title="llmrec", version=__version__, lifespan=lifespan,
                  default_response_class=SafeJSONResponse,
                  description="Route prompts to LLMs: ranked LLMs per prompt, feedback, "
                              "hot reload.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.llmrec = state
    app.state.batcher = batcher
    app.state.feedback_log = fb_log

    @app.middleware("http")
    async def _measure(request: Request, call_next):
        t0 = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            route = request.scope.get("route")
            path = getattr(route, "path", None) or "other"
            metrics.observe(request.method, path, status, time.perf_counter() - t0)

    @app.exception_handler(LLMRecError)
    async def _llmrec_error(request: Request, exc: LLMRecError):
        return SafeJSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        # no echo of the input: it may hold text that cannot be encoded (lone surrogates)
        return SafeJSONResponse(status_code=422, content={"detail": validation_detail(
            exc.errors())})

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException):
        return SafeJSONResponse(status_code=exc.status_code, content={"detail": exc.detail},
                                headers=getattr(exc, "headers", None))

    async def check_key(x_api_key: Optional[str] = Header(None)):
        if key is not None and (x_api_key is None
                                or not secrets.compare_digest(x_api_key.encode(), key.encode())):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    v1 = [Depends(check_key)]

    async def check_admin_key(x_admin_key: Optional[str] = Header(None)):
        if akey is None:
            raise HTTPException(403, "admin endpoints are disabled: start the server with "
                                     "--admin-key (or env LLMREC_ADMIN_KEY) to use them")
        if x_admin_key is None or not secrets.compare_digest(x_admin_key.encode(),
                                                             akey.encode()):
            raise HTTPException(401, "missing or wrong X-Admin-Key header")

    admin = [Depends(check_admin_key)]

    @app.get("/health")
    async def health():
        r = state.router
        return {"status": "ok", "model_dir": str(state.model_dir), "model_version": state.version,
                "router": r.name, "n_llms": r.n_llms_, "llmrec_version": __version__}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_endpoint():
        s = batcher.stats
        return metrics.render({"llmrec_batch_calls_total": s.calls,
                               "llmrec_batched_requests_total": s.requests,
                               "llmrec_batched_prompts_total": s.prompts,
                               "llmrec_model_version": state.version,
                               "llmrec_batch_retries_total": s.retried_batches,
                               "llmrec_feedback_fsyncs_total": fb_log.commits})

    @app.get("/v1/llms", dependencies=v1)
    async def llms():
        r = state.router
        table = r.llms_.astype(object).where(r.llms_.notna(), None)
        return {"model_version": state.version, "llms": table.to_dict(orient="records")}

    @app.post("/v1/recommend", response_model=RecommendResponse, dependencies=v1)
    async def recommend(req: RecommendRequest):
        if len(req.prompts) > max_prompts:
            raise HTTPException(422, f"{len(req.prompts)} prompts; at most {max_prompts} per "
                                     "request, split the batch")
        if req.k > max_k:
            raise HTTPException(422, f"k={req.k} is above the limit {max_k}")
        empty = [i for i, p in enumerate(req.prompts) if not p.strip()]
        if empty:
            raise HTTPException(422, f"prompt(s) at index {empty[:10]} are empty; send text")
        prompts, truncated = [], []
        for i, p in enumerate(req.prompts):
            if len(p) > max_prompt_chars:
                if long_prompts == "reject":
                    raise HTTPException(422, f"prompt {i} has {len(p)} characters; the limit "
                                             f"is {max_prompt_chars}")
                p = p[:max_prompt_chars]
                truncated.append(True)
            else:
                truncated.append(False)
            prompts.append(p)
        router = state.router
        if req.candidates is not None:
            if not req.candidates:
                raise HTTPException(422, "candidates is empty; omit it to use every LLM")
            known = set(router.llm_names_)
            unknown = [c for c in req.candidates if c not in known]
            if unknown:
                raise HTTPException(422, f"unknown candidate LLM(s): {', '.join(unknown)}; "
                                         "see GET /v1/llms")
        if req.cost_weight and router.llm_costs_ is None:
            raise HTTPException(422, "this model knows no LLM prices; cost_weight must be 0")
        used, ids, scores = await batcher.submit(prompts, req.k, req.candidates, req.cost_weight)
        names = used.llm_names_
        prices = _price_fields(used)
        results = []
        for i in range(len(prompts)):
            ranked = [RankedLLM(name=names[j], score=float(s), **prices[j])
                      for j, s in zip(ids[i], scores[i])]
            results.append(PromptResult(index=i, truncated=truncated[i], llms=ranked))
        return RecommendResponse(model_version=state.version, model_dir=str(state.model_dir),
                                 results=results)

    @app.post("/v1/feedback", dependencies=v1)
    async def feedback(req: FeedbackRequest):
        if len(req.feedback) > max_feedback:
            raise HTTPException(422, f"{len(req.feedback)} feedback records; at most "
                                     f"{max_feedback} per request")
        known = set(state.router.llm_names_)
        unknown = sorted({f.llm for f in req.feedback if f.llm not in known})
        if unknown:
            raise HTTPException(422, f"unknown LLM(s) in feedback: {', '.join(unknown)}; see "
                                     "GET /v1/llms")
        bounds = score_bounds(state.router)
        for i, f in enumerate(req.feedback):
            why = score_problem(f.score, bounds)
            if why is not None:
                raise HTTPException(422, f"feedback[{i}].score={f.score!r} {why}")
            if not f.prompt.strip():
                raise HTTPException(422, f"feedback[{i}].prompt is blank; send the prompt text")
        recs = [{"text": f.prompt, "llm": f.llm, "score": f.score, "record_id": f.record_id}
                for f in req.feedback]
        loop = asyncio.get_running_loop()
        try:
            res = await loop.run_in_executor(None, fb_log.append_feedback, recs)
        except OSError as e:  # full disk, I/O error: nothing of this request is stored
            raise HTTPException(507, f"feedback not stored ({e.strerror or e}); nothing of this "
                                     "request was written, retry it with the same record_id "
                                     "values") from None
        return {"written": res.written, "duplicates": len(res.duplicates),
                "record_ids": res.ids, "log": str(fb_log.path)}

    @app.post("/v1/admin/reload", dependencies=admin)
    async def reload(req: Optional[ReloadRequest] = None):
        new_dir = req.model_dir if req is not None else None
        target = None
        if new_dir is not None:
            target = (root / new_dir).resolve()  # an absolute model_dir stays absolute
            if root not in target.parents:
                raise HTTPException(403, f"model_dir {new_dir!r} is outside the models root "
                                         f"{root}; reload only from under it")
            if not target.is_dir():
                raise HTTPException(422, f"model_dir {new_dir!r} is not a directory under "
                                         f"{root}")
        try:
            version = await do_reload(target)
        except Exception as e:  # noqa: BLE001 - never swap in a model that cannot answer
            what = "" if isinstance(e, LLMRecError) else f"{type(e).__name__}: "
            raise HTTPException(422, f"reload failed, still serving version {state.version}: "
                                     f"{what}{e}") from None
        return {"model_version": version, "model_dir": str(state.model_dir),
                "router": state.router.name}

    return app
