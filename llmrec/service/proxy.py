"""The OpenAI-compatible routing proxy: ``POST /v1/chat/completions``, ``GET /v1/models``.

Point any OpenAI client at the service (``base_url=http://host:port/v1``):

* ``model="llmrec-auto"`` (the served router) or ``model="llmrec/<router name>"``:
  the router scores the last user message (or, with ``route_on="conversation"``, the
  whole conversation) against the LLMs that have an upstream in ``upstreams.toml``,
  a policy picks one (greedy by default), and the request is forwarded to it with the
  upstream's model name and API key. On a connection error, a timeout, a 5xx, a 408 or
  a 429, the next-ranked LLM is tried, up to ``max_attempts`` LLMs; any other 4xx is
  the request's fault and is returned as it is. ``stream: true`` answers are passed
  through chunk by chunk (server-sent events as the upstream sends them).
* any other ``model`` that names an upstream is passed straight through to it.

Per-request options go in the body's ``llmrec`` object (``extra_body={"llmrec": {...}}``
with the ``openai`` client): ``candidates`` (LLM names), ``cost_weight`` (>= 0),
``router``, ``route_on`` and ``prompt_id``. Responses carry the headers
``x-llmrec-llm`` (the LLM that answered), ``x-llmrec-chosen`` (the policy's pick),
``x-llmrec-attempts``, ``x-llmrec-router``, ``x-llmrec-router-version`` and
``x-llmrec-decision-id``; every routed request is written to the decision log, so
``POST /v1/feedback {"decision_id", "score"}`` joins its outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from starlette.requests import Request

from .decisions import DecisionLog, choose, new_decision, policy_name
from ._json import dumps as _dumps, loads as _loads
from .routerinfo import router_info
from .upstreams import ROUTE_ON, Upstream, UpstreamConfig

log = logging.getLogger("llmrec.service")

AUTO_MODEL = "llmrec-auto"
ROUTER_PREFIX = "llmrec/"
_OPTION_KEYS = {"candidates", "cost_weight", "router", "route_on", "prompt_id"}
_RETRY_STATUS = {408, 429}


async def _within(seconds: float, aw):
    """``await aw`` with a deadline; asyncio.timeout (3.11+) needs no extra task."""
    timeout = getattr(asyncio, "timeout", None)
    if timeout is None:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(aw, seconds)
    async with timeout(seconds):
        return await aw


@dataclass
class RouterSlot:
    """A router the proxy can route with: its current model, batcher and version."""

    name: str
    get_router: Callable
    batcher: object
    get_version: Callable


class ProxyError(Exception):
    """An error answered in OpenAI's error format."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = \
            status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param,
                          "code": self.code}}


def routing_text(messages, route_on: str = "last_user") -> str:
    """The text the router scores: the last user message, or the whole conversation.

    Message ``content`` may be a string or a list of parts (``{"type": "text", ...}``);
    non-text parts are ignored.

    Examples
    --------
    >>> msgs = [{"role": "system", "content": "Be brief."},
    ...         {"role": "user", "content": "What is 2+2?"},
    ...         {"role": "assistant", "content": "4"},
    ...         {"role": "user", "content": [{"type": "text", "text": "And 3+3?"}]}]
    >>> routing_text(msgs)
    'And 3+3?'
    >>> routing_text(msgs, "conversation")
    'system: Be brief.\\nuser: What is 2+2?\\nassistant: 4\\nuser: And 3+3?'
    """
    if not isinstance(messages, list) or not messages:
        raise ProxyError(400, "messages must be a non-empty list", "messages")

    def text_of(m, i) -> str:
        if not isinstance(m, dict):
            raise ProxyError(400, f"messages[{i}] must be an object", "messages")
        c = m.get("content")
        if c is None:
            return ""
        if isinstance(c, str):
            return c
        if isinstance(c, list):
            return "\n".join(p.get("text", "") for p in c
                             if isinstance(p, dict) and p.get("type") == "text"
                             and isinstance(p.get("text"), str))
        raise ProxyError(400, f"messages[{i}].content must be a string or a list of parts",
                         "messages")

    if route_on == "conversation":
        text = "\n".join(f"{m.get('role', '')}: {text_of(m, i)}"
                         for i, m in enumerate(messages) if text_of(m, i))
    else:
        text = ""
        for i in range(len(messages) - 1, -1, -1):
            if isinstance(messages[i], dict) and messages[i].get("role") == "user":
                text = text_of(messages[i], i)
                break
    if not text.strip():
        raise ProxyError(400, "no user message text to route on; send a user message with "
                              "text content", "messages")
    return text


