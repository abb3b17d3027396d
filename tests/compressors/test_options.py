"""Per-request options of the compress stage: each bad value is a 400 naming its field."""

from __future__ import annotations

import pytest

from tokenlean.compressors.options import CompressOptions, parse_request_options
from tokenlean.errors import BadRequestError

DEFAULTS = CompressOptions()


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        ({"rate": 0}, "tokenlean.compress.rate"),
        ({"rate": -0.5}, "tokenlean.compress.rate"),
        ({"rate": 1.5}, "tokenlean.compress.rate"),
        ({"rate": True}, "tokenlean.compress.rate"),
        ({"rate": "half"}, "tokenlean.compress.rate"),
        ({"mode": "lossless"}, "tokenlean.compress.mode"),
        ({"target_tokens": 0}, "tokenlean.compress.target_tokens"),
        ({"target_tokens": 10.5}, "tokenlean.compress.target_tokens"),
        ({"rate": 0.5, "target_tokens": 100}, "tokenlean.compress.target_tokens"),
        ({"off": "yes"}, "tokenlean.compress.off"),
        ({"protect": "name"}, "tokenlean.compress.protect"),
        ({"last_user": "drop"}, "tokenlean.compress.last_user"),
        ({"ratio": 2}, "tokenlean.compress.ratio"),
        ("fast", "tokenlean.compress"),
    ],
)
def test_bad_options_name_the_field(raw: object, param: str) -> None:
    with pytest.raises(BadRequestError) as info:
        parse_request_options(raw, DEFAULTS)
    assert info.value.param == param and info.value.status == 400
    assert param in info.value.message


def test_good_options_override_the_defaults() -> None:
    assert parse_request_options(None, DEFAULTS) == DEFAULTS
    assert parse_request_options(False, DEFAULTS) is None
    assert parse_request_options({"off": True}, DEFAULTS) is None
    assert parse_request_options({"rate": 1}, DEFAULTS).rate == 1.0  # type: ignore[union-attr]
    tokens = parse_request_options({"target_tokens": 300, "mode": "plain"}, DEFAULTS)
    assert (
        tokens is not None and tokens.target_tokens == 300 and tokens.rate is None and tokens.mode == "plain"
    )
    protect = parse_request_options({"protect": ["ACME-42"]}, CompressOptions(protect=("x",)))
    assert protect is not None and protect.protect == ("x", "ACME-42")
