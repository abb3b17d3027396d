"""The packaged model's first-use conversion, run as a fresh machine runs it.

Every other test loads the converted folder from the user's cache, so a machine that converted it
once never runs the conversion again: a dependency the conversion needs (transformers refuses a
GGUF file without ``accelerate``) could go missing from the install unnoticed. This test converts
into an empty cache folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

pytestmark = pytest.mark.slow  # converts and writes the 135M model (about 20 s)


def test_default_model_converts_on_a_fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tokenlean.models import DEFAULT_MODEL_NAME, cache_dir, default_model_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    folder = default_model_dir()

    assert folder == cache_dir() / "models" / DEFAULT_MODEL_NAME
    assert folder.is_relative_to(tmp_path)
    assert (folder / "config.json").exists()
    assert not list(folder.parent.glob("*.partial-*"))  # the temporary folder was renamed, not left
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    assert tokenizer.chat_template  # the chat template travelled with the weights
    model = AutoModelForCausalLM.from_pretrained(str(folder))
    assert model.config.model_type == "llama"
    assert default_model_dir() == folder  # the second call reads the folder
