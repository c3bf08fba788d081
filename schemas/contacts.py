"""The contact-file rules as a pandera schema, built from a chatbot's Custom Data Unique IDs.

The expensive facts (is this phone valid, where did it first appear, how long is the longest
rendered message) are computed once, vectorised, by `tasks.validation` into `_`-prefixed columns;
the schema states the rules over them, so every rule of the product FAQ has one named check here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import polars as pl

from schemas.chatbot import CONTACT_HEADER

if TYPE_CHECKING:
    import pandera.polars as pa
    from pandera.api.polars.types import PolarsData

PHONE_OK = "_phone_ok"  # valid E.164 for its country, or blank (blank is its own rule)
FIRST_ROW = "_first_row"  # spreadsheet row where this phone first appears
LONGEST = "_longest"  # characters of the contact's longest rendered message
ROW = "row"

# Rule ids, in the order the report shows them, with the heading of each group.
RULES: dict[str, str] = {
    "header": "Column headers",
    "extra_value": "Values outside the header's columns",
    "no_contacts": "No contacts",
    "blank": "Empty cells",
    "phone_format": "Phone numbers not written in E.164 form (+, country code, number)",
    "phone_invalid": "Phone numbers that don't exist in their country",
    "duplicate_phone": "Phone numbers repeated in the file",
    "message_too_long": "Messages longer than allowed",
}


def _not_blank(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        pl.col(data.key).str.strip_chars().str.len_chars().fill_null(0) > 0
    )


def _phone_valid(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(PHONE_OK))


def _first_occurrence(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(FIRST_ROW).is_null() | (pl.col(FIRST_ROW) == pl.col(ROW)))


def contact_schema(columns: list[str], max_chars: int | None) -> pa.DataFrameSchema:
    """Rules for the columns the file has (CONTACT and known Unique IDs, by header name).

    `max_chars` is None when a Unique ID column is missing: messages can't be rendered then, and
    the missing header is already reported.
    """
    import pandera.polars as pa  # ~0.5 s of imports: only when a file is actually validated

    blank = pa.Check(_not_blank, name="blank")
    schema_columns: dict[str, pa.Column] = {}
    for name in columns:
        checks = [blank]
        if name == CONTACT_HEADER:
            checks += [
                pa.Check(_phone_valid, name="phone"),
                pa.Check(_first_occurrence, name="duplicate_phone"),
            ]
        # Nulls are allowed by the type so that an empty cell is reported by the `blank` rule,
        # with the user's row and column, rather than as a pandera nullability failure.
        schema_columns[name] = pa.Column(pl.String, nullable=True, checks=checks)
    frame_checks = []
    if max_chars is not None:
        frame_checks.append(
            pa.Check(
                lambda data: data.lazyframe.select(pl.col(LONGEST) <= max_chars),
                name="message_too_long",
            )
        )
    return pa.DataFrameSchema(schema_columns, checks=frame_checks, name="contact file")
