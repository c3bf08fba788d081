"""tasks.ingest: real .tsv and .xlsx files in, every value as text at its spreadsheet position.

Expected values are written out by hand from what a person sees in Excel, never computed with
the code under test.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from datetime import date, datetime, time
from pathlib import Path

import openpyxl
import polars as pl
import pytest
from openpyxl.styles import Font, PatternFill

from smartchat.errors import ContactFileError
from tasks import ingest
from tasks.ingest import ContactSheet, read_contacts
from tests.filemakers import Formatted, Formula, write_ole2, write_tsv, write_xlsx

REPO = Path(__file__).resolve().parents[1]


def rows(sheet: ContactSheet) -> list[tuple[object, ...]]:
    return sheet.data.rows()


def assert_text_frame(sheet: ContactSheet) -> None:
    expected = [f"c{i}" for i in range(len(sheet.headers))] + ["row"]
    assert sheet.data.columns == expected
    assert sheet.data.dtypes == [pl.String] * len(sheet.headers) + [pl.Int64]


def read_error(path: Path) -> str:
    with pytest.raises(ContactFileError) as caught:
        read_contacts(path)
    message = caught.value.message
    # One sentence for a person, not a library's report.
    assert "Traceback" not in message and "calamine" not in message.lower()
    assert "\n" not in message
    return message


# --- TSV ----------------------------------------------------------------------------------------


def test_tsv_values_are_kept_exactly_as_written(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        [
            "CONTACT\tNAME\tCODE\tAMOUNT",
            '+525500001111\tJo "Jojo" Pérez\t0012\t1500.0',
            # A '"' that does not open a well-formed quoted field is literal, as before.
            '+525500002222\t"Ana\t 007 \t1e3',
            '+525500003333\t"Bo" Bo\t5" screen\t"',
        ],
    )
    sheet = read_contacts(path)
    assert sheet.file_format == "tsv"
    assert sheet.path == path
    assert sheet.headers == ["CONTACT", "NAME", "CODE", "AMOUNT"]
    assert_text_frame(sheet)
    assert rows(sheet) == [
        ("+525500001111", 'Jo "Jojo" Pérez', "0012", "1500.0", 2),
        ("+525500002222", '"Ana', " 007 ", "1e3", 3),
        ("+525500003333", '"Bo" Bo', '5" screen', '"', 4),
    ]
    assert sheet.sheet_name is None and sheet.notices == [] and sheet.error_cells == []
    assert sheet.header_row_found is None
    assert sheet.number_cells == {}
    assert sheet.extra_cells == []


def test_tsv_quoted_fields_as_excel_and_calc_save_them(tmp_path: Path) -> None:
    path = tmp_path / "contacts.tsv"
    path.write_bytes(
        b"CONTACT\tNAME\tADDRESS\tNOTE\r\n"
        b'+525500001111\t"Luis ""El Jefe"""\t"Calle 1\nDepto 2"\t"a\tb"\r\n'
        b'+525500002222\tAna\t""\t5" screen\r\n'
        b'+525500003333\t"Bo"\t"Line\r\nbreak"\t""""\r\n'
    )
    sheet = read_contacts(path)
    assert_text_frame(sheet)
    # Rows are numbered as the spreadsheet shows them: a cell spanning two lines is one row.
    assert rows(sheet) == [
        ("+525500001111", 'Luis "El Jefe"', "Calle 1\nDepto 2", "a\tb", 2),
        ("+525500002222", "Ana", None, '5" screen', 3),
        ("+525500003333", "Bo", "Line\nbreak", '"', 4),
    ]
    assert sheet.extra_cells == []


