"""Property: a generated valid file (.tsv or .xlsx) passes; one corrupted cell is reported at its
row and column."""

from __future__ import annotations

import csv
import re
import tempfile
from pathlib import Path

import phonenumbers
import xlsxwriter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.chatbot import load_chatbot
from tasks.ingest import _ERROR_TEXTS
from tasks.validation import check_contact_file, column_letter

ROOT = Path(__file__).resolve().parents[1]
BOT = load_chatbot(ROOT / "data" / "payment-reminder.yaml")
HEADERS = ["CONTACT", *BOT.custom_data]
REGIONS = ["MX", "US", "GB", "ES", "BR", "CO", "AR", "IN", "DE", "FR"]


def _valid_phones() -> list[str]:
    """Valid, distinct numbers: each region's example mobile with its last digits varied."""
    phones: list[str] = []
    for region in REGIONS:
        example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        base = str(example.national_number)
        for tail in range(100):
            candidate = phonenumbers.parse(f"+{example.country_code}{base[:-2]}{tail:02d}")
            if phonenumbers.is_valid_number(candidate):
                phones.append(
                    phonenumbers.format_number(candidate, phonenumbers.PhoneNumberFormat.E164)
                )
    return phones


PHONES = _valid_phones()


def _shows_a_formula_error(text: str) -> bool:
    """What a failed formula displays (#N/A, Err:502): such a cell is an error by design."""
    return text in _ERROR_TEXTS or re.fullmatch(r"Err:[0-9]{3}", text) is not None


# Printable text without tabs or line breaks (the TSV separators), never blank, never a cell a
# spreadsheet shows for a failed formula.
VALUE = st.text(
    alphabet=st.characters(
        blacklist_categories=["Cc", "Cs", "Zl", "Zp"], blacklist_characters="\t"
    ),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() != "" and not _shows_a_formula_error(s))

contact_rows = st.integers(min_value=1, max_value=25).flatmap(
    lambda n: st.tuples(
        st.lists(st.sampled_from(PHONES), min_size=n, max_size=n, unique=True),
        st.lists(st.tuples(VALUE, VALUE, VALUE), min_size=n, max_size=n),
    )
)

CORRUPTIONS = {
    "blank": lambda v: "  ",
    "phone_format": lambda v: v.replace("+", "", 1),
}


def _write(rows: list[list[str]], file_format: str) -> Path:
    handle = tempfile.NamedTemporaryFile(
        "w", suffix=f".{file_format}", delete=False, encoding="utf-8", newline=""
    )
    with handle:
        if file_format == "tsv":
            # As spreadsheets and csv writers save text: a cell holding '"' is quoted, its quotes
            # doubled (a bare '"' then a tab would open a quoted field, as in Calc's reader).
            csv.writer(handle, dialect="excel-tab", lineterminator="\n").writerows([HEADERS, *rows])
    if file_format == "xlsx":
        # Every cell written as a text cell, as a user's sheet formatted as Text would hold it.
        book = xlsxwriter.Workbook(handle.name)
        sheet = book.add_worksheet()
        for r, row in enumerate([HEADERS, *rows]):
            for c, value in enumerate(row):
                sheet.write_string(r, c, value)
        book.close()
    return Path(handle.name)


FORMATS = st.sampled_from(["tsv", "xlsx"])


def _rows(data: tuple[list[str], list[tuple[str, str, str]]]) -> list[list[str]]:
    phones, values = data
    return [[p, *v] for p, v in zip(phones, values, strict=True)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact_rows, FORMATS)
def test_generated_valid_file_passes(data, file_format):
    rows = _rows(data)
    path = _write(rows, file_format)
    try:
        report = check_contact_file(path, BOT, max_message_chars=1600)
    finally:
        path.unlink()
    assert report.valid, report.errors[:3]
    assert report.contact_count == len(rows)
    assert report.contacts["phone"].to_list() == [r[0] for r in rows]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contact_rows, FORMATS, st.data())
def test_single_corrupted_cell_is_reported_at_its_row_and_column(data, file_format, draw):
    rows = _rows(data)
    index = draw.draw(st.integers(0, len(rows) - 1), label="row index")
    column = draw.draw(st.integers(0, len(HEADERS) - 1), label="column")
    kind = "phone_format" if column == 0 and draw.draw(st.booleans()) else "blank"
    rows[index][column] = CORRUPTIONS[kind](rows[index][column])
    path = _write(rows, file_format)
    try:
        report = check_contact_file(path, BOT, max_message_chars=1600)
    finally:
        path.unlink()
    assert not report.valid
    assert [(e.rule, e.row, e.column_letter, e.column) for e in report.errors] == [
        (kind, index + 2, column_letter(column), HEADERS[column])
    ]
