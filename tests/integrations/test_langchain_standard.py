"""LangChain's own standard test suites (``langchain-tests``) against tokenlean's two LangChain faces.

* ``TokenleanChatModel`` (unit suite, and the integration suite) in front of the scripted
  tool-calling upstream of tests/tool_upstream.py, through ``OpenAIBackend`` on a real socket;
* langchain-openai's ``ChatOpenAI`` pointed at a real ``tokenlean serve`` process whose upstream is
  that scripted server;
* both again in front of the embedded SmolLM2 (``slow``), with tool calling, structured output and
  JSON mode switched on exactly when the embedded backend declares them (``Capabilities``), and a
  small ``max_tokens`` to keep the many calls affordable.

Tool calling, tool choice, structured output and JSON mode are on for the scripted upstream. Image
inputs are off only because the suite's ``test_image_inputs`` downloads its picture from GitHub
and this machine has no network; image, audio and file parts are checked to pass through
unchanged in tests/proxy/test_passthrough.py. Skips and why: docs/integrations.md.
"""

from __future__ import annotations

import atexit
import functools
import urllib.request
from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from tests.tool_upstream import MODEL, ToolUpstreamServer
from tokenlean.backends.openai_http import OpenAIBackend
from tokenlean.integrations.langchain import TokenleanChatModel
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.testing import ServeProcess

EMBEDDED_MAX_TOKENS = (
    80  # a forced tool call or a Joke fits (48 cut some short); the suites call the model ~60 times
)


@functools.cache
def scripted_url() -> str:
    """The scripted upstream, started once for the session (stopped at exit)."""
    server = ToolUpstreamServer().__enter__()
    atexit.register(server.__exit__)
    return server.url


def _serve(*args: str) -> str:
    """A real ``tokenlean serve`` process (stopped at exit); its ``/v1`` URL once it answers /health."""
    server = ServeProcess("--log-level", "warning", *args, ready_timeout=120)
    atexit.register(server.stop)
    return server.start().wait_ready().url


def scripted_pipeline() -> Pipeline:
    """A fresh one per model: an OpenAIBackend's connections belong to the loop that opened them."""
    return Pipeline(OpenAIBackend([scripted_url()], model=MODEL, max_retries=0))


@functools.cache
def serve_scripted_url() -> str:
    return _serve("--upstream", scripted_url())


@functools.cache
def serve_embedded_url() -> str:
    return _serve()


@functools.cache
def embedded_pipeline() -> Pipeline:
    from tokenlean.backends.local import LocalBackend

    return Pipeline(LocalBackend())


def _embedded_supports(feature: str) -> bool:
    from tokenlean.backends.local import LocalBackend

    return bool(getattr(LocalBackend.capabilities, feature))


class _ScriptedTokenlean:
    """TokenleanChatModel over OpenAIBackend over the scripted upstream."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return TokenleanChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"pipeline": scripted_pipeline(), "model": MODEL}

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        params = dict(super().standard_chat_model_params)  # type: ignore[misc]
        params.pop("api_key", None)  # a pipeline has no API key (the proxy's keys are its tenants)
        return params

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False  # the suite downloads its image from GitHub; no network here (see module doc)


class TestTokenleanChatModelUnit(_ScriptedTokenlean, ChatModelUnitTests):
    """langchain-tests' unit suite (construction, bind_tools, with_structured_output, params)."""


class TestTokenleanChatModelScripted(_ScriptedTokenlean, ChatModelIntegrationTests):
    """The integration suite in front of an upstream that returns real tool calls."""


