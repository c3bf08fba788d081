"""Every contact-file rule, on real .tsv and .xlsx files written here."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import phonenumbers
import pytest
from openpyxl import Workbook

from schemas.chatbot import load_chatbot
from tasks.validation import check_contact_file, column_letter

ROOT = Path(__file__).resolve().parents[1]
CHATBOT = ROOT / "data" / "payment-reminder.yaml"
HEADERS = ["CONTACT", "NAME", "DUE_DATE", "AMOUNT"]
MX = "+525512345678"
US = "+12015550123"
ES = "+34612345678"


@pytest.fixture(scope="module")
def bot():
    return load_chatbot(CHATBOT)


def write_tsv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.write_bytes(("\n".join("\t".join(r) for r in rows) + "\n").encode(encoding))
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    book.save(path)
    return path


def rules(report) -> list[tuple[str, int, str | None]]:
    return [(e.rule, e.row, e.column_letter) for e in report.errors]


def test_sample_file_is_valid(bot):
    report = check_contact_file(ROOT / "data" / "sample-contacts.tsv", bot, max_message_chars=1600)
    assert report.valid, report.errors
    assert report.contact_count == 12
    assert sum(c.contacts for c in report.countries) == 12
    assert {c.iso for c in report.countries} >= {"MX", "US", "ES", "GB"}
    mexico = next(c for c in report.countries if c.iso == "MX")
    assert (mexico.calling_code, mexico.contacts) == (52, 4)
    assert len(report.previews) == 3
    phone, text = report.previews[0]
    assert phone == "+522221234567"
    assert text.startswith("Hola Ana, tu pago de 500 vence el 2026-12-01.")
    assert report.contacts.columns == ["row", "phone", "country", "calling_code", *HEADERS[1:]]
    assert report.contacts["row"].to_list() == list(range(2, 14))


def test_valid_file_with_repeated_custom_values(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [HEADERS, [MX, "Ana", "2026-12-01", "1500"], [US, "Ana", "2026-12-01", "1500"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid and report.contact_count == 2


def test_headers_in_any_order(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [["CONTACT", "AMOUNT", "NAME", "DUE_DATE"], [MX, "1500", "Ana", "2026-12-01"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid
    assert report.previews[0][1].startswith("Hola Ana, tu pago de 1500 vence el 2026-12-01")


@pytest.mark.parametrize("header", ["contact", "Contact", "CONTACT_"])
def test_near_miss_contact_header(tmp_path, bot, header):
    path = write_tsv(
        tmp_path / "c.tsv",
        [[header, "NAME", "DUE_DATE", "AMOUNT"], [MX, "Ana", "2026-12-01", "1500"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert not report.valid
    error = report.errors[0]
    assert (error.rule, error.row, error.column_letter, error.value) == ("header", 1, "A", header)
    assert "did you mean CONTACT?" in error.message


def test_missing_unknown_duplicated_and_empty_headers(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [["CONTACT", "NAME", "NAME", "PHONE2", "", "AMOUNT"], [MX, "Ana", "Ana", "x", "y", "1500"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    messages = {(e.column_letter, e.column): e.message for e in report.errors if e.rule == "header"}
    assert "twice" in messages[("C", "NAME")]
    assert "Unknown header 'PHONE2' in column D" in messages[("D", "PHONE2")]
    assert "no header" in messages[("E", "")]
    assert "Missing column DUE_DATE" in messages[(None, "DUE_DATE")]
    assert len(messages) == 4


def test_contact_must_be_first_column(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [["NAME", "CONTACT", "DUE_DATE", "AMOUNT"], ["Ana", MX, "2026-12-01", "1500"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert [(e.rule, e.column_letter) for e in report.errors] == [("header", "B")]
    assert "first column" in report.errors[0].message


@pytest.mark.parametrize(
    ("value", "rule", "suggestion"),
    [
        ("525512345678", "phone_format", "+525512345678"),
        ("+52 55 1234 5678", "phone_format", "+525512345678"),
        ("+52-55-1234-5678", "phone_format", "+525512345678"),
        ("+5255123", "phone_invalid", None),
        ("hello", "phone_format", None),
    ],
)
def test_bad_phone_numbers_name_row_column_and_fix(tmp_path, bot, value, rule, suggestion):
    path = write_tsv(
        tmp_path / "c.tsv",
        [HEADERS, [US, "Bob", "2026-12-01", "10"], [value, "Ana", "2026-12-01", "1500"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert rules(report) == [(rule, 3, "A")]
    error = report.errors[0]
    assert error.value == value and error.column == "CONTACT"
    if suggestion:
        assert suggestion in error.message


def test_blank_and_whitespace_cells(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [
            HEADERS,
            [MX, "   ", "2026-12-01", "1500"],
            [US, "Bob", "", "10"],
            ["", "Eve", "2026-12-01", "5"],
        ],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert rules(report) == [("blank", 2, "B"), ("blank", 3, "C"), ("blank", 4, "A")]


def test_each_repeat_lists_the_row_it_repeats(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [
            HEADERS,
            [MX, "A", "d", "1"],
            [US, "B", "d", "1"],
            [MX, "C", "d", "1"],
            [MX, "D", "d", "1"],
        ],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert rules(report) == [("duplicate_phone", 4, "A"), ("duplicate_phone", 5, "A")]
    assert all("row 2" in e.message for e in report.errors)


def test_no_contacts(tmp_path, bot):
    report = check_contact_file(
        write_tsv(tmp_path / "c.tsv", [HEADERS]), bot, max_message_chars=1600
    )
    assert [e.rule for e in report.errors] == ["no_contacts"]


def test_message_over_1600_characters(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [HEADERS, [MX, "A" * 1600, "2026-12-01", "1"], [US, "Bob", "2026-12-01", "1"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert rules(report) == [("message_too_long", 2, "B")]
    assert "1,600" in report.errors[0].message and "NAME" in report.errors[0].message


def test_utf16_unicode_text_from_excel(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv", [HEADERS, [MX, "Iñaki", "2026-12-01", "1500"]], encoding="utf-16"
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid
    assert report.contacts["NAME"].to_list() == ["Iñaki"]


def test_quotes_are_kept_as_written(tmp_path, bot):
    path = write_tsv(tmp_path / "c.tsv", [HEADERS, [MX, 'Ana "la jefa"', "2026-12-01", "1"]])
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid
    assert report.contacts["NAME"].to_list() == ['Ana "la jefa"']


def test_xlsx_dates_and_numbers_become_the_text_people_expect(tmp_path, bot):
    path = write_xlsx(
        tmp_path / "c.xlsx",
        [
            HEADERS,
            [MX, "Ana", dt.datetime(2026, 12, 1), 1500],
            [US, "Bob", dt.date(2027, 1, 15), 1500.5],
        ],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid, report.errors
    assert report.contacts["DUE_DATE"].to_list() == ["2026-12-01", "2027-01-15"]
    assert report.contacts["AMOUNT"].to_list() == ["1500", "1500.5"]
    assert "vence el 2026-12-01" in report.previews[0][1]


def test_xlsx_phone_stored_as_number_cell(tmp_path, bot):
    path = write_xlsx(tmp_path / "c.xlsx", [HEADERS, [525512345678, "Ana", "2026-12-01", "1"]])
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert rules(report) == [("phone_format", 2, "A")]
    assert "+525512345678" in report.errors[0].message
    assert "number" in report.errors[0].message.lower()


def test_xlsx_scientific_notation_cell(tmp_path, bot):
    book = Workbook()
    sheet = book.active
    sheet.append(HEADERS)
    sheet.append([525510000000, "Ana", "2026-12-01", "1"])
    sheet["A2"].number_format = "0.00E+00"
    book.save(tmp_path / "c.xlsx")
    report = check_contact_file(tmp_path / "c.xlsx", bot, max_message_chars=1600)
    assert rules(report) == [("phone_format", 2, "A")]
    assert "scientific" in report.errors[0].message.lower()


def test_all_failures_are_collected_in_one_pass(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [HEADERS, ["5255", "", "2026-12-01", "1"], [US, "Bob", " ", "1"], [US, "Eve", "d", ""]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert {e.rule for e in report.errors} == {"phone_format", "blank", "duplicate_phone"}
    assert len(report.errors) == 5


def test_every_valid_region_is_accepted_and_counted(tmp_path, bot):
    regions = ["MX", "US", "CA", "GB", "ES", "BR", "CO", "AR", "IN", "DE", "FR", "JP"]
    phones = [
        phonenumbers.format_number(
            phonenumbers.example_number_for_type(r, phonenumbers.PhoneNumberType.MOBILE),
            phonenumbers.PhoneNumberFormat.E164,
        )
        for r in regions
    ]
    path = write_tsv(tmp_path / "c.tsv", [HEADERS, *[[p, "A", "d", "1"] for p in phones]])
    report = check_contact_file(path, bot, max_message_chars=1600)
    assert report.valid, report.errors
    assert sorted(c.iso for c in report.countries) == sorted(regions)


def test_column_letters():
    assert [column_letter(i) for i in (0, 1, 25, 26, 27, 51, 52, 701, 702)] == [
        "A",
        "B",
        "Z",
        "AA",
        "AB",
        "AZ",
        "BA",
        "ZZ",
        "AAA",
    ]


def test_segments_gsm_and_ucs2(tmp_path, bot):
    path = write_tsv(
        tmp_path / "c.tsv",
        [HEADERS, [MX, "Ana", "2026-12-01", "1"], [US, "Zoë 😀", "2026-12-01", "1"]],
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    ask = next(s for s in report.segments if (s.step, s.field) == ("ask", "say"))
    # "¿" and "á" are not GSM-7 either: the fixed text alone makes the message UCS-2.
    assert ask.encoding == "UCS-2"
    assert (ask.min_segments, ask.max_segments, ask.total_segments) == (2, 2, 4)
    assert ask.opening
    thanks = next(s for s in report.segments if s.step == "thanks")
    assert thanks.encoding == "GSM-7/UCS-2"
    # A message without placeholders costs the same for everyone: its parts times the contacts.
    callback = next(s for s in report.segments if s.step == "callback")
    assert (callback.total_segments, callback.opening) == (2, False)


def test_headers_not_on_row_1(tmp_path, bot):
    book = Workbook()
    sheet = book.active
    sheet["A2"], sheet["B2"], sheet["C2"], sheet["D2"] = HEADERS
    sheet.append([MX, "Ana", "2026-12-01", "1"])
    book.save(tmp_path / "c.xlsx")
    report = check_contact_file(tmp_path / "c.xlsx", bot, max_message_chars=1600)
    assert [(e.rule, e.row) for e in report.errors] == [("header", 2)]
    assert "headers are on row 2" in report.errors[0].message
    assert "delete the rows above them" in report.errors[0].message


def test_empty_file_says_so(tmp_path, bot):
    (tmp_path / "c.tsv").write_text("\n\n", encoding="utf-8")
    report = check_contact_file(tmp_path / "c.tsv", bot, max_message_chars=1600)
    assert [(e.rule, e.row) for e in report.errors] == [("header", 1)]
    assert "The file is empty" in report.errors[0].message


def test_control_characters_in_cells_are_refused_but_a_line_break_is_kept(tmp_path, bot):
    path = tmp_path / "c.tsv"
    path.write_text(
        "\t".join(HEADERS) + f"\n{MX}\tAna\x1b[2J\t2026-12-01\t1\n{US}\tLuis\t2026-12-01\t1\x07\n",
        encoding="utf-8",
    )
    report = check_contact_file(path, bot, max_message_chars=1600)
    found = [(e.rule, e.row, e.column_letter) for e in report.errors]
    assert found == [("control_character", 2, "B"), ("control_character", 3, "D")]
    assert "U+001B (ESC) at character 4" in report.errors[0].message
    assert "U+0007 (BEL)" in report.errors[1].message


def test_pandera_loads_without_importing_pandas_even_where_it_is_installed(tmp_path):
    """pandera imports pandas whenever it can (0.7 s per validate): a pandas on the path must
    stay unimported, and stay importable afterwards."""
    bad = write_tsv(tmp_path / "bad.tsv", [HEADERS, ["5512345678", "", "x", "1"]])
    fake = tmp_path / "pandas"
    fake.mkdir()
    (fake / "__init__.py").write_text("import sys\nsys.stderr.write('PANDAS IMPORTED\\n')\n")
    script = (
        "import sys\n"
        "from schemas.chatbot import load_chatbot\n"
        "from tasks.validation import check_contact_file\n"
        "bot = load_chatbot('data/payment-reminder.yaml')\n"
        "check_contact_file('data/sample-contacts.tsv', bot, max_message_chars=1600)\n"
        f"check_contact_file({str(bad)!r}, bot, max_message_chars=1600)\n"  # errors too
        "assert 'pandas' not in sys.modules\n"
        "import pandas\n"  # still there for whoever wants it
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr.count("PANDAS IMPORTED") == 1  # only by the script's own import