class ProxyMetrics:
    """Per-LLM counts of upstream requests, tokens and cost (Prometheus text)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, str], int] = {}
        self.tokens: dict[tuple[str, str], int] = {}
        self.cost: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.fallbacks = 0

    def upstream(self, llm: str, outcome: str, seconds: float):
        with self.lock:
            self.requests[(llm, outcome)] = self.requests.get((llm, outcome), 0) + 1
            self.seconds[llm] = self.seconds.get(llm, 0.0) + seconds

    def usage(self, up: Upstream, usage) -> None:
        if not isinstance(usage, dict):
            return
        try:
            pt = int(usage.get("prompt_tokens") or 0)
            ct = int(usage.get("completion_tokens") or 0)
        except (TypeError, ValueError):
            return
        cost = up.cost(pt, ct)
        with self.lock:
            for kind, n in (("prompt", pt), ("completion", ct)):
                self.tokens[(up.name, kind)] = self.tokens.get((up.name, kind), 0) + n
            if cost is not None:
                self.cost[up.name] = self.cost.get(up.name, 0.0) + cost

    def render(self) -> str:
        def esc(s: str) -> str:
            return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

        out = ["# HELP llmrec_proxy_upstream_requests_total upstream requests by LLM and outcome",
               "# TYPE llmrec_proxy_upstream_requests_total counter"]
        with self.lock:
            for (llm, oc), n in sorted(self.requests.items()):
                out.append(f'llmrec_proxy_upstream_requests_total{{llm="{esc(llm)}",'
                           f'outcome="{oc}"}} {n}')
            out += ["# HELP llmrec_proxy_upstream_seconds_total time spent waiting on upstreams",
                    "# TYPE llmrec_proxy_upstream_seconds_total counter"]
            for llm, s in sorted(self.seconds.items()):
                out.append(f'llmrec_proxy_upstream_seconds_total{{llm="{esc(llm)}"}} {s:.6f}')
            out += ["# HELP llmrec_proxy_tokens_total tokens reported by upstreams (usage)",
                    "# TYPE llmrec_proxy_tokens_total counter"]
            for (llm, kind), n in sorted(self.tokens.items()):
                out.append(f'llmrec_proxy_tokens_total{{llm="{esc(llm)}",kind="{kind}"}} {n}')
            out += ["# HELP llmrec_proxy_cost_usd_total cost of the tokens at upstreams.toml "
                    "prices", "# TYPE llmrec_proxy_cost_usd_total counter"]
            for llm, c in sorted(self.cost.items()):
                out.append(f'llmrec_proxy_cost_usd_total{{llm="{esc(llm)}"}} {c:.9f}')
            out += ["# HELP llmrec_proxy_fallbacks_total routed requests answered by another "
                    "LLM than the chosen one", "# TYPE llmrec_proxy_fallbacks_total counter",
                    f"llmrec_proxy_fallbacks_total {self.fallbacks}"]
        return "\n".join(out) + "\n"


class _SSEUsage:
    """Finds the ``usage`` object in a server-sent-event stream as it passes."""

    def __init__(self):
        self.rest = b""
        self.usage = None

    def feed(self, chunk: bytes):
        data = self.rest + chunk
        lines = data.split(b"\n")
        self.rest = lines.pop()
        if len(self.rest) > 1 << 20:  # a line without end: stop looking
            self.rest = b""
        for line in lines:
            if line.startswith(b"data:") and b'"usage"' in line:
                try:
                    u = json.loads(line[5:]).get("usage")
                except (ValueError, AttributeError):
                    continue
                if isinstance(u, dict):
                    self.usage = u


class Proxy:
    """Routes OpenAI chat completions among the upstreams (see the module docstring).

    Parameters
    ----------
    config : UpstreamConfig
        The validated ``upstreams.toml``.
    slots : dict of str -> RouterSlot
        Routers addressable as ``llmrec/<name>``.
    default : str
        The router that ``llmrec-auto`` uses.
    decisions : DecisionLog, optional
        Where routed requests are logged.
    policy : object, optional
        ``choose(scores, mask, rng)``; None is greedy.
    """

    def __init__(self, config: UpstreamConfig, slots: dict, default: str,
                 decisions: DecisionLog | None = None, policy=None, rng=None):
        self.config = config
        self.slots = slots
        self.default = default
        self.decisions = decisions
        self.policy = policy
        self.rng = rng if rng is not None else np.random.default_rng()
        self.metrics = ProxyMetrics()
        self.session = None
        self.created = int(time.time())

    async def start(self):
        # aiohttp's client (C HTTP parser, no anyio layer) costs about a fifth of the CPU
        # per upstream request that httpx's AsyncClient did (0.17 against 0.8-1.0 ms on
        # the benchmark box), which is most of what the proxy adds to a request
        import aiohttp
        if self.session is None:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0,
                                               keepalive_timeout=60),
                auto_decompress=False, trust_env=False, raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=None))

    async def stop(self):
        if self.session is not None:
            await self.session.close()
            self.session = None

    # ----------------------------------------------------------------- models
    def models(self) -> dict:
        """The ``GET /v1/models`` answer: the routers, then every upstream."""
        data = [{"id": AUTO_MODEL, "object": "model", "created": self.created,
                 "owned_by": "llmrec"}]
        data += [{"id": ROUTER_PREFIX + n, "object": "model", "created": self.created,
                  "owned_by": "llmrec"} for n in self.slots]
        data += [{"id": n, "object": "model", "created": self.created, "owned_by": "upstream"}
                 for n in self.config.llms]
        return {"object": "list", "data": data}

    # ----------------------------------------------------------------- routing
    def _options(self, body: dict) -> dict:
        opts = body.pop("llmrec", None)
        if opts is None:
            return {}
        if not isinstance(opts, dict):
            raise ProxyError(400, "llmrec must be an object of routing options", "llmrec")
        bad = sorted(set(opts) - _OPTION_KEYS)
        if bad:
            raise ProxyError(400, f"unknown llmrec option(s) {bad}; known: "
                                  f"{sorted(_OPTION_KEYS)}", "llmrec")
        return opts

    async def _route(self, model: str, body: dict, opts: dict):
        """Rank the candidates; returns (attempt order, decision record, slot name)."""
        name = model[len(ROUTER_PREFIX):] if model.startswith(ROUTER_PREFIX) else None
        want = opts.get("router")
        if want is not None and name is not None and want != name:
            raise ProxyError(400, f"llmrec.router {want!r} contradicts model {model!r}",
                             "llmrec.router")
        name = name or want or self.default
        slot = self.slots.get(name)
        if slot is None:
            raise ProxyError(404, f"router {name!r} is not loaded; routers: "
                                  f"{sorted(self.slots)}", "model", "model_not_found")
        route_on = opts.get("route_on", self.config.route_on)
        if route_on not in ROUTE_ON:
            raise ProxyError(400, f"llmrec.route_on must be one of {list(ROUTE_ON)}",
                             "llmrec.route_on")
        text = routing_text(body.get("messages"), route_on)
        router = slot.get_router()
        all_names = router_info(router).names
        routable = [n for n in all_names if n in self.config.llms]
        if not routable:
            raise ProxyError(503, f"no LLM of router {name!r} has an upstream in "
                                  f"{self.config.source}", None, "no_upstream", "server_error")
        cands = opts.get("candidates")
        if cands is not None:
            if (not isinstance(cands, list) or not cands
                    or not all(isinstance(c, str) for c in cands)):
                raise ProxyError(400, "llmrec.candidates must be a non-empty list of LLM names",
                                 "llmrec.candidates")
            known = set(routable)
            unknown = [c for c in cands if c not in known]
            if unknown:
                raise ProxyError(400, f"llmrec.candidates: {unknown} are not routable (LLMs "
                                      f"of the router with an upstream: {routable})",
                                 "llmrec.candidates")
            cands = list(dict.fromkeys(cands))
        else:
            cands = routable
        cw = opts.get("cost_weight", 0.0)
        if isinstance(cw, bool) or not isinstance(cw, (int, float)) or not cw >= 0:
            raise ProxyError(400, "llmrec.cost_weight must be a number >= 0",
                             "llmrec.cost_weight")
        if cw and router.llm_costs_ is None:
            raise ProxyError(400, "this router knows no LLM prices; llmrec.cost_weight must be "
                                  "0", "llmrec.cost_weight")
        pid = opts.get("prompt_id")
        if pid is not None and not isinstance(pid, str):
            raise ProxyError(400, "llmrec.prompt_id must be a string", "llmrec.prompt_id")
        # every LLM is a candidate (the usual case): no candidate list to map per batch
        sub = None if len(cands) == len(all_names) else cands
        used, ids, scores = await slot.batcher.submit([text], len(cands), sub, float(cw))
        names = router_info(used).names
        col = {n: i for i, n in enumerate(cands)}
        try:
            ranked = [col[names[j]] for j in ids[0]]
        except KeyError:  # a reload changed the LLMs between check and batch
            raise ProxyError(503, "the model was reloaded with other LLMs; retry", None,
                             "model_reloaded", "server_error") from None
        cand_scores = np.empty(len(cands), dtype=np.float64)
        cand_scores[ranked] = scores[0][:len(ranked)]
        chosen, prop = choose(ranked, cand_scores, self.policy, self.rng)
        order = [chosen] + [c for c in ranked if c != chosen]
        decision = new_decision(text, cands, cand_scores, ranked, chosen, prop,
                                policy=policy_name(self.policy), router=used.name,
                                router_version=slot.get_version(), source="proxy",
                                log_text=self.decisions is None or self.decisions.log_texts,
                                prompt_id=pid)
        return [cands[c] for c in order][:self.config.max_attempts], decision

    # --------------------------------------------------------------- forwarding
    async def _send(self, up: Upstream, body: dict):
        """POST the body to ``up``; returns the response once its headers are in (the
        body is read, or streamed, by the caller)."""
        import aiohttp
        if self.session is None:
            await self.start()
        payload = dict(body)
        payload["model"] = up.model
        headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if up.api_key:
            headers["authorization"] = f"Bearer {up.api_key}"
        # sock_read: at most `timeout` of silence between two reads, so a stream that
        # stalls after its first bytes ends (with an error event) instead of hanging;
        # the whole answer before streaming starts is bounded by _within below
        timeout = aiohttp.ClientTimeout(total=None, connect=up.connect_timeout,
                                        sock_connect=up.connect_timeout,
                                        sock_read=up.timeout)
        return await _within(up.timeout, self.session.post(
            up.chat_url, data=_dumps(payload), headers=headers, timeout=timeout,
            allow_redirects=False))

    async def chat_completions(self, raw: bytes):
        """Answer one ``POST /v1/chat/completions`` body; returns a Starlette response."""
        import aiohttp
        from starlette.responses import JSONResponse, Response, StreamingResponse

        t0 = time.perf_counter()
        try:
            try:
                body = _loads(raw)
            except ValueError:
                raise ProxyError(400, "request body is not valid JSON") from None
            if not isinstance(body, dict):
                raise ProxyError(400, "request body must be a JSON object")
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise ProxyError(400, "model is required", "model")
            opts = self._options(body)
            stream = bool(body.get("stream"))
            decision = None
            if model == AUTO_MODEL or model.startswith(ROUTER_PREFIX):
                attempts, decision = await self._route(model, body, opts)
            elif model in self.config.llms:
                if opts:
                    raise ProxyError(400, f"llmrec options apply to {AUTO_MODEL} and "
                                          f"{ROUTER_PREFIX}<router> only", "llmrec")
                attempts = [model]
            else:
                raise ProxyError(404, f"model {model!r} is neither routed ({AUTO_MODEL}, "
                                      f"{ROUTER_PREFIX}<router>) nor an upstream in "
                                      f"{self.config.source}; see GET /v1/models", "model",
                                      "model_not_found")
        except ProxyError as e:
            return JSONResponse(e.body(), status_code=e.status)

        headers = {}
        if decision is not None:
            headers.update({"x-llmrec-decision-id": decision["decision_id"],
                            "x-llmrec-chosen": decision["chosen"],
                            "x-llmrec-router": decision["router"],
                            "x-llmrec-router-version": decision["router_version"],
                            "x-llmrec-propensity": f"{decision['propensity']:.6g}"})
        tried, failures = [], []

        def finish(llm: str | None, status: int | None = None):
            """Headers and the decision record once it is known who answers."""
            headers["x-llmrec-attempts"] = ",".join(tried)
            if llm is not None:
                headers["x-llmrec-llm"] = llm
            if decision is None:
                return
            ok = llm is not None and status is not None and status < 400
            decision["answered"] = llm if ok else None
            decision["attempts"] = list(tried)
            if llm is not None and not ok:
                decision["upstream_status"] = status
            if ok and llm != decision["chosen"]:
                with self.metrics.lock:
                    self.metrics.fallbacks += 1
            if self.decisions is not None:
                self.decisions.record(decision)

        for llm in attempts:
            up = self.config.llms[llm]
            tried.append(llm)
            t1 = time.perf_counter()
            try:
                resp = await self._send(up, body)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
                # aiohttp's connect and read timeouts are asyncio.TimeoutError subclasses
                kind = "timeout" if isinstance(e, asyncio.TimeoutError) else "connect"
                self.metrics.upstream(llm, kind, time.perf_counter() - t1)
                failures.append(f"{llm}: {kind} ({type(e).__name__})")
                continue
            status = resp.status
            if status >= 500 or status in _RETRY_STATUS:
                resp.close()
                self.metrics.upstream(llm, f"http_{status}", time.perf_counter() - t1)
                failures.append(f"{llm}: HTTP {status}")
                continue
            ctype = resp.headers.get("content-type", "application/json")
            if stream and status < 400 and ctype.startswith("text/event-stream"):
                finish(llm, status)
                return StreamingResponse(self._relay(resp, up, t1), status_code=status,
                                         media_type=ctype, headers=headers)
            try:  # the rest of the deadline; nothing is sent yet, so a failure falls back
                left = max(up.timeout - (time.perf_counter() - t1), 0.001)
                content = await _within(left, resp.read())
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                resp.close()
                self.metrics.upstream(llm, "timeout", time.perf_counter() - t1)
                failures.append(f"{llm}: failed while sending its answer ({type(e).__name__})")
                continue
            self.metrics.upstream(llm, "ok" if status < 400 else f"http_{status}",
                                  time.perf_counter() - t1)
            if status < 400:
                try:
                    self.metrics.usage(up, _loads(content).get("usage"))
                except (ValueError, AttributeError):
                    pass
            finish(llm, status)
            return Response(content, status_code=status, media_type=ctype, headers=headers)

        finish(None)
        log.warning("proxy: every upstream failed after %.3f s: %s", time.perf_counter() - t0,
                    "; ".join(failures))
        return JSONResponse(ProxyError(
            502, "no upstream answered: " + "; ".join(failures), None, "upstream_error",
            "server_error").body(), status_code=502, headers=headers)

    async def _relay(self, resp, up: Upstream, t1: float):
        """Pass an upstream event stream through chunk by chunk."""
        import aiohttp
        sse = _SSEUsage()
        outcome = "ok"
        try:
            async for chunk in resp.content.iter_any():  # as the bytes arrive
                sse.feed(chunk)
                yield chunk
        except aiohttp.ClientError as e:
            outcome = "stream_error"
            why = (f"silent for more than {up.timeout:g} s"
                   if isinstance(e, asyncio.TimeoutError) else type(e).__name__)
            msg = {"error": {"message": f"upstream {up.name} broke off the stream "
                                        f"({why})", "type": "server_error",
                             "param": None, "code": "upstream_error"}}
            yield b"data: " + json.dumps(msg).encode() + b"\n\n"
        finally:
            resp.close()
            self.metrics.upstream(up.name, outcome, time.perf_counter() - t1)
            self.metrics.usage(up, sse.usage)


def install_proxy(app, proxy: Proxy, api_key: str | None) -> None:
    """Add ``POST /v1/chat/completions`` and ``GET /v1/models`` to a FastAPI app.

    Clients authenticate as OpenAI clients do (``Authorization: Bearer <key>``) or with
    ``X-API-Key``, when ``api_key`` is set.
    """
    from starlette.responses import JSONResponse

    def denied(request: Request):
        if api_key is None:
            return None
        given = request.headers.get("x-api-key")
        auth = request.headers.get("authorization", "")
        if given is None and auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        if given is not None and secrets.compare_digest(given.encode(), api_key.encode()):
            return None
        return JSONResponse(ProxyError(401, "missing or wrong API key (Authorization: Bearer "
                                            "<key> or X-API-Key)", None,
                                       "invalid_api_key").body(), status_code=401)

    @app.post("/v1/chat/completions", tags=["proxy"],
              summary="OpenAI-compatible chat completion, routed or passed through")
    async def chat_completions(request: Request):
        bad = denied(request)
        if bad is not None:
            return bad
        return await proxy.chat_completions(await request.body())

    @app.get("/v1/models", tags=["proxy"], summary="Models: llmrec-auto, routers, upstreams")
    async def models(request: Request):
        bad = denied(request)
        if bad is not None:
            return bad
        return proxy.models()