class TestChatOpenAIThroughServeScripted(ChatModelIntegrationTests):
    """langchain-openai's ChatOpenAI, unchanged, pointed at ``tokenlean serve --upstream <scripted>``."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": MODEL, "base_url": serve_scripted_url(), "api_key": "unused", "stream_usage": True}

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False  # as above: the suite's image is downloaded from GitHub


_SMALL_MODEL = "SmolLM2-135M's answer, not the plumbing: "
_BOTH_OUTPUTS = pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)


class _TinyModelAnswers:
    """The standard tests the embedded 135M model fails by what it answers (non-strict: greedy output
    can change with the prompt template or the grammar library; a pass is fine)."""

    @pytest.mark.xfail(reason=_SMALL_MODEL + "under tool_choice auto it calls the tool with a made-up "
                       "argument (input 208 for 'magic_function(3)')", strict=False)  # fmt: skip
    @_BOTH_OUTPUTS
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "under tool_choice auto, a made-up argument", strict=False)
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "the joke's strings run on past max_tokens (finish_reason "
                       "length: ChatOpenAI's parse refuses it)", strict=False)  # fmt: skip
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    def test_structured_output(self, model: BaseChatModel, schema_type: Any) -> None:
        super().test_structured_output(model, schema_type)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "the joke's strings run on past max_tokens", strict=False)
    @pytest.mark.parametrize("schema_type", ["pydantic", "typeddict", "json_schema"])
    async def test_structured_output_async(self, model: BaseChatModel, schema_type: Any) -> None:
        await super().test_structured_output_async(model, schema_type)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "the joke's strings run on past max_tokens", strict=False)
    def test_structured_output_optional_param(self, model: BaseChatModel) -> None:
        super().test_structured_output_optional_param(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "the joke's strings run on past max_tokens", strict=False)
    def test_structured_output_pydantic_2_v1(self, model: BaseChatModel) -> None:
        super().test_structured_output_pydantic_2_v1(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "under tool_choice auto it answers in text", strict=False)
    @_BOTH_OUTPUTS
    def test_agent_loop(self, model: BaseChatModel) -> None:
        super().test_agent_loop(model)  # type: ignore[misc]

    @pytest.mark.xfail(
        reason=_SMALL_MODEL + "a valid call whose answer_style is the empty string", strict=False
    )
    def test_bind_runnables_as_tools(self, model: BaseChatModel) -> None:
        super().test_bind_runnables_as_tools(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "JSON mode constrains syntax, not keys: a JSON object "
                       "without the 'setup'/'punchline' keys the prompt asks for", strict=False)  # fmt: skip
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)  # type: ignore[misc]

    @pytest.mark.xfail(reason=_SMALL_MODEL + "the customer name string runs on past max_tokens, so the "
                       "forced call is cut off", strict=False)  # fmt: skip
    def test_unicode_tool_call_integration(self, model: BaseChatModel, **kwargs: Any) -> None:
        super().test_unicode_tool_call_integration(model, **kwargs)  # type: ignore[misc]


class _EmbeddedModel(_TinyModelAnswers):
    """What both embedded suites share: the short answers and the features the backend declares."""

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        return {**super().standard_chat_model_params, "max_tokens": EMBEDDED_MAX_TOKENS}

    @property
    def has_tool_calling(self) -> bool:
        return _embedded_supports("tools")

    @property
    def has_tool_choice(self) -> bool:
        return _embedded_supports("tools")

    @property
    def has_structured_output(self) -> bool:
        return _embedded_supports("response_format")

    @property
    def supports_json_mode(self) -> bool:
        return _embedded_supports("response_format")


@pytest.mark.slow
class TestTokenleanChatModelEmbedded(_EmbeddedModel, ChatModelIntegrationTests):
    """TokenleanChatModel around the embedded SmolLM2 (LocalBackend)."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return TokenleanChatModel

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"pipeline": embedded_pipeline(), "max_tokens": EMBEDDED_MAX_TOKENS}


@pytest.mark.slow
class TestChatOpenAIThroughServeEmbedded(_EmbeddedModel, ChatModelIntegrationTests):
    """ChatOpenAI pointed at ``tokenlean serve`` with the embedded model."""

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatOpenAI

    @property
    def chat_model_params(self) -> dict[str, Any]:
        url = serve_embedded_url()
        return {"model": _first_model(url), "base_url": url, "api_key": "unused", "stream_usage": True}


@functools.cache
def _first_model(url: str) -> str:
    import json

    with urllib.request.urlopen(url + "/models", timeout=10) as answer:
        return str(json.load(answer)["data"][0]["id"])
