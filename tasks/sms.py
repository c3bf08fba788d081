"""SMS encoding and segment arithmetic (3GPP TS 23.038), as plain functions and polars expressions.

A message that fits the GSM-7 alphabet costs 160 characters in one SMS, 153 per part when split;
a single character outside it (say `á` or an emoji) switches the whole message to UCS-2: 70 per
SMS, 67 per part. Aggregators bill per part, so the validation report shows these counts.
"""

from __future__ import annotations

import re

import polars as pl

from schemas.chatbot import PLACEHOLDER

GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension-table characters are sent as ESC + char: two septets each.
GSM7_EXTENDED = "^{}\\[~]|€\f"

_NOT_GSM7 = "[^" + re.escape(GSM7_BASIC + GSM7_EXTENDED) + "]"
_EXTENDED = "[" + re.escape(GSM7_EXTENDED) + "]"
# Anything that is not printable ASCII, or is an extension-table character: a column without
# any is GSM-7 throughout and one septet per character.
_SPECIAL = r"[^ -~]|[\^{}\\\[~\]|]"
# Characters outside the Basic Multilingual Plane (most emoji) take two UTF-16 code units.
_ASTRAL = "[\U00010000-\U0010ffff]"

GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm7(text: str) -> bool:
    return re.search(_NOT_GSM7, text) is None


def segments(text: str) -> int:
    """Number of SMS parts `text` is sent as."""
    if is_gsm7(text):
        units = len(text) + len(re.findall(_EXTENDED, text))
        return parts(units, GSM7_SINGLE, GSM7_PART)
    units = len(text) + len(re.findall(_ASTRAL, text))
    return parts(units, UCS2_SINGLE, UCS2_PART)


def parts(units: int, single: int, part: int) -> int:
    if units <= single:
        return 1
    return -(-units // part)


def parts_expr(units: pl.Expr, single: int, part: int) -> pl.Expr:
    return pl.when(units <= single).then(1).otherwise((units + part - 1) // part)


def measure_columns(frame: pl.DataFrame, names: list[str]) -> list[pl.Expr]:
    """Per-value measures that every message's length and encoding are sums and ors of.

    Computed once per Custom Data column, then combined per message, so a chatbot with many
    messages costs no extra string scans. A column of plain ASCII (dates, amounts, most codes)
    needs no encoding scans at all: one cheap test proves it.
    """
    special = frame.select(pl.col(names).str.contains(_SPECIAL).any()).row(0) if names else ()
    exprs: list[pl.Expr] = []
    for name, has_special in zip(names, special, strict=True):
        col = pl.col(name)
        exprs.append(col.str.len_chars().fill_null(0).alias(f"_chars:{name}"))
        if has_special:
            exprs += [
                col.str.contains(_NOT_GSM7).fill_null(False).alias(f"_ucs2:{name}"),
                col.str.count_matches(_EXTENDED).fill_null(0).alias(f"_ext:{name}"),
                col.str.count_matches(_ASTRAL).fill_null(0).alias(f"_astral:{name}"),
            ]
        else:
            exprs += [
                pl.lit(False).alias(f"_ucs2:{name}"),
                pl.lit(0, dtype=pl.UInt32).alias(f"_ext:{name}"),
                pl.lit(0, dtype=pl.UInt32).alias(f"_astral:{name}"),
            ]
    return exprs


def message_chars(template: str) -> pl.Expr:
    """Characters of `template` rendered for each contact (needs `measure_columns`)."""
    static, names = _split(template)
    return pl.sum_horizontal(pl.lit(len(static)), *[pl.col(f"_chars:{n}") for n in names])


def message_segments(template: str) -> pl.Expr:
    """SMS parts of `template` rendered for each contact (needs `measure_columns`)."""
    static, names = _split(template)
    chars = message_chars(template)
    ucs2 = pl.any_horizontal(pl.lit(not is_gsm7(static)), *[pl.col(f"_ucs2:{n}") for n in names])
    gsm_units = chars + pl.sum_horizontal(
        pl.lit(len(re.findall(_EXTENDED, static))), *[pl.col(f"_ext:{n}") for n in names]
    )
    ucs_units = chars + pl.sum_horizontal(
        pl.lit(len(re.findall(_ASTRAL, static))), *[pl.col(f"_astral:{n}") for n in names]
    )
    return (
        pl.when(ucs2)
        .then(parts_expr(ucs_units, UCS2_SINGLE, UCS2_PART))
        .otherwise(parts_expr(gsm_units, GSM7_SINGLE, GSM7_PART))
    )


def message_is_ucs2(template: str) -> pl.Expr:
    static, names = _split(template)
    return pl.any_horizontal(pl.lit(not is_gsm7(static)), *[pl.col(f"_ucs2:{n}") for n in names])


def _split(template: str) -> tuple[str, list[str]]:
    """The template's fixed text and its placeholders (with repeats: `{A} {A}` counts A twice)."""
    return PLACEHOLDER.sub("", template), PLACEHOLDER.findall(template)
