"""Linear layers with oneDNN-packed weights: a pass over a few tokens costs about one token's pass.

Why: speculative verification runs the target over ``1 + k`` tokens, and it only pays when that
pass costs little more than a one-token step. A small model's decode step on a CPU is bound by
reading the weights, so in principle a few more rows are nearly free. torch's default fp32 path
(MKL sgemm) does not behave so: measured with SmolLM2-135M on one thread of the shared 2-core EPYC
(thread CPU time, 500-token context), a 3-token pass costs 2.0-2.2 one-token steps and a 9-token
pass 2.1. With the weights reordered once into oneDNN's blocked layout (what torch.compile's CPU
backend does with ``mkldnn._reorder_linear_weight``) the one-token step itself is 1.4-1.5x faster
(28-31 vs 41-44 ms) and a 3-token pass costs about 1.2 of those faster steps, a 9-token pass about
1.5 (docs/speculative.md has the table). The prompt's prefill is 1.6-1.9x faster too. Every linear layer of the model is affected, so plain
and batched decoding gain as well.

Failure modes: memory: the packed copy is held next to the original weights (which stay, for the
embedding they may be tied to, ``state_dict`` and anything reading ``.weight``), about doubling
the linear layers' footprint (~0.5 GiB for SmolLM2-135M). Results differ from MKL's in the last
float bits, so a near-tie between two tokens can resolve differently than in an unpacked model
(still the same with and without drafts, up to the usual one-vs-many-token pass differences).
Only float32 weights on the CPU are packed, only under ``torch.no_grad``/``inference_mode`` is the
packed path taken, and a weight changed after packing is not seen by it: pack after loading.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["pack_linear_weights", "use_fast_kernels"]


def use_fast_kernels(model: Any) -> bool:
    """Packed linear weights and grouped-query attention (``grouped.py``) for ``model``.

    True when the linear layers were packed (the verification costs of ``DraftPolicy.resolve``).
    """
    from tokenlean.backends.local.grouped import use_grouped_attention

    use_grouped_attention(model)
    return pack_linear_weights(model) > 0


def pack_linear_weights(model: Any) -> int:
    """Give every plain fp32 CPU ``nn.Linear`` of ``model`` a oneDNN-packed weight; return how many.

    Returns 0 (and changes nothing) where torch lacks oneDNN or the packed result disagrees with
    ``F.linear`` on a probe input.
    """
    import torch

    if not _available():
        return 0
    packed_class = _packed_linear_class()
    layers = [
        module
        for module in model.modules()
        if type(module) is torch.nn.Linear
        and module.weight.dtype == torch.float32
        and module.weight.device.type == "cpu"
    ]
    with torch.inference_mode():
        for module in layers:
            module.packed_weight = torch.ops.mkldnn._reorder_linear_weight(module.weight.detach(), 8)
            module.__class__ = packed_class
        if layers and not _agrees(layers[0]):
            for module in layers:
                module.__class__ = torch.nn.Linear
                del module.packed_weight
            return 0
    return len(layers)


@functools.cache
def _available() -> bool:
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available()) and callable(  # type: ignore[no-untyped-call]  # torch leaves it unannotated
            torch.ops.mkldnn._reorder_linear_weight
        )
    except (AttributeError, RuntimeError):
        return False


def _agrees(module: Any) -> bool:
    """The packed path gives ``F.linear``'s values (to float tolerance) on a random input."""
    import torch

    probe = torch.randn(3, module.in_features, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.linear(probe, module.weight, module.bias)
    return bool(torch.allclose(module(probe), expected, rtol=1e-4, atol=1e-4))


@functools.cache
def _packed_linear_class() -> type:
    """``nn.Linear`` whose inference forward uses ``packed_weight`` (defined lazily: torch is heavy)."""
    import torch

    class PackedLinear(torch.nn.Linear):
        """An ``nn.Linear`` with a oneDNN-packed copy of its weight (see ``pack_linear_weights``)."""

        packed_weight: Any

        def forward(self, x: Any) -> Any:
            if torch.is_grad_enabled() or x.dtype != torch.float32 or x.device.type != "cpu":
                return super().forward(x)
            return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    return PackedLinear
