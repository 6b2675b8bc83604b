"""Running the service: one process or several workers, graceful shutdown.

:func:`run` is what ``llmrec serve`` calls. With one worker the app is built in this
process with ``lazy_load=True``: the port is open at once and ``/health`` answers 503
``{"ready": false}`` until the model is loaded. With ``workers > 1`` uvicorn starts N
processes that share the port; each builds its app from the settings passed in the
environment variable ``LLMREC_SERVE_CONFIG`` (paths and flags only, never a key) by
:func:`app_from_env`, loading the model *before* it accepts connections, so a worker
that accepts a request is always ready. Metrics, the micro-batcher and the in-memory
decision index are per worker; logs are shared files appended line by line.

On SIGTERM or SIGINT uvicorn stops accepting connections, lets in-flight requests
(streamed proxy answers included) finish for up to ``graceful_timeout`` seconds, then
runs the app's shutdown: the batcher stops, the proxy's connections close and the
decision log is flushed to disk.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "LLMREC_SERVE_CONFIG"
_PATH_KEYS = ("model_dir", "feedback_log", "log_dir", "upstreams")


def app_from_env():
    """App factory for worker processes: ``create_app(**json.loads($LLMREC_SERVE_CONFIG))``."""
    from .app import create_app
    raw = os.environ.get(ENV)
    if not raw:
        raise RuntimeError(f"{ENV} is not set; start workers through `llmrec serve`")
    return create_app(**json.loads(raw))


def run(app_kwargs: dict, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
        graceful_timeout: float = 30.0, log_level: str = "info", announce=None) -> None:
    """Serve ``create_app(**app_kwargs)`` with uvicorn (blocks until shut down).

    Settings are checked here, before any worker starts (a bad ``upstreams.toml`` or
    a missing model fails at once with a :class:`~llmrec.errors.ConfigError`);
    ``announce()``, when given, is called once they pass.
    """
    import uvicorn

    from ..errors import ConfigError
    from .app import create_app
    from .decisions import resolve_policy
    from .upstreams import as_upstream_config

    if int(workers) < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")
    if graceful_timeout is not None and graceful_timeout < 0:
        raise ConfigError(f"--graceful-timeout must be >= 0, got {graceful_timeout}")
    model_dir = Path(app_kwargs["model_dir"])
    if not (model_dir / "manifest.json").is_file():
        raise ConfigError(f"{model_dir}: no manifest.json; not a saved llmrec router "
                          "(write one with `llmrec fit ... --out DIR`)")
    if app_kwargs.get("upstreams") is not None:
        as_upstream_config(app_kwargs["upstreams"])  # validate (and read the key variables)
    resolve_policy(app_kwargs.get("policy"))
    if announce is not None:
        announce()
    common = dict(host=host, port=port, log_level=log_level,
                  timeout_graceful_shutdown=graceful_timeout)
    if workers == 1:
        uvicorn.run(create_app(**app_kwargs, lazy_load=True), **common)
        return
    if app_kwargs.get("policy") is not None and not isinstance(app_kwargs["policy"], str):
        raise ConfigError("with --workers > 1 the policy must be a spec string")
    cfg = {k: (str(v) if k in _PATH_KEYS and v is not None else v)
           for k, v in app_kwargs.items()}
    os.environ[ENV] = json.dumps(cfg)
    uvicorn.run("llmrec.service.server:app_from_env", factory=True, workers=int(workers),
                **common)
