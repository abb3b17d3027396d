"""Fields of the OpenAI API the embedded backend's sampler does not implement: refused, never ignored.

A client that sends such a field expects the answer to change; answering as if the field were
absent would be a silent wrong answer. Values that change nothing (``echo: false``) are accepted.
``logit_bias`` and the penalties are implemented (``penalties.py``); ``echo`` is still refused.
"""

from __future__ import annotations

from tokenlean.errors import BadRequestError
from tokenlean.middleware.types import Request

__all__ = ["refuse_unsupported_sampling"]

# logit_bias and the penalties are implemented (``penalties.py``)
_UNSUPPORTED = ("echo",)


def refuse_unsupported_sampling(request: Request) -> None:
    """Raise ``BadRequestError`` naming the first field the local sampler would have ignored."""
    for name in _UNSUPPORTED:
        if request.extra.get(name):
            raise BadRequestError(f"{name}: not supported by the embedded backend", param=name)
