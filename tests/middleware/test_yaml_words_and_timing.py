"""YAML ``mode: on`` stays a word, and a stage's own time is never negative (issue 15)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from tokenlean.backends.fake import FakeBackend
from tokenlean.middleware.pipeline import Pipeline
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Message, Request, Response
from tokenlean.proxy.settings import load_config
from tokenlean.yaml_text import load_yaml


def test_on_off_yes_no_are_words_and_true_false_booleans() -> None:
    assert load_yaml("a: on\nb: off\nc: yes\nd: no\ne: true\nf: False\ng: 3") == {
        "a": "on", "b": "off", "c": "yes", "d": "no", "e": True, "f": False, "g": 3,
    }  # fmt: skip


def test_a_spec_with_sot_mode_on_builds(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("backend: {type: fake}\nstages:\n  - type: sot\n    options: {mode: on}\n")
    pipeline = PipelineSpec.from_file(spec).build()
    assert getattr(pipeline.stage("sot"), "mode", None) == "on"


def test_a_server_config_keeps_on_as_a_word(tmp_path: Path) -> None:
    config = tmp_path / "serve.yaml"
    config.write_text("backend: {type: fake}\nstages:\n  - type: sot\n    options: {mode: on}\n")
    spec = load_config(config).pipeline_spec()
    assert spec.stages[0].options["mode"] == "on"


class _FanOut:
    """Calls the rest of the pipeline four times at once (as SoT expands its points)."""

    name: ClassVar[str] = "fanout"

    async def __call__(self, request: Request, call_next: Handler, /) -> Response:
        answers = await asyncio.gather(*(call_next(request) for _ in range(4)))
        return answers[0]


class _Slow(FakeBackend):
    async def complete(self, request: Request) -> Response:
        await asyncio.sleep(0.05)
        return await super().complete(request)


async def test_own_time_of_a_stage_that_calls_down_concurrently_is_not_negative() -> None:
    pipeline = Pipeline(_Slow(), [_FanOut()])
    response = await pipeline(Request(messages=(Message("user", "hi"),), model="fake"))
    timing = next(e for e in response.events if e.stage == "fanout" and e.action == "timing")
    assert timing.ms >= 0  # the four calls overlap: summing them gave about -150 ms
