"""OpenAI wire models and their conversion to and from tokenlean's ``Request``/``Response``.

The models accept unknown fields (``extra="allow"``) and pass them to the backend untouched
(``Request.extra``): vLLM's extras such as ``top_k`` or ``prompt_logprobs`` must survive the
proxy. Known fields are validated strictly enough that a bad value gets a 400 naming it.
"""

from tokenlean.wire.answers import (
    chat_chunk,
    chat_response,
    completion_chunk,
    completion_response,
    events_json,
)
from tokenlean.wire.models import (
    MAX_DEPTH,
    MAX_N,
    MAX_STOP,
    MAX_TOKENS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ErrorResponse,
    ResponseFormat,
    Tool,
)
from tokenlean.wire.requests import (
    bad_request,
    check_json_values,
    check_model,
    parse_request,
    to_request,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_N",
    "MAX_STOP",
    "MAX_TOKENS",
    "ChatCompletionRequest",
    "ChatMessage",
    "CompletionRequest",
    "ErrorResponse",
    "ResponseFormat",
    "Tool",
    "bad_request",
    "chat_chunk",
    "chat_response",
    "check_json_values",
    "check_model",
    "completion_chunk",
    "completion_response",
    "events_json",
    "parse_request",
    "to_request",
]
