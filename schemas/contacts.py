"""Every contact-file rule, by the name reports use, built from a chatbot's Custom Data Unique IDs.

The rules about the file's shape (`header`, `extra_value`, `no_contacts`) are plain functions
over the headers and cells as read; the rules about each contact (`blank`, `phone_format`,
`phone_invalid`, `duplicate_phone`, `message_too_long`) are named checks of a pandera schema.
The expensive facts those checks read (is this phone valid and if not why, where did it first
appear, how long is the longest rendered message) are computed once, vectorised, by
`tasks.validation` into `_`-prefixed columns; the schema states the rules over them.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import polars as pl

from schemas.chatbot import CONTACT_HEADER
from schemas.pandera_polars import import_pandera_polars

if TYPE_CHECKING:
    import pandera.polars as pa
    from pandera.api.polars.types import PolarsData

PHONE_RULE = "_phone_rule"  # null, "phone_format" or "phone_invalid": the number's problem
FIRST_ROW = "_first_row"  # spreadsheet row where this phone first appears
LONGEST = "_longest"  # characters of the contact's longest rendered message
ROW = "row"

# Rule ids, in the order the report shows them, with the heading of each group.
RULES: dict[str, str] = {
    "header": "Column headers",
    "extra_value": "Values outside the header's columns",
    "formula_error": "Formulas that give an error or have no saved result",
    "no_contacts": "No contacts",
    "blank": "Empty cells",
    "control_character": "Invisible control characters in cells",
    "phone_format": "Phone numbers not written in E.164 form (+, country code, number)",
    "phone_invalid": "Phone numbers that don't exist in their country",
    "duplicate_phone": "Phone numbers repeated in the file",
    "message_too_long": "Messages longer than allowed",
}


@dataclass(frozen=True)
class ContactIssue:
    """One failure, located as the user sees the spreadsheet (header = row 1, columns A, B, ...)."""

    row: int
    column: str | None
    column_letter: str | None
    value: str | None
    rule: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA: the spreadsheet's own column names."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


# --- the file's shape --------------------------------------------------------------------------


def check_headers(
    headers: list[str], custom_data: list[str], data: pl.DataFrame
) -> tuple[dict[str, int], list[ContactIssue]]:
    """Rule `header`: row 1 is CONTACT, then one column per Unique ID, in any order.

    Returns which file column holds CONTACT and each Unique ID, and every header problem with
    its fix.
    """
    expected = [CONTACT_HEADER, *custom_data]
    positions: dict[str, int] = {}
    issues: list[ContactIssue] = []

    def issue(i: int | None, header: str | None, message: str) -> None:
        letter = column_letter(i) if i is not None else None
        issues.append(ContactIssue(1, header, letter, header, "header", message))

    for i, header in enumerate(headers):
        letter = column_letter(i)
        if header in expected:
            if header in positions:
                first = column_letter(positions[header])
                issue(
                    i,
                    header,
                    f"Header {header} appears twice (columns {first} and {letter}): "
                    "keep one column.",
                )
            else:
                positions[header] = i
            continue
        if not header.strip():
            if data[f"c{i}"].drop_nulls().len() == 0 and i > 0:
                continue  # an empty trailing column some spreadsheets keep: harmless
            issue(
                i,
                header,
                f"Column {letter} has no header: write one of "
                f"{', '.join(expected)} in row 1, or delete the column.",
            )
            continue
        guess = _near_miss(header, expected)
        if guess and header.strip() == guess:
            where = (
                "before and after"
                if header[0].isspace() and header[-1].isspace()
                else ("before" if header[0].isspace() else "after")
            )
            message = (
                f"Header {header!r} in column {letter} has spaces {where} {guess}: remove them "
                f"(it must be exactly {guess})."
            )
        elif guess:
            message = (
                f"Header {header!r} in column {letter} is not exactly {guess}: "
                f"did you mean {guess}?"
            )
        else:
            message = (
                f"Unknown header {header!r} in column {letter}: the chatbot's columns are "
                f"{', '.join(expected)}."
            )
        issue(i, header, message)

    if headers and headers[0] != CONTACT_HEADER and CONTACT_HEADER in positions:
        issue(
            positions[CONTACT_HEADER],
            CONTACT_HEADER,
            f"CONTACT must be the first column (column A); it is in column "
            f"{column_letter(positions[CONTACT_HEADER])}.",
        )
    present_guesses = {_near_miss(h, expected) for h in headers if h not in expected and h.strip()}
    for name in expected:
        if name not in positions and name not in present_guesses:
            what = "the phone numbers" if name == CONTACT_HEADER else f"the chatbot's {{{name}}}"
            issue(None, name, f"Missing column {name}: add a column headed {name} with {what}.")
    return positions, issues


def check_header_row(expected: list[str], first_value_row: int | None) -> ContactIssue:
    """Rule `header`, for a file whose row 1 is empty: one finding, not one per value."""
    names = ", ".join(expected)
    if first_value_row is not None:
        message = (
            f"Row 1 is empty, but the headers ({names}) must be on row 1: the first values "
            f"are on row {first_value_row}. Delete the rows above the headers."
        )
    else:
        message = f"The file is empty: row 1 must hold the headers ({names})."
    return ContactIssue(1, None, None, None, "header", message)


def check_header_on_row_1(expected: list[str], header_row: int) -> ContactIssue:
    """Rule `header`, for a title above the headers: one finding, not one per value."""
    return ContactIssue(
        header_row,
        None,
        None,
        None,
        "header",
        f"The headers are on row {header_row}, but they must be on row 1 "
        f"({', '.join(expected)}): delete the rows above them.",
    )


def check_formula_cells(
    error_cells: list[tuple[int, int, str]], positions: dict[str, int], no_saved_result: str
) -> list[ContactIssue]:
    """Rule `formula_error`: a cell whose formula gives an error, or was never calculated."""
    names = {i: name for name, i in positions.items()}
    issues = []
    for row, col, error in error_cells:
        name = names.get(col - 1)
        if name is None:
            continue  # under no header: the header rules speak of that column
        if error == no_saved_result:
            message = (
                "This cell holds a formula without a saved result (the file was never opened "
                "in a spreadsheet program): open and save it in Excel or Calc, or type the value."
            )
        else:
            message = f"The formula in this cell gives {error}: fix the formula or type the value."
        issues.append(
            ContactIssue(row, name, column_letter(col - 1), error, "formula_error", message)
        )
    return issues


def _near_miss(header: str, expected: list[str]) -> str | None:
    folded = re.sub(r"[\s\-]+", "_", header.strip()).upper()
    for name in expected:
        if folded == name:
            return name
    close = difflib.get_close_matches(folded, expected, n=1, cutoff=0.75)
    return close[0] if close else None


def check_extra_values(extra_cells: list[tuple[int, int, str]]) -> list[ContactIssue]:
    """Rule `extra_value`: no value in a column without a header."""
    return [
        ContactIssue(
            row,
            None,
            column_letter(col - 1),
            value,
            "extra_value",
            f"Value in column {column_letter(col - 1)}, which has no header: "
            "add the header or delete the value.",
        )
        for row, col, value in extra_cells
    ]


def check_has_contacts(contact_rows: int) -> list[ContactIssue]:
    """Rule `no_contacts`: at least one contact below the headers."""
    if contact_rows:
        return []
    return [
        ContactIssue(
            2,
            None,
            None,
            None,
            "no_contacts",
            "The file has no contacts: add one row per contact below the headers.",
        )
    ]


# --- each contact: the pandera schema ----------------------------------------------------------


def _not_blank(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        pl.col(data.key).str.strip_chars().str.len_chars().fill_null(0) > 0
    )


# C0 and C1 control characters, but the line break a cell may hold (Excel's Alt+Enter, a quoted
# TSV cell): escape sequences and bells would reach phones and terminals as they are.
CONTROL_CHARACTERS = r"[\x00-\x09\x0b-\x1f\x7f-\x9f]"
_CONTROL_NAMES = {0: "NUL", 7: "BEL", 8: "BACKSPACE", 9: "TAB", 11: "VT", 12: "FF", 13: "CR"}
_CONTROL_NAMES |= {27: "ESC", 127: "DEL"}


def _no_control_characters(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(
        ~pl.col(data.key).str.contains(CONTROL_CHARACTERS).fill_null(False)
    )


def control_character_message(value: str) -> str:
    """Which control character a cell holds and where, for `control_character` failures."""
    found = re.search(CONTROL_CHARACTERS, value)
    assert found is not None, "only called for values that failed the check"
    code = ord(found.group())
    name = _CONTROL_NAMES.get(code)
    what = f"U+{code:04X}" + (f" ({name})" if name else "")
    return (
        f"Contains the control character {what} at character {found.start() + 1}: delete it "
        "(it would reach phones as it is; only a line break may be inside a cell)."
    )


def _phone_rule_is_not(rule: str) -> Any:
    def check(data: PolarsData) -> pl.LazyFrame:
        return data.lazyframe.select(pl.col(PHONE_RULE).fill_null("") != rule)

    return check


def _first_occurrence(data: PolarsData) -> pl.LazyFrame:
    return data.lazyframe.select(pl.col(FIRST_ROW).is_null() | (pl.col(FIRST_ROW) == pl.col(ROW)))


def contact_schema(columns: list[str], max_chars: int | None) -> pa.DataFrameSchema:
    """Rules for the columns the file has (CONTACT and known Unique IDs, by header name).

    `max_chars` is None when a Unique ID column is missing: messages can't be rendered then, and
    the missing header is already reported.
    """
    # ~0.5 s of imports, only when a file is actually validated; never pandas (see the module).
    import_pandera_polars()
    import pandera.polars as pa

    blank = pa.Check(_not_blank, name="blank")
    control = pa.Check(_no_control_characters, name="control_character")
    schema_columns: dict[str, pa.Column] = {}
    for name in columns:
        checks = [blank, control]
        if name == CONTACT_HEADER:
            checks += [
                pa.Check(_phone_rule_is_not("phone_format"), name="phone_format"),
                pa.Check(_phone_rule_is_not("phone_invalid"), name="phone_invalid"),
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
