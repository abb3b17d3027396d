"""The public API is curated: growing it is a decision, not an accident."""

import subprocess
import sys

import tokenlean


def test_public_names_are_pinned() -> None:
    assert sorted(tokenlean.__all__) == sorted(
        [
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
    )


def test_import_loads_no_heavy_library() -> None:
    code = "import sys, tokenlean; print(sorted(m for m in ('torch','transformers','faiss','fastapi') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
