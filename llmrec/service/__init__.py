"""Layer 5 face: the HTTP recommendation service (``llmrec serve``).

``create_app(model_dir)`` (in :mod:`llmrec.service.app`) needs the ``serve`` extra
(fastapi, uvicorn); :mod:`llmrec.service.feedback` needs nothing beyond llmrec.
Nothing in llmrec's lower layers imports this package.
"""

from .feedback import AppendLog, FeedbackLog, prompt_hash, read_feedback_log


def create_app(*args, **kwargs):
    """Build the FastAPI app; see :func:`llmrec.service.app.create_app`."""
    from .app import create_app as _create
    return _create(*args, **kwargs)


__all__ = ["create_app", "AppendLog", "FeedbackLog", "prompt_hash", "read_feedback_log"]