def test_tsv_quoted_headers_and_extra_values(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ['"CONTACT"\t"NAME"', '+525500001111\tAna\t"note\nsecond line"', '"+525500002222"'],
        encoding="utf-8-sig",
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NAME"]
    assert rows(sheet) == [("+525500001111", "Ana", 2), ("+525500002222", None, 3)]
    assert sheet.extra_cells == [(2, 3, "note\nsecond line")]


def test_tsv_quoted_fields_in_excel_unicode_text(tmp_path: Path) -> None:
    lines = ["CONTACT\tNAME", '+525500001111\t"María ""Mary""\nJosé"', "+525500002222\tBo"]
    path = write_tsv(tmp_path / "contacts.tsv", lines, encoding="utf-16", newline="\r\n")
    assert rows(read_contacts(path)) == [
        ("+525500001111", 'María "Mary"\nJosé', 2),
        ("+525500002222", "Bo", 3),  # row 3, although the quoted line break made it line 4
    ]


def test_tsv_an_unclosed_quote_stays_literal(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\tNAME", '+525500001111\t"Ana', "+525500002222\tBo", '+525500003333\t"Cy'],
    )
    assert rows(read_contacts(path)) == [
        ("+525500001111", '"Ana', 2),
        ("+525500002222", "Bo", 3),
        ("+525500003333", '"Cy', 4),
    ]


def test_tsv_a_quote_opens_only_a_field_it_closes(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\tNAME\tCODE", '+525500001111\t"x"\t"0', '+525500002222\t"1\t""""'],
    )
    assert rows(read_contacts(path)) == [
        ("+525500001111", "x", '"0', 2),
        ("+525500002222", '"1', '"', 3),  # '""""' is a quoted '"'
    ]


def test_tsv_old_mac_line_endings(tmp_path: Path) -> None:
    lines = ["CONTACT\tNAME", "+525500001111\tAna", "", '+525500002222\t"Bo\tB"']
    path = write_tsv(tmp_path / "contacts.tsv", lines, newline="\r")
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NAME"]
    assert rows(sheet) == [("+525500001111", "Ana", 2), ("+525500002222", "Bo\tB", 4)]


def test_tsv_whitespace_only_is_empty_outside_the_values(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        [
            "CONTACT\tNAME",
            "+525500001111\tAna\t ",  # a space right of the headers: not an extra value
            "\t\u00a0\t  ",  # a row of spaces (one no-break) looks empty: no row
            "+525500002222\t \t\tx",
            "\u3000\t\u2009",  # ideographic and thin spaces
            "Ñandú\t ",  # a letter beyond ASCII first: a value
            "   ",  # a trailing line of spaces
        ],
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [
        ("+525500001111", "Ana", 2),
        ("+525500002222", " ", 4),
        ("Ñandú", " ", 6),
    ]
    assert sheet.extra_cells == [(4, 4, "x")]


def test_tsv_accepts_a_str_path(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.tsv", ["CONTACT", "+525500001111"])
    assert rows(read_contacts(str(path))) == [("+525500001111", 2)]


@pytest.mark.parametrize(
    ("encoding", "newline"),
    [
        ("utf-8", "\n"),
        ("utf-8-sig", "\n"),  # UTF-8 with a BOM
        ("utf-8", "\r\n"),
        ("utf-16", "\r\n"),  # Excel's "Unicode Text": UTF-16LE with a BOM, CRLF
        ("utf-16-be", "\r\n"),  # big-endian; the BOM is added below
    ],
)
def test_tsv_encodings_and_line_endings(tmp_path: Path, encoding: str, newline: str) -> None:
    lines = ["CONTACT\tNOMBRE", "+525500001111\tMaría José", "+525500002222\tÑandú 日本"]
    path = write_tsv(tmp_path / "contacts.tsv", lines, encoding=encoding, newline=newline)
    if encoding == "utf-16-be":
        path.write_bytes(b"\xfe\xff" + path.read_bytes())
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NOMBRE"]  # no BOM glued to CONTACT
    assert rows(sheet) == [("+525500001111", "María José", 2), ("+525500002222", "Ñandú 日本", 3)]


def test_tsv_blank_lines_are_dropped_and_rows_keep_their_numbers(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\tNAME", "+525500001111\tAna", "", "\t", "+525500002222\tBo", "", ""],
        newline="\r\n",
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", "Ana", 2), ("+525500002222", "Bo", 5)]


def test_tsv_short_rows_get_nulls_and_whitespace_is_a_value(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\tNAME\tCITY", "+525500001111", "+525500002222\t\tMérida", " \t\tx", " \t\t"],
    )
    sheet = read_contacts(path)
    assert_text_frame(sheet)
    assert rows(sheet) == [
        ("+525500001111", None, None, 2),
        ("+525500002222", None, "Mérida", 3),
        (" ", None, "x", 4),  # a space is written: validation decides
        # row 5 holds only whitespace, which a person sees as an empty row: dropped
    ]


def test_tsv_values_right_of_the_last_header_are_extra_cells(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        [
            "CONTACT\tNAME",
            "+525500001111\tAna",
            "+525500002222\tBo\tnote",
            "+525500003333\tCy\t\tlate",
            "+525500004444\tDi\t\t",  # trailing tabs only: nothing written
        ],
        newline="\r\n",
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NAME"]
    assert_text_frame(sheet)
    assert rows(sheet) == [
        ("+525500001111", "Ana", 2),
        ("+525500002222", "Bo", 3),
        ("+525500003333", "Cy", 4),
        ("+525500004444", "Di", 5),
    ]
    assert sheet.extra_cells == [(3, 3, "note"), (4, 4, "late")]
    assert sheet.extra_cell_count == 2


def test_tsv_ragged_file_with_bom_and_crlf_loses_nothing(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\tNAME", "", "+525500001111\tAna\tx", "+525500002222", '"q\t 0012 '],
        encoding="utf-8-sig",
        newline="\r\n",
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NAME"]
    assert rows(sheet) == [
        ("+525500001111", "Ana", 3),
        ("+525500002222", None, 4),
        ('"q', " 0012 ", 5),
    ]
    assert sheet.extra_cells == [(3, 3, "x")]


def test_tsv_a_row_with_only_extra_values_is_kept(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.tsv", ["CONTACT", "+525500001111", "\tstray"])
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", 2), (None, 3)]
    assert sheet.extra_cells == [(3, 2, "stray")]


def test_tsv_header_is_row_one_as_written(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        ["CONTACT\t\t NAME \tNAME\tNAME\t", "+525500001111\ta\tb\tc\td"],
    )
    sheet = read_contacts(path)
    # Empty header kept as '', spaces and duplicates kept; the trailing tab is not a header.
    assert sheet.headers == ["CONTACT", "", " NAME ", "NAME", "NAME"]
    assert rows(sheet) == [("+525500001111", "a", "b", "c", "d", 2)]


def test_tsv_with_an_empty_first_line_has_no_headers(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.tsv", ["", "CONTACT\tNAME", "+525500001111\tAna"])
    sheet = read_contacts(path)
    assert sheet.headers == []
    assert sheet.data.columns == ["row"]
    assert sheet.data["row"].to_list() == [2, 3]
    assert sheet.extra_cells == [
        (2, 1, "CONTACT"),
        (2, 2, "NAME"),
        (3, 1, "+525500001111"),
        (3, 2, "Ana"),
    ]


@pytest.mark.parametrize("content", [b"\n\n\n", b"\xef\xbb\xbf", b"\t\t\r\n"])
def test_tsv_without_any_value_has_no_headers_and_no_rows(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "contacts.tsv"
    path.write_bytes(content)
    sheet = read_contacts(path)
    assert sheet.headers == []
    assert sheet.data.height == 0
    assert sheet.data.columns == ["row"]


def test_extra_cells_are_capped_but_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "MAX_EXTRA_CELLS", 3)
    lines = ["CONTACT"] + [f"+5255000011{i:02d}\tx{i}\ty{i}" for i in range(4)]
    sheet = read_contacts(write_tsv(tmp_path / "contacts.tsv", lines))
    assert sheet.extra_cells == [(2, 2, "x0"), (2, 3, "y0"), (3, 2, "x1")]
    assert sheet.extra_cell_count == 8


def test_tsv_in_windows_1252_is_rejected_with_the_line(tmp_path: Path) -> None:
    lines = ["CONTACT\tNAME", "+525500001111\tAna", "+525500002222\tJosé"]
    path = write_tsv(tmp_path / "contacts.tsv", lines, encoding="cp1252")
    message = read_error(path)
    assert "not UTF-8" in message and "line 3" in message
    assert "UTF-8 TSV or .xlsx" in message


def test_tsv_with_a_nul_byte_anywhere_is_rejected(tmp_path: Path) -> None:
    lines = ["CONTACT\tNAME", *(f"+5255{i:08d}\tName" for i in range(5000)), "+1\tA\x00B"]
    path = write_tsv(tmp_path / "contacts.tsv", lines)
    assert path.stat().st_size > 64 * 1024  # past the first bytes looked at for the format
    assert "NUL bytes" in read_error(path)


def test_tsv_in_utf16_without_bom_is_rejected(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.tsv", ["CONTACT", "+525500001111"], encoding="utf-16-le")
    message = read_error(path)
    assert "not UTF-8" in message and "UTF-8 TSV or .xlsx" in message


def test_tsv_with_a_bom_but_broken_utf16_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "contacts.tsv"
    path.write_bytes(b"\xff\xfe" + "CONTACT\n".encode("utf-16-le") + b"\x00\xd8\x41")
    message = read_error(path)
    assert "UTF-16" in message and "UTF-8 TSV or .xlsx" in message


def test_workbook_named_tsv_is_rejected(tmp_path: Path) -> None:
    workbook = write_xlsx(tmp_path / "contacts.xlsx", [["CONTACT"], ["+525500001111"]])
    path = tmp_path / "contacts.tsv"
    path.write_bytes(workbook.read_bytes())
    assert "rename it to .xlsx" in read_error(path)


# --- xlsx: cell values --------------------------------------------------------------------------


def test_xlsx_cells_read_as_a_person_sees_them(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "DUE_DATE", "AMOUNT", "PAID", "CODE", "NAME", "AT"],
            ["+525500001111", date(2026, 12, 1), 1500, True, "0012", 'Jo "Jojo"', time(14, 30)],
            [
                "+525500002222",
                datetime(2026, 12, 1, 14, 30),
                1500.5,
                False,
                "007",
                " Ana ",
                time(9, 5, 7),
            ],
            ["+525500003333", datetime(2026, 12, 1, 14, 30, 5), 0.1 + 0.2, None, "x", "", None],
            ["+525500004444", datetime(2026, 1, 31, 0, 0), -12, None, None, "NA", None],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.file_format == "xlsx"
    assert sheet.headers == ["CONTACT", "DUE_DATE", "AMOUNT", "PAID", "CODE", "NAME", "AT"]
    assert_text_frame(sheet)
    assert rows(sheet) == [
        ("+525500001111", "2026-12-01", "1500", "TRUE", "0012", 'Jo "Jojo"', "14:30", 2),
        ("+525500002222", "2026-12-01 14:30", "1500.5", "FALSE", "007", " Ana ", "09:05:07", 3),
        ("+525500003333", "2026-12-01 14:30:05", "0.3", None, "x", None, None, 4),
        ("+525500004444", "2026-01-31", "-12", None, None, "NA", None, 5),
    ]
    assert sheet.number_cells == {}


def test_xlsx_mixed_columns(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "VALUE"],
            ["+525500001111", 1500],
            ["+525500002222", "mil quinientos"],
            ["+525500003333", date(2026, 12, 1)],
            ["+525500004444", 2.25],
            ["+525500005555", True],
            ["+525500006666", "2026-12-01"],
        ],
    )
    values = read_contacts(path).data["c1"].to_list()
    assert values == ["1500", "mil quinientos", "2026-12-01", "2.25", "TRUE", "2026-12-01"]


def test_xlsx_formula_cells_give_their_result_and_errors_are_empty(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "TOTAL", "CHECK"],
            ["+525500001111", Formula("=1000+500", 1500), Formula("=NA()", "#N/A")],
        ],
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", "1500", None, 2)]
    assert sheet.error_cells == [(2, 3, "#N/A")]  # for validation to explain the empty cell


def test_xlsx_phone_stored_as_number_is_recorded(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "NAME"],
            ["+525500001111", "text with +"],
            [525512345678, "number cell"],
            ["525512345679", "text without +"],
            [None, "no phone"],
            [15550001111.0, "number cell"],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.data["c0"].to_list() == [
        "+525500001111",
        "525512345678",
        "525512345679",
        None,
        "15550001111",
    ]
    assert sheet.number_cells == {3: "number", 6: "number"}


def test_xlsx_phone_in_scientific_format_or_with_lost_digits(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "NAME"],
            [Formatted(526000000000, "0.00E+00"), "typed 5.26E+11"],
            [525512345678, "plain number"],
            [Formatted(525512345678, "##0.0E+0"), "engineering format"],
            [5255123456789012345, "more digits than Excel keeps"],
            [Formatted(525512345678, '0 "E+" 0'), "quoted E+ is not scientific"],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.number_cells == {
        2: "scientific",
        3: "number",
        4: "scientific",
        5: "scientific",
        6: "number",
    }
    assert sheet.data["c0"][0] == "526000000000"


def test_xlsx_scientific_builtin_format_from_openpyxl(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["CONTACT", "NAME"])
    sheet.append([525512345678, "Ana"])
    sheet.append([525512345679, "Bo"])
    sheet["A2"].number_format = "0.00E+00"  # Excel's built-in format 11
    path = tmp_path / "contacts.xlsx"
    workbook.save(path)
    assert read_contacts(path).number_cells == {2: "scientific", 3: "number"}


def test_xlsx_numbers_outside_contact_are_not_number_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx", [["CONTACT", "AMOUNT"], ["+525500001111", 525512345678]]
    )
    sheet = read_contacts(path)
    assert sheet.number_cells == {}
    assert rows(sheet) == [("+525500001111", "525512345678", 2)]


# --- xlsx: rows, columns, headers ---------------------------------------------------------------


def test_xlsx_formatted_empty_rows_are_ignored(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [["CONTACT", "NAME"], ["+525500001111", "Ana"], [], ["+525500002222", "Bo"]],
        styled_blank_rows=[2, 4, 5, 6, 50, 999],
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", "Ana", 2), ("+525500002222", "Bo", 4)]
    assert sheet.extra_cells == []


def test_xlsx_formatted_empty_rows_from_openpyxl_are_ignored(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["CONTACT", "NAME"])
    sheet.append(["+525500001111", "Ana"])
    fill = PatternFill("solid", start_color="FFFF00")
    for row in range(3, 40):
        for column in range(1, 8):
            cell = sheet.cell(row=row, column=column)
            cell.font, cell.fill = Font(bold=True), fill
    path = tmp_path / "contacts.xlsx"
    workbook.save(path)
    result = read_contacts(path)
    assert result.headers == ["CONTACT", "NAME"]
    assert rows(result) == [("+525500001111", "Ana", 2)]
    assert result.extra_cells == []


def test_xlsx_header_is_row_one_as_written(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", None, " NAME ", "NAME", "NAME", ""],
            ["+525500001111", "a", "b", "c", "d"],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "", " NAME ", "NAME", "NAME"]
    assert rows(sheet) == [("+525500001111", "a", "b", "c", "d", 2)]


def test_xlsx_values_right_of_the_last_header_are_extra_cells(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "NAME"],
            ["+525500001111", "Ana", None, "note"],
            ["+525500002222", "Bo"],
            [None, None, date(2026, 12, 1)],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["CONTACT", "NAME"]
    assert rows(sheet) == [("+525500001111", "Ana", 2), ("+525500002222", "Bo", 3), (None, None, 4)]
    assert sheet.extra_cells == [(2, 4, "note"), (4, 3, "2026-12-01")]


def test_xlsx_positions_stay_true_when_column_a_and_row_1_are_empty(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [["CONTACT", "NAME"], [525500001111, "Ana"]],
        first_row=1,
        first_column=1,
    )
    sheet = read_contacts(path)
    assert sheet.headers == []
    assert sheet.extra_cells == [
        (2, 2, "CONTACT"),
        (2, 3, "NAME"),
        (3, 2, "525500001111"),
        (3, 3, "Ana"),
    ]
    assert sheet.number_cells == {}  # column A (CONTACT's place) is empty


def test_xlsx_header_starting_in_column_b(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx", [["CONTACT", "NAME"], ["+525500001111", "Ana"]], first_column=1
    )
    sheet = read_contacts(path)
    assert sheet.headers == ["", "CONTACT", "NAME"]
    assert rows(sheet) == [(None, "+525500001111", "Ana", 2)]


def test_xlsx_reads_the_first_sheet_only(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [["CONTACT"], ["+525500001111"]],
        more_sheets={"Other": [["CONTACT"], ["+15550001111"], ["+15550002222"]]},
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", 2)]
    assert sheet.sheet_name == "Contacts"
    assert sheet.notices == [  # more in tests/test_ingest_sheets.py
        "Read sheet 'Contacts'; sheet 'Other' also holds rows and was not read: "
        "use --sheet to choose."
    ]


@pytest.mark.parametrize("styled", [False, True])
def test_xlsx_empty_first_sheet_has_no_headers(tmp_path: Path, styled: bool) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx", [], styled_blank_rows=[0, 1, 2] if styled else None
    )
    sheet = read_contacts(path)
    assert sheet.headers == []
    assert sheet.data.height == 0
    assert sheet.data.columns == ["row"]


# --- unreadable files ---------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = read_error(tmp_path / "nope.xlsx")
    assert "not found" in message and "nope.xlsx" in message


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "contacts.xlsx"
    folder.mkdir()
    assert "folder" in read_error(folder)


@pytest.mark.parametrize("name", ["contacts.tsv", "contacts.xlsx"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"")
    assert "empty" in read_error(path)


@pytest.mark.parametrize(
    ("name", "key_words"),
    [
        ("contacts.csv", [".csv", ".xlsx", ".tsv"]),
        ("contacts.xls", ["97-2003", "save it as .xlsx"]),
        ("contacts.txt", ["rename it to .tsv"]),
        ("contacts.ods", ["'.ods'", ".xlsx"]),
        ("contacts", ["no extension", ".xlsx"]),
    ],
)
def test_unsupported_extension(tmp_path: Path, name: str, key_words: list[str]) -> None:
    path = write_tsv(tmp_path / name, ["CONTACT", "+525500001111"])
    message = read_error(path)
    for words in key_words:
        assert words in message


def test_text_file_renamed_xlsx(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.xlsx", ["CONTACT,NAME", "+525500001111,Ana"])
    assert "not a real .xlsx file" in read_error(path)


def test_old_xls_renamed_xlsx(tmp_path: Path) -> None:
    path = write_ole2(tmp_path / "contacts.xlsx", ["Workbook", "\x05SummaryInformation"])
    message = read_error(path)
    assert "97-2003" in message and "save it as .xlsx" in message


def test_password_protected_xlsx(tmp_path: Path) -> None:
    path = write_ole2(
        tmp_path / "contacts.xlsx", ["EncryptionInfo", "EncryptedPackage", "\x06DataSpaces"]
    )
    message = read_error(path)
    assert "password-protected" in message and "remove the password" in message


def test_corrupt_xlsx(tmp_path: Path) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", [["CONTACT"], ["+525500001111"]]).read_bytes()
    path = tmp_path / "contacts.xlsx"
    path.write_bytes(good[: len(good) // 2])
    message = read_error(path)
    assert "damaged" in message and "save it again as .xlsx" in message


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "contacts.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("contacts.csv", "CONTACT\n+525500001111\n")
    assert "damaged" in read_error(path)


def test_workbook_without_sheets(tmp_path: Path) -> None:
    good = write_xlsx(tmp_path / "good.xlsx", [["CONTACT"], ["+525500001111"]])
    path = tmp_path / "contacts.xlsx"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(path, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/workbook.xml":
                start, end = content.index(b"<sheets>"), content.index(b"</sheets>") + 9
                content = content[:start] + b"<sheets/>" + content[end:]
            target.writestr(item, content)
    assert "no worksheets" in read_error(path)


# --- cost ---------------------------------------------------------------------------------------


def test_importing_the_reader_loads_no_heavy_library() -> None:
    heavy = "('prefect', 'polars', 'fastexcel', 'openpyxl')"
    code = f"import sys, tasks.ingest; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
