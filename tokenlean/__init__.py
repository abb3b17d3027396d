"""tokenlean: efficiency middleware for LLM serving.

One pipeline of optimisation stages around a backend, reachable three ways: an OpenAI-compatible
proxy (``tokenlean serve``), a LangChain chat model, and the ``@tokenlean.optimize`` decorator.
Importing tokenlean loads no model and no heavy library.
"""

from tokenlean.errors import (
    BackendError,
    BadRequestError,
    ConfigError,
    StageError,
    TokenleanError,
)
from tokenlean.integrations.decorator import call_options, optimize
from tokenlean.middleware import (
    Backend,
    Event,
    Message,
    Pipeline,
    PipelineSpec,
    Request,
    Response,
    Stage,
    Usage,
)

__version__ = "0.1.0"

__all__ = [
    "Backend",
    "BackendError",
    "BadRequestError",
    "ConfigError",
    "Event",
    "Message",
    "Pipeline",
    "PipelineSpec",
    "Request",
    "Response",
    "Stage",
    "StageError",
    "TokenleanError",
    "Usage",
    "__version__",
    "call_options",
    "optimize",
]
