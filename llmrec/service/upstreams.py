"""``upstreams.toml``: where the proxy sends each LLM's requests.

::

    [proxy]                       # optional
    max_attempts = 2              # LLMs tried per routed request (fallback), >= 1
    route_on = "last_user"        # or "conversation": the text the router scores

    [llms."llm-03"]               # an LLM name of the router (others: pass-through only)
    base_url = "https://api.example.com/v1"   # the OpenAI-compatible base URL
    model = "provider-model-name" # the upstream's model name (default: the table name)
    api_key_env = "EXAMPLE_API_KEY"   # the key is read from this variable, never stored
    timeout = 60                  # seconds for the answer (streams: longest silence), > 0
    connect_timeout = 5           # seconds to connect (default: min(5, timeout))
    price_input = 0.15            # USD per 1M input tokens (optional; for /metrics cost)
    price_output = 0.60           # USD per 1M output tokens

Everything is checked when the file is read (:func:`load_upstreams`): unknown keys,
wrong types, a URL that is not http(s), a missing environment variable; each error is
a :class:`~llmrec.errors.ConfigError` naming the file and the key. API keys are read
from the environment at that moment and kept only in memory; ``repr`` hides them.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10: the tomli backport (serve extra)
    import tomli as tomllib

ROUTE_ON = ("last_user", "conversation")
_LLM_KEYS = {"base_url", "model", "api_key_env", "timeout", "connect_timeout", "price_input",
             "price_output"}
_PROXY_KEYS = {"max_attempts", "route_on"}


@dataclass(frozen=True)
class Upstream:
    """One LLM endpoint (see the module docstring for the fields)."""

    name: str
    base_url: str
    model: str
    api_key_env: str | None = None
    timeout: float = 60.0
    connect_timeout: float = 5.0
    price_input: float | None = None
    price_output: float | None = None
    api_key: str | None = field(default=None, repr=False, compare=False)

    @property
    def chat_url(self) -> str:
        """``<base_url>/chat/completions``."""
        return self.base_url.rstrip("/") + "/chat/completions"

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        """USD for a request's tokens, None when this upstream has no prices."""
        if self.price_input is None and self.price_output is None:
            return None
        return (prompt_tokens * (self.price_input or 0.0)
                + completion_tokens * (self.price_output or 0.0)) / 1e6


@dataclass(frozen=True)
class UpstreamConfig:
    """The parsed ``upstreams.toml``: LLM name -> :class:`Upstream`, and proxy options."""

    llms: dict
    max_attempts: int = 2
    route_on: str = "last_user"
    source: str = "<dict>"

    @property
    def names(self) -> list[str]:
        return list(self.llms)


