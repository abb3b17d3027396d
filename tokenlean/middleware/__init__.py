"""The framework: types, the Stage and Backend protocols, Pipeline, registry and spec.

No technique lives here, and nothing here imports torch, fastapi, httpx or langchain.
"""

from tokenlean.middleware.options import SpecOptions, StageOptions, parse_call_options
from tokenlean.middleware.pipeline import FailurePolicy, Pipeline
from tokenlean.middleware.registry import register_backend, register_stage, resolve_backend, resolve_stage
from tokenlean.middleware.spec import BackendSpec, PipelineSpec, StageSpec
from tokenlean.middleware.stage import Backend, Capabilities, Handler, Stage
from tokenlean.middleware.sync import run_sync
from tokenlean.middleware.types import Choice, Chunk, Event, Message, Request, Response, Usage

__all__ = [
    "Backend",
    "BackendSpec",
    "Capabilities",
    "Choice",
    "Chunk",
    "Event",
    "FailurePolicy",
    "Handler",
    "Message",
    "Pipeline",
    "PipelineSpec",
    "Request",
    "Response",
    "SpecOptions",
    "Stage",
    "StageOptions",
    "StageSpec",
    "Usage",
    "parse_call_options",
    "register_backend",
    "register_stage",
    "resolve_backend",
    "resolve_stage",
    "run_sync",
]
