"""SMS segment arithmetic: the plain definition, and the vectorised one agreeing with it."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import sms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a" * 160, 1),  # GSM-7: 160 in one SMS
        ("a" * 161, 2),  # then 153 per part
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("{" * 80, 1),  # extension characters count twice: 160 septets
        ("{" * 81, 2),
        ("á" * 70, 1),  # one character outside GSM-7: UCS-2, 70 in one SMS
        ("á" * 71, 2),  # then 67 per part
        ("😀" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("😀" * 36, 2),
        ("ñÑüÜ¿¡" * 20, 1),  # Spanish letters in the GSM-7 alphabet stay GSM-7
    ],
)
def test_segments(text, expected):
    assert sms.segments(text) == expected


ALPHABET = "aZ9 {}[]~^|€\\áñ¿😀\n"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=ALPHABET, max_size=400), min_size=1, max_size=20))
def test_vectorised_segments_agree_with_the_definition(values):
    template = "Hola {NAME}, ¿todo bien? {NAME}"
    frame = pl.DataFrame({"NAME": values})
    got = frame.with_columns(sms.measure_columns(frame, ["NAME"])).select(
        sms.message_segments(template).alias("segments"),
        sms.message_chars(template).alias("chars"),
    )
    rendered = [template.replace("{NAME}", v) for v in values]
    assert got["segments"].to_list() == [sms.segments(t) for t in rendered]
    assert got["chars"].to_list() == [len(t) for t in rendered]
