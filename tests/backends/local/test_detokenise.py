"""Incremental detokenisation (RowDecoder): the streamed text is exactly the decoded sequence,
and each token costs a bounded amount of decoding however long the output grows."""

from __future__ import annotations

from typing import Any

import pytest

from tokenlean.backends.local.decoding import RowDecoder, SamplingSettings

TEXTS = [
    "The capital of France is Paris. It's known for the Eiffel Tower, built in 1889.",
    "Unicode: naïve café, Grüße, 東京は日本の首都です, emoji 🙂🚀 and ∑ x² ≤ π.",
    "def add(a: int, b: int) -> int:\n    return a + b  # two  spaces\n\n\tindented\r\nwindows line",
    "it 's fine . Don 't  split ,  please !",
]


class CountingTokenizer:
    """The real tokenizer, counting how many tokens it is asked to decode."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.decoded_tokens = 0

    def decode(self, token_ids: list[int], **kwargs: Any) -> str:
        self.decoded_tokens += len(token_ids)
        return str(self.tokenizer.decode(token_ids, **kwargs))


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from tokenlean.models import default_model_dir

    return AutoTokenizer.from_pretrained(default_model_dir())


def stream(tokenizer: Any, token_ids: list[int]) -> tuple[str, RowDecoder]:
    row = RowDecoder(SamplingSettings(max_tokens=10**6), tokenizer, frozenset())
    return "".join(row.advance(token) for token in token_ids) + row.force_finish("stop"), row


@pytest.mark.parametrize("text", TEXTS)
def test_streamed_text_is_the_whole_decoded_sequence(tokenizer: Any, text: str) -> None:
    token_ids = tokenizer.encode(text, add_special_tokens=False)
    streamed, _ = stream(tokenizer, token_ids)
    assert streamed == tokenizer.decode(
        token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )


def test_a_split_multibyte_character_is_held_back_until_complete(tokenizer: Any) -> None:
    token_ids = tokenizer.encode("🙂", add_special_tokens=False)
    assert len(token_ids) > 1  # byte-level BPE splits the emoji's four bytes
    row = RowDecoder(SamplingSettings(max_tokens=100), tokenizer, frozenset())
    pieces = [row.advance(token) for token in token_ids]
    assert all("\ufffd" not in piece for piece in pieces) and "".join(pieces) == "🙂"


def test_decoding_work_grows_linearly_with_the_output(tokenizer: Any) -> None:
    token_ids = tokenizer.encode(" ".join(TEXTS * 40), add_special_tokens=False)[:1024]
    counting = CountingTokenizer(tokenizer)
    streamed, _ = stream(counting, token_ids)
    assert streamed == tokenizer.decode(
        token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
    )
    # a full re-decode per step would decode ~n²/2 = 524,288 tokens; the window keeps it O(n)
    assert counting.decoded_tokens <= 12 * len(token_ids)
