"""The CPU fast paths for verification passes: oneDNN-packed linears and grouped-query attention.

They change how the numbers are computed, never which: each is compared with torch's own path.
"""

from __future__ import annotations

import pytest

from tokenlean.backends.local.grouped import ATTENTION, grouped_sdpa_attention, use_grouped_attention
from tokenlean.backends.local.packed import pack_linear_weights


class _Attention:
    """What the attention function reads from a transformers attention module."""

    num_key_value_groups = 3
    is_causal = True


def test_grouped_attention_equals_sdpa_with_repeated_keys() -> None:
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 9, 5, 16, generator=generator)  # 2 rows, 9 query heads, 5 new tokens
    key, value = (torch.randn(2, 3, 40, 16, generator=generator) for _ in range(2))  # 3 key/value heads
    mask = torch.ones(2, 1, 5, 40, dtype=torch.bool).tril(diagonal=35)  # causal over a 35-token cache
    mask[1, :, :, :7] = False  # the second row is left-padded
    ours, _ = grouped_sdpa_attention(_Attention(), query, key, value, mask, scaling=0.25)
    theirs, _ = sdpa_attention_forward(_Attention(), query, key, value, mask, scaling=0.25)
    assert ours.shape == theirs.shape == (2, 5, 9, 16)
    assert torch.allclose(ours, theirs, atol=1e-5)
    one, _ = grouped_sdpa_attention(_Attention(), query[:, :, :1], key, value, mask[:, :, :1])
    assert one.shape == (2, 1, 9, 16)  # one token: transformers' own path


@pytest.mark.slow
def test_fast_kernels_give_the_same_logits_on_smollm2() -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from tokenlean.backends.local.kv import crop_to, forward_tokens, new_cache
    from tokenlean.models import default_model_dir

    plain, fast = (
        AutoModelForCausalLM.from_pretrained(str(default_model_dir()), dtype=torch.float32).eval()
        for _ in range(2)
    )
    assert pack_linear_weights(fast) == 211 and use_grouped_attention(fast)  # 30 layers x 7 + the head
    assert fast.config._attn_implementation == ATTENTION
    prompt, draft = list(range(1000, 1060)), [17, 2000, 4000, 60, 61]
    results = []
    with torch.inference_mode():
        for model in (plain, fast):
            cache = new_cache(model)
            prefill = forward_tokens(model, cache, prompt, keep=3)
            wide = forward_tokens(model, cache, draft, keep=len(draft))  # a verification pass
            crop_to(cache, len(prompt))
            steps = torch.cat([forward_tokens(model, cache, [token]) for token in draft])  # token by token
            results.append((prefill, wide, steps))
    for ours, theirs in zip(results[1], results[0]):
        assert torch.allclose(ours, theirs, atol=2e-3, rtol=1e-4)
        assert torch.equal(ours.argmax(-1), theirs.argmax(-1))
    _, wide, steps = results[1]
    assert torch.equal(wide.argmax(-1), steps.argmax(-1))  # a verification pass chooses as decoding does
    with torch.enable_grad():
        assert fast(torch.tensor([prompt[:4]])).logits.requires_grad  # training falls back to torch's path
