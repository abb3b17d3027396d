"""PipelineSpec: files to pipelines, unknown keys rejected with the key named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest

from tokenlean.backends.fake import FakeBackend
from tokenlean.errors import ConfigError
from tokenlean.middleware.registry import register_stage
from tokenlean.middleware.spec import PipelineSpec
from tokenlean.middleware.stage import Handler
from tokenlean.middleware.types import Message, Request, Response


class Suffix:
    name: ClassVar[str] = "suffix"

    def __init__(self, *, text: str = "!") -> None:
        self.text = text

    async def __call__(self, request: Request, call_next: Handler) -> Response:
        return await call_next(
            request.replace(messages=[Message("user", request.last_user_text + self.text)])
        )


register_stage("suffix", Suffix)


def test_yaml_spec_builds_a_working_pipeline(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "backend: {type: fake}\nstages:\n  - type: suffix\n    policy: raise\n    options: {text: '?'}\n"
    )
    pipeline = PipelineSpec.from_file(path).build()
    assert isinstance(pipeline.backend, FakeBackend)
    assert pipeline.policies == {"suffix": "raise"}
    assert pipeline.stages[0].text == "?"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("data", "named"),
    [
        ({"stagez": []}, "stagez"),
        ({"stages": [{"type": "suffix", "polcy": "raise"}]}, "polcy"),
        ({"backend": {"type": "fake", "model": "x"}}, "model"),
        ({"stages": [{"type": "suffix", "options": {"txt": "!"}}]}, "txt"),
        ({"stages": [{"type": "no-such-stage"}]}, "no-such-stage"),
    ],
)
def test_unknown_keys_are_rejected_with_the_key_named(tmp_path: Path, data: dict, named: str) -> None:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=named):
        PipelineSpec.from_file(path).build(FakeBackend())


def test_unreadable_and_malformed_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        PipelineSpec.from_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        PipelineSpec.from_file(bad)
