"""LLMLingua-style prompt compression: budget controller, iterative token-level pruning,
question-aware coarse-to-fine (LongLLMLingua), baselines, and the ``compress`` stage.

Heavy libraries (torch, transformers) load only when a compressor first scores text.
"""

from tokenlean.compressors.base import CompressionResult, Compressor
from tokenlean.compressors.baselines import KeepBeginningCompressor, RandomDropCompressor
from tokenlean.compressors.lingua import LinguaCompressor, LinguaConfig
from tokenlean.compressors.scorer import CausalLMScorer
from tokenlean.compressors.stage import CompressionStage

__all__ = [
    "CausalLMScorer",
    "CompressionResult",
    "CompressionStage",
    "Compressor",
    "KeepBeginningCompressor",
    "LinguaCompressor",
    "LinguaConfig",
    "RandomDropCompressor",
]
