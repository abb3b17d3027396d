"""The embedded engine: a transformers causal LM decoded in-process.

Everything that makes local decoding fast lives here together, because it is one thing: the
decode loop (``backend``, ``decoding``, ``single_row``), KV prefix reuse (``prefix_cache``, ``kv``),
packed CPU kernels (``packed``, ``grouped``) and speculative drafting (``drafting/``). Importing
this package loads no heavy library; torch and transformers are imported when a model is loaded.
"""

from tokenlean.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
