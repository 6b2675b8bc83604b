"""The HTTP recommendation service: a FastAPI app around one saved router.

Endpoints (``/docs`` and ``/openapi.json`` describe them):

* ``POST /v1/recommend`` -- ``{"prompts": [...], "k": 3, "candidates": [...]?,
  "cost_weight": 0.0?}`` -> per prompt the ranked LLMs, predicted scores and prices.
  Concurrent requests are micro-batched into one router call.
* ``GET /v1/llms`` -- the model's LLM table; ``GET /health``; ``GET /metrics``
  (Prometheus text format).
* ``POST /v1/feedback`` -- ``{"feedback": [{"prompt", "llm", "score"}, ...]}`` appended
  (fsynced) to a JSONL log that ``llmrec fit --data <log> --warm-start <model>`` reads.
  ``{"decision_id", "score"}`` records the outcome of a logged decision. Appends are
  fsynced with group commit; a ``record_id`` makes a retry count once; scores are
  checked against the model's score kind and range.
* ``POST /v1/admin/reload`` -- ``{"model_dir": ...?}`` (a folder under the models
  root): load a model fully, answer a probe request with it, then swap it in
  atomically; in-flight requests finish on the old one. SIGHUP does the same for the
  current directory when the server runs in the main thread.
* With ``upstreams``: ``POST /v1/chat/completions`` and ``GET /v1/models``, the
  OpenAI-compatible routing proxy (:mod:`llmrec.service.proxy`).

Every decision (each ``/v1/recommend`` prompt, each routed chat completion) is logged
to ``decisions.jsonl`` (:mod:`llmrec.service.decisions`).

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
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from .._version import __version__
from ..errors import ConfigError, LLMRecError, ModelFormatError
from ..routers import load_router
from .batcher import MicroBatcher
from .decisions import DecisionLog, choose_many, feedback_line, model_fingerprint, new_decision, \
    policy_name, resolve_policy
from ._json import dumps as _dumps
from .feedback import FeedbackLog
from .routerinfo import price_fields, router_info
from .validation import (BodyLimit, SafeJSONResponse, check_text, check_texts, score_bounds,
                         score_problem, validation_detail)

_OPEN_PATHS = frozenset({"/health", "/metrics", "/docs", "/openapi.json", "/redoc"})
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
    decision_id: Optional[str] = None
    chosen: Optional[str] = None
    propensity: Optional[float] = None


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
    feedback: Optional[list[FeedbackItem]] = Field(None, min_length=1)
    decision_id: Optional[str] = Field(None, min_length=1, max_length=200,
                                       description="outcome of a logged decision")
    score: Optional[float] = Field(None, allow_inf_nan=False, strict=True,
                                   description="with decision_id: the outcome")

    @field_validator("decision_id")
    @classmethod
    def _text(cls, v):
        return v if v is None else check_text(v, "decision_id")


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
        self.fingerprint = model_fingerprint(model_dir) if router is not None else None
        self.load_error: str | None = None


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
        prompts = [_PROBE, "2 + 2 = ?"]
        enc = getattr(getattr(router, "featurizer_", None), "encoder", None)
        if hasattr(enc, "probe_prompts"):  # a lookup encoder: probe with prompts it knows
            prompts = (enc.probe_prompts(2) * 2)[:2] or prompts
        for cand, k in ((None, min(3, router.n_llms_)), (router.llm_names_[-1:], 1)):
            ids, scores = router.recommend_ids(prompts, k=k, candidates=cand,
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
        price_fields(router)
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
               max_feedback: int = 1000, upstreams=None, policy=None, log_dir=None,
               decision_log: bool = True, log_texts: bool = True,
               lazy_load: bool = False, admin_key: str | None = None,
               models_root=None, max_body_bytes: int = 16 << 20) -> FastAPI:
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
        ``""``: open). The proxy endpoints also accept ``Authorization: Bearer <key>``.
    upstreams : path, mapping or UpstreamConfig, optional
        ``upstreams.toml`` (see :mod:`llmrec.service.upstreams`): adds the
        OpenAI-compatible proxy, ``POST /v1/chat/completions`` and ``GET /v1/models``
        (:mod:`llmrec.service.proxy`).
    policy : object or str, optional
        Decision policy (``choose(scores, mask, rng)``, or a spec for
        ``llmrec.policies.make_policy``); None: greedy, propensity 1.0.
    log_dir : path, optional
        Folder of ``feedback.jsonl`` and ``decisions.jsonl``; default: the feedback log's
        folder (``<model_dir>/..``).
    decision_log, log_texts : bool
        Log every decision (``/v1/recommend`` prompts and routed proxy requests) to
        ``decisions.jsonl`` (:mod:`llmrec.service.decisions`), with prompt texts.
    lazy_load : bool
        Load the model in the background after start-up; until it is loaded ``/health``
        answers 503 ``{"ready": false}`` and other endpoints 503.
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
    policy = resolve_policy(policy)
    rng = np.random.default_rng()
    if lazy_load:
        if not (model_dir / "manifest.json").is_file():
            raise ConfigError(f"{model_dir}: no manifest.json; not a saved llmrec router")
        state = _State(None, model_dir)
    else:
        state = _State(load_and_probe(model_dir), model_dir)
    key = (api_key if api_key is not None else os.environ.get("LLMREC_API_KEY")) or None
    akey = (admin_key if admin_key is not None else os.environ.get("LLMREC_ADMIN_KEY")) or None
    root = Path(models_root if models_root is not None else model_dir.resolve().parent).resolve()
    if feedback_log is None:
        feedback_log = (Path(log_dir) if log_dir is not None
                        else model_dir.resolve().parent) / "feedback.jsonl"
    fb_log = FeedbackLog(feedback_log)
    decisions = (DecisionLog((Path(log_dir) if log_dir is not None else fb_log.path.parent)
                             / "decisions.jsonl", log_texts=log_texts)
                 if decision_log else None)
    batcher = MicroBatcher(lambda: state.router, batch_window_ms, max_batch)
    metrics = _Metrics()
    reload_lock = asyncio.Lock()
    proxy = None
    if upstreams is not None:
        from .proxy import Proxy, RouterSlot
        from .upstreams import as_upstream_config
        cfg = as_upstream_config(upstreams)

        def _check_overlap(router):
            if not set(cfg.llms) & set(router.llm_names_):
                raise ConfigError(f"{cfg.source}: none of its LLMs {cfg.names[:10]} is an LLM "
                                  f"of the router in {model_dir} ({router.llm_names_[:10]}); "
                                  "name the [llms.NAME] tables after the router's LLMs")

        if state.router is not None:
            _check_overlap(state.router)
        slot = RouterSlot(name="", get_router=lambda: state.router, batcher=batcher,
                          get_version=lambda: state.fingerprint)
        proxy = Proxy(cfg, {}, "", decisions=decisions, policy=policy, rng=rng)

        def _name_slot(router):
            slot.name = router.name
            proxy.slots = {router.name: slot}
            proxy.default = router.name

        if state.router is not None:
            _name_slot(state.router)

    async def do_reload(new_dir: Path | None):
        async with reload_lock:
            target = Path(new_dir) if new_dir else state.model_dir
            loop = asyncio.get_running_loop()
            router = await loop.run_in_executor(None, load_and_probe, target)
            fingerprint = model_fingerprint(target)
            state.router, state.model_dir = router, target  # one atomic swap
            state.fingerprint = fingerprint
            if proxy is not None:
                _name_slot(router)
            state.version += 1
            state.loaded_at = time.time()
            return state.version

    async def _sighup_reload():
        try:
            await do_reload(None)
        except Exception:  # noqa: BLE001 - a failed reload keeps the current model
            pass

    async def initial_load():
        loop = asyncio.get_running_loop()
        try:
            router = await loop.run_in_executor(None, load_and_probe, model_dir)
            if proxy is not None:
                _check_overlap(router)
        except Exception as e:  # noqa: BLE001 - reported by /health, the server stays up
            state.load_error = f"{type(e).__name__}: {e}"
            import logging
            logging.getLogger("llmrec.service").error("loading %s failed: %s", model_dir,
                                                      state.load_error)
            return
        state.fingerprint = model_fingerprint(model_dir)
        if proxy is not None:
            _name_slot(router)
        state.loaded_at = time.time()
        state.router = router

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        if proxy is not None:
            await proxy.start()
        loader = asyncio.ensure_future(initial_load()) if state.router is None else None
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
        if loader is not None and not loader.done():
            loader.cancel()
        await batcher.stop()
        if proxy is not None:
            await proxy.stop()
        if decisions is not None:
            await loop.run_in_executor(None, decisions.close)

    app = FastAPI(title="llmrec", version=__version__, lifespan=lifespan,
                  default_response_class=SafeJSONResponse,
                  description="Route prompts to LLMs: ranked LLMs per prompt, feedback, "
                              "hot reload.")
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.state.llmrec = state
    app.state.batcher = batcher
    app.state.feedback_log = fb_log
    app.state.decision_log = decisions
    app.state.proxy = proxy

    class _Measure:
        """Latency and status per route (pure ASGI: no per-request task or body copy, and
        streamed answers pass through untouched); 503 while the model is loading."""

        def __init__(self, inner):
            self.inner = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                return await self.inner(scope, receive, send)
            t0 = time.perf_counter()
            status = [500]

            async def send_status(message):
                if message["type"] == "http.response.start":
                    status[0] = message["status"]
                await send(message)

            try:
                if state.router is None and scope["path"] not in _OPEN_PATHS:
                    await JSONResponse(status_code=503, content={
                        "detail": "the model is not loaded yet; see /health"})(
                        scope, receive, send_status)
                else:
                    await self.inner(scope, receive, send_status)
            finally:
                route = scope.get("route")
                path = getattr(route, "path", None) or "other"
                metrics.observe(scope["method"], path, status[0], time.perf_counter() - t0)

    app.add_middleware(_Measure)

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

    async def check_key(request: Request):
        # reads the header itself: a Header() parameter costs FastAPI's per-request
        # parameter machinery, a large share of a single-prompt request
        if key is None:
            return
        x_api_key = request.headers.get("x-api-key")
        if x_api_key is None or not secrets.compare_digest(x_api_key.encode(), key.encode()):
            raise HTTPException(401, "missing or wrong X-API-Key header")

    v1 = [Depends(check_key)]

    async def check_admin_key(request: Request):
        x_admin_key = request.headers.get("x-admin-key")
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
        if r is None:  # readiness: not ready until the model is loaded
            return JSONResponse(status_code=503, content={
                "status": "failed" if state.load_error else "loading", "ready": False,
                "error": state.load_error, "model_dir": str(state.model_dir),
                "llmrec_version": __version__})
        return {"status": "ok", "ready": True, "model_dir": str(state.model_dir),
                "model_version": state.version, "router": r.name,
                "router_version": state.fingerprint, "n_llms": r.n_llms_,
                "llmrec_version": __version__, "pid": os.getpid()}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_endpoint():
        s = batcher.stats
        extra = {"llmrec_batch_calls_total": s.calls,
                 "llmrec_batched_requests_total": s.requests,
                 "llmrec_batched_prompts_total": s.prompts,
                 "llmrec_model_version": state.version,
                 "llmrec_ready": int(state.router is not None),
                 "llmrec_batch_retries_total": batcher.stats.retried_batches,
                 "llmrec_feedback_fsyncs_total": fb_log.commits}
        if decisions is not None:
            extra["llmrec_decision_log_pending"] = decisions.pending
            extra["llmrec_decision_log_errors_total"] = decisions.errors
        return metrics.render(extra) + (proxy.metrics.render() if proxy is not None else "")

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
            known = router_info(router).index
            unknown = [c for c in req.candidates if c not in known]
            if unknown:
                raise HTTPException(422, f"unknown candidate LLM(s): {', '.join(unknown)}; "
                                         "see GET /v1/llms")
        if req.cost_weight and router.llm_costs_ is None:
            raise HTTPException(422, "this model knows no LLM prices; cost_weight must be 0")
        cands = (list(dict.fromkeys(req.candidates)) if req.candidates is not None
                 else router_info(router).names)
        # a logged decision needs every candidate's score, so the batch ranks them all
        k_all = len(cands) if decisions is not None else req.k
        used, ids, scores = await batcher.submit(
            prompts, k_all, cands if req.candidates is not None else None, req.cost_weight)
        info = router_info(used)
        names, prices = info.names, info.prices
        # plain dicts in the RecommendResponse shape, serialised once: building pydantic
        # objects that FastAPI dumps, validates and serialises again cost more than the
        # router itself on small requests
        llm_fields = [{"name": n, "score": None, "price_input": p.get("price_input"),
                       "price_output": p.get("price_output"), "cost": p.get("cost")}
                      for n, p in zip(names, prices)]
        top_ids, top_scores = ids[:, :req.k].tolist(), scores[:, :req.k].tolist()
        logged = _decide(prompts, cands, names, ids, scores, used) if decisions else None
        results = []
        for i in range(len(prompts)):
            res = {"index": i, "truncated": truncated[i],
                   "llms": [{**llm_fields[j], "score": s}
                            for j, s in zip(top_ids[i], top_scores[i])],
                   "decision_id": None, "chosen": None, "propensity": None}
            if logged:
                d = logged[i]
                res["decision_id"], res["chosen"] = d["decision_id"], d["chosen"]
                res["propensity"] = d["propensity"]
            results.append(res)
        if logged:
            decisions.record_many(logged)
        return Response(_dumps({"model_version": state.version,
                                "model_dir": str(state.model_dir), "results": results}),
                        media_type="application/json")

    def _decide(texts, cands, names, ids, scores, used) -> list[dict]:
        """One decision per prompt from the batch's full ranking (vectorised)."""
        info = router_info(used)
        if cands is info.names:  # every LLM: candidate columns are router columns
            ranked = np.asarray(ids, dtype=np.int64)
        else:
            col = np.full(len(names), -1, dtype=np.int64)  # router -> candidate column
            col[[info.index[c] for c in cands]] = np.arange(len(cands))
            ranked = col[ids]                            # (n, m) candidate columns, best first
        cand_scores = np.empty(ranked.shape, dtype=np.float64)
        cand_scores[np.arange(ranked.shape[0])[:, None], ranked] = scores
        chosen, prop = choose_many(ranked, cand_scores, policy, rng)
        pname, version, log_text = policy_name(policy), state.fingerprint, decisions.log_texts
        return [new_decision(t, cands, cs, rk, int(c), float(p), policy=pname,
                             router=used.name, router_version=version, source="recommend",
                             log_text=log_text)
                for t, cs, rk, c, p in zip(texts, cand_scores, ranked.tolist(), chosen, prop)]

    async def decision_feedback(req: FeedbackRequest):
        if req.feedback is not None:
            raise HTTPException(422, "give either decision_id and score, or feedback, not both")
        if req.score is None or not math.isfinite(req.score):
            raise HTTPException(422, "score: a finite number is required with decision_id")
        why = score_problem(req.score, score_bounds(state.router))
        if why is not None:
            raise HTTPException(422, f"score={req.score!r} {why}")
        if decisions is None:
            raise HTTPException(422, "decision_id: this service does not log decisions "
                                     "(started without the decision log)")
        loop = asyncio.get_running_loop()
        d = await loop.run_in_executor(None, decisions.get, req.decision_id)
        if d is None:
            raise HTTPException(404, f"decision_id {req.decision_id!r} is not in "
                                     f"{decisions.path}")
        line = feedback_line(d, req.score)
        n = await loop.run_in_executor(None, fb_log.append_json, [line])
        return {"written": n, "log": str(fb_log.path), "decision_id": d["decision_id"],
                "llm": line["llm"]}

    @app.post("/v1/feedback", dependencies=v1)
    async def feedback(req: FeedbackRequest):
        if req.decision_id is not None:
            return await decision_feedback(req)
        if req.feedback is None:
            raise HTTPException(422, "feedback: give a list of {prompt, llm, score} records, "
                                     "or decision_id and score")
        if len(req.feedback) > max_feedback:
            raise HTTPException(422, f"{len(req.feedback)} feedback records; at most "
                                     f"{max_feedback} per request")
        known = router_info(state.router).index
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

    if proxy is not None:
        from .proxy import install_proxy
        install_proxy(app, proxy, key)
    return app