def _num(where: str, key: str, v, positive: bool = True, allow_zero: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(f"{where} {key}: expected a number, got {v!r}")
    if positive and (v < 0 or (v == 0 and not allow_zero)):
        raise ConfigError(f"{where} {key}: must be {'>= 0' if allow_zero else '> 0'}, got {v}")
    return float(v)


def parse_upstreams(data: Mapping, source: str = "<dict>",
                    environ: Mapping[str, str] | None = None) -> UpstreamConfig:
    """Validate an upstreams mapping (the parsed TOML) into an :class:`UpstreamConfig`.

    Examples
    --------
    >>> cfg = parse_upstreams({"llms": {"a": {"base_url": "http://127.0.0.1:9/v1"}}})
    >>> cfg.llms["a"].chat_url, cfg.llms["a"].model, cfg.max_attempts
    ('http://127.0.0.1:9/v1/chat/completions', 'a', 2)
    >>> parse_upstreams({"llms": {"a": {"base_url": "http://x", "timeout": 0}}})
    Traceback (most recent call last):
    ...
    llmrec.errors.ConfigError: <dict>: [llms."a"] timeout: must be > 0, got 0
    """
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table with [llms.NAME] sections")
    unknown = sorted(set(data) - {"llms", "proxy"})
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; expected [proxy] and "
                          "[llms.NAME] tables")
    proxy = data.get("proxy", {})
    if not isinstance(proxy, Mapping):
        raise ConfigError(f"{source}: [proxy] must be a table")
    bad = sorted(set(proxy) - _PROXY_KEYS)
    if bad:
        raise ConfigError(f"{source}: [proxy] unknown key(s) {bad}; known: "
                          f"{sorted(_PROXY_KEYS)}")
    max_attempts = proxy.get("max_attempts", 2)
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
        raise ConfigError(f"{source}: [proxy] max_attempts: expected an integer >= 1, got "
                          f"{max_attempts!r}")
    route_on = proxy.get("route_on", "last_user")
    if route_on not in ROUTE_ON:
        raise ConfigError(f"{source}: [proxy] route_on: expected one of {list(ROUTE_ON)}, got "
                          f"{route_on!r}")
    llms = data.get("llms")
    if not isinstance(llms, Mapping) or not llms:
        raise ConfigError(f"{source}: no [llms.NAME] tables; add one per LLM with at least "
                          "base_url")
    out = {}
    for name, spec in llms.items():
        where = f"{source}: [llms.\"{name}\"]"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} must be a table")
        bad = sorted(set(spec) - _LLM_KEYS)
        if bad:
            raise ConfigError(f"{where} unknown key(s) {bad}; known: {sorted(_LLM_KEYS)}")
        url = spec.get("base_url")
        if not isinstance(url, str) or not url:
            raise ConfigError(f"{where} base_url: missing; give the OpenAI-compatible base URL, "
                              "e.g. \"https://api.example.com/v1\"")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"{where} base_url: must start with http:// or https://, got "
                              f"{url!r}")
        model = spec.get("model", name)
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{where} model: expected the upstream's model name, got {model!r}")
        key_env = spec.get("api_key_env")
        key = None
        if key_env is not None:
            if not isinstance(key_env, str) or not key_env.isidentifier():
                raise ConfigError(f"{where} api_key_env: expected an environment variable name, "
                                  f"got {key_env!r} (put the key in the environment, not in "
                                  "this file)")
            key = env.get(key_env)
            if not key:
                raise ConfigError(f"{where} api_key_env: environment variable {key_env} is not "
                                  "set or empty")
        timeout = _num(where, "timeout", spec.get("timeout", 60.0))
        connect = _num(where, "connect_timeout", spec.get("connect_timeout", min(5.0, timeout)))
        prices = {}
        for p in ("price_input", "price_output"):
            prices[p] = None if spec.get(p) is None else _num(where, p, spec[p], allow_zero=True)
        out[str(name)] = Upstream(name=str(name), base_url=url, model=model,
                                  api_key_env=key_env, timeout=timeout, connect_timeout=connect,
                                  api_key=key, **prices)
    return UpstreamConfig(llms=out, max_attempts=max_attempts, route_on=route_on,
                          source=source)


def load_upstreams(path, environ: Mapping[str, str] | None = None) -> UpstreamConfig:
    """Read and validate ``upstreams.toml`` (see the module docstring).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "upstreams.toml")
    >>> _ = open(p, "w").write('[llms.a]\\nbase_url = "http://127.0.0.1:9/v1"\\ntimeout = 0\\n')
    >>> load_upstreams(p)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    llmrec.errors.ConfigError: ...upstreams.toml: [llms."a"] timeout: must be > 0, got 0
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: upstreams file not found")
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: not valid TOML ({e})") from None
    return parse_upstreams(data, source=str(p), environ=environ)


def as_upstream_config(upstreams, environ=None) -> UpstreamConfig | None:
    """None, an :class:`UpstreamConfig`, a mapping (parsed TOML) or a path."""
    if upstreams is None or isinstance(upstreams, UpstreamConfig):
        return upstreams
    if isinstance(upstreams, Mapping):
        return parse_upstreams(upstreams, environ=environ)
    return load_upstreams(upstreams, environ=environ)
