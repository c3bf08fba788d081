"""tasks.ingest on what real users' workbooks hold: several sheets, hidden ones, a title above the
headers, number formats, formula errors; written by xlsxwriter, openpyxl and LibreOffice Calc.

Expected values are what a person sees in Excel, written out by hand. The Calc tests need
LibreOffice (Debian package libreoffice-calc-nogui) and are skipped only when `soffice` is absent.
"""

from __future__ import annotations

import re
import zipfile
from datetime import date
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import xlsxwriter

from smartchat.errors import ContactFileError
from tasks import ingest
from tasks.ingest import NO_SAVED_RESULT, ContactSheet, read_contacts
from tests.filemakers import (
    Formatted,
    Formula,
    add_rows,
    calc_available,
    save_with_calc,
    write_tsv,
    write_workbook,
    write_xlsx,
)

NOVEMBER = [["CONTACT", "NAME"], ["+525500000001", "Old"], ["+525500000002", "Older"]]
DECEMBER = [["CONTACT", "NAME"], ["+525500001111", "Ana"]]

needs_calc = pytest.mark.skipif(not calc_available(), reason="LibreOffice (soffice) not installed")


def rows(sheet: ContactSheet) -> list[tuple[object, ...]]:
    return sheet.data.rows()


@pytest.fixture(scope="module")
def calc_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One LibreOffice user folder for the module: creating one takes seconds."""
    return tmp_path_factory.mktemp("libreoffice-profile")


# --- which sheet --------------------------------------------------------------------------------


def test_a_hidden_first_sheet_is_not_read(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Noviembre": NOVEMBER, "Diciembre": DECEMBER},
        hidden=("Noviembre",),
    )
    sheet = read_contacts(path)
    assert sheet.sheet_name == "Diciembre"
    assert rows(sheet) == [("+525500001111", "Ana", 2)]
    assert sheet.notices == [
        "Read sheet 'Diciembre'; sheet 'Noviembre' also holds rows (hidden) and was not read: "
        "use --sheet to choose."
    ]


def test_empty_visible_sheets_are_skipped(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Hoja1": [], "Formato": [], "Datos": DECEMBER},
        styled_blank=("Formato",),  # formatted cells, no value: still empty
    )
    sheet = read_contacts(path)
    assert sheet.sheet_name == "Datos"
    assert sheet.headers == ["CONTACT", "NAME"]
    assert rows(sheet) == [("+525500001111", "Ana", 2)]
    assert sheet.notices == []  # nothing else holds rows: nothing to choose between


def test_contacts_on_two_visible_sheets_reads_the_first_and_says_so(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Diciembre": DECEMBER, "Vacía": [], "Enero": NOVEMBER, "Viejo": NOVEMBER},
        hidden=("Viejo",),
    )
    sheet = read_contacts(path)
    assert sheet.sheet_name == "Diciembre"
    assert rows(sheet) == [("+525500001111", "Ana", 2)]
    assert sheet.notices == [
        "Read sheet 'Diciembre'; sheets 'Enero' and 'Viejo' (hidden) also hold rows and were "
        "not read: use --sheet to choose."
    ]


def test_very_hidden_sheets_are_never_read_by_default(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Listas": NOVEMBER, "Hoja1": []},
        very_hidden=("Listas",),
    )
    sheet = read_contacts(path)
    assert sheet.sheet_name == "Hoja1"
    assert sheet.headers == [] and sheet.data.height == 0
    assert sheet.notices == [
        "Sheet 'Hoja1' is empty; sheet 'Listas' holds rows (very hidden) and was not read: "
        "use --sheet to choose."
    ]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("Noviembre", "Noviembre"),  # a hidden sheet, chosen by name
        ("noviembre ", None),  # not a name (trailing space), not a number
        ("DICIEMBRE", "Diciembre"),  # Excel's sheet names ignore case
        (1, "Diciembre"),  # the first tab Excel shows: hidden sheets don't count
        (2, "Enero"),
        ("2", "Enero"),  # a command line's text
        ("2026", "2026"),  # a sheet's name wins over a number
        (4, None),
        (0, None),
    ],
)
def test_sheet_chosen_by_name_or_number(
    tmp_path: Path, choice: str | int, expected: str | None
) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Noviembre": NOVEMBER, "Diciembre": DECEMBER, "Enero": [["CONTACT"]], "2026": []},
        hidden=("Noviembre",),
    )
    if expected is None:
        with pytest.raises(ContactFileError) as caught:
            read_contacts(path, sheet=choice)
        message = caught.value.message
        assert "no sheet" in message and "\n" not in message
        assert "1 'Diciembre', 2 'Enero', 3 '2026' and 'Noviembre' (hidden)" in message
        return
    sheet = read_contacts(path, sheet=choice)
    assert sheet.sheet_name == expected
    assert sheet.notices == []  # the person chose


def test_sheet_choice_reads_that_sheet_only(tmp_path: Path) -> None:
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Noviembre": NOVEMBER, "Diciembre": DECEMBER},
        hidden=("Noviembre",),
    )
    sheet = read_contacts(path, sheet="Noviembre")
    assert rows(sheet) == [("+525500000001", "Old", 2), ("+525500000002", "Older", 3)]


def test_a_tsv_has_no_sheets_to_choose(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "contacts.tsv", ["CONTACT", "+525500001111"])
    with pytest.raises(ContactFileError, match="no sheets to choose from"):
        read_contacts(path, sheet="Hoja1")


def test_sheet_choice_when_the_workbook_xml_cannot_be_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fallback parses every sheet with calamine: same choice, same notice.
    monkeypatch.setattr(ingest, "_sheets_from_xml", lambda archive: None)
    path = write_workbook(
        tmp_path / "contacts.xlsx",
        {"Noviembre": NOVEMBER, "Vacía": [], "Diciembre": DECEMBER},
        hidden=("Noviembre",),
    )
    sheet = read_contacts(path)
    assert sheet.sheet_name == "Diciembre"
    assert "'Noviembre' also holds rows (hidden)" in sheet.notices[0]


# --- headers below a title ----------------------------------------------------------------------


def write_titled(path: Path) -> Path:
    workbook = xlsxwriter.Workbook(str(path))
    add_titled_sheet(workbook, workbook.add_worksheet("Contactos"))
    workbook.close()
    return path


def add_titled_sheet(workbook: Any, sheet: Any) -> None:
    """A merged title over A1:C1, the headers on row 2, as people lay out a report."""
    title = workbook.add_format({"bold": True, "align": "center"})
    sheet.merge_range("A1:C1", "Contactos diciembre", title)
    sheet.write_row(1, 0, ["CONTACT", "NAME", "AMOUNT"])
    sheet.write_row(2, 0, ["+525500001111", "Ana", 1500])


def test_xlsx_headers_below_a_merged_title_are_found(tmp_path: Path) -> None:
    sheet = read_contacts(write_titled(tmp_path / "contacts.xlsx"))
    assert sheet.header_row_found == 2
    # Everything else is read as before: validation reports the one problem.
    assert sheet.headers == ["Contactos diciembre"]
    assert rows(sheet) == [("CONTACT", 2), ("+525500001111", 3)]


@pytest.mark.parametrize(
    ("lines", "found"),
    [
        (["Campaña diciembre", "", "  contact \tNAME", "+525500001111\tAna"], 3),
        (["CONTACT\tNAME", "+525500001111\tAna"], None),
        (["Contactos\tCONTACT", "CONTACT\tNAME"], None),  # row 1 has it: a header problem
        (["Sin encabezados", "+525500001111\tAna"], None),
        (["título"] * 20 + ["CONTACT\tNAME"], None),  # row 21: too far to be a title's
        (["título"] * 19 + ["CONTACT\tNAME"], 20),
    ],
)
def test_tsv_headers_below_a_title_are_found(
    tmp_path: Path, lines: list[str], found: int | None
) -> None:
    sheet = read_contacts(write_tsv(tmp_path / "contacts.tsv", lines))
    assert sheet.header_row_found == found


# --- number formats -----------------------------------------------------------------------------


def test_number_formats_give_the_number_a_person_sees(tmp_path: Path) -> None:
    formats = [
        ("0%", 0.15, "15%"),
        ("0%", 0.155, "16%"),  # half away from zero, as Excel rounds
        ("0.00%", 0.1234, "12.34%"),
        ("0.0%", -0.0525, "-5.3%"),
        ("0.00", 1500.5, "1500.50"),
        ("#,##0.00", 1500.5, "1500.50"),  # no thousands separator: see the module doc
        ("#,##0", 1500, "1500"),
        ("#,##0", 1500.6, "1501"),
        ("0", 2.5, "3"),
        ("0.0#", 1, "1.0"),
        ("0.0#", 1.256, "1.26"),
        ('"$"#,##0.00', 99.9, "99.90"),  # the template owns the symbol
        ("[$€-40A] #,##0.00", 12, "12.00"),
        ("#,##0.00;(#,##0.00)", -1500, "-1500.00"),
        ("#,##0,", 1500000, "1500"),  # a scaling comma: Excel shows thousands
        ("0.00", -0.001, "0.00"),
        ("General", 0.15, "0.15"),
        ("@", 15, "15"),
        ("0.00E+00", 1500, "1500"),  # scientific: as before
        ("# ?/?", 1.5, "1.5"),  # fractions: as before
    ]
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "VALUE", "CODE"],
            *[
                [f"+5255000011{i:02d}", Formatted(value, fmt), code]
                for i, (fmt, value, code) in enumerate(formats)
            ],
        ],
    )
    sheet = read_contacts(path)
    assert sheet.data["c1"].to_list() == [shown for _, _, shown in formats]


def test_number_formats_leave_text_dates_and_plain_numbers_alone(tmp_path: Path) -> None:
    workbook = xlsxwriter.Workbook(str(tmp_path / "contacts.xlsx"))
    sheet = workbook.add_worksheet()
    percent = workbook.add_format({"num_format": "0%"})
    day = workbook.add_format({"num_format": "dd/mm/yyyy"})
    sheet.write_row(0, 0, ["CONTACT", "RATE", "DUE", "PLAIN", "NOTE"])
    sheet.write_row(1, 0, ["+525500001111"])
    sheet.write_string(1, 1, "15", percent)  # a text cell keeps its text, whatever its style
    sheet.write_datetime(1, 2, date(2026, 12, 1), day)
    sheet.write_number(1, 3, 0.15)
    sheet.write_number(1, 5, 0.5, percent)  # right of the headers: an extra value, as shown
    workbook.close()
    sheet_read = read_contacts(tmp_path / "contacts.xlsx")
    assert rows(sheet_read) == [("+525500001111", "15", "2026-12-01", "0.15", None, 2)]
    assert sheet_read.extra_cells == [(2, 6, "50%")]


def test_builtin_percent_format_from_openpyxl(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["CONTACT", "DISCOUNT", "AMOUNT"])
    sheet.append(["+525500001111", 0.15, 1500.5])
    sheet["B2"].number_format = "0%"  # built-in format 9
    sheet["C2"].number_format = "#,##0.00"  # built-in format 4
    path = tmp_path / "contacts.xlsx"
    workbook.save(path)
    assert rows(read_contacts(path)) == [("+525500001111", "15%", "1500.50", 2)]


# --- formula errors -----------------------------------------------------------------------------


def test_formula_errors_are_listed_and_read_empty(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "TOTAL", "CHECK"],
            ["+525500001111", Formula("=1/0", "#DIV/0!"), Formula("=1+1", 2)],
            ["+525500002222", Formula("=NA()", "#N/A"), Formula('=1+"a"', "#VALUE!")],
            [None, None, Formula("=B9", "#REF!")],  # the only thing in its row: still a row
            ["+525500004444", "ok", "ok"],
        ],
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [
        ("+525500001111", None, "2", 2),
        ("+525500002222", None, None, 3),
        (None, None, None, 4),
        ("+525500004444", "ok", "ok", 5),
    ]
    assert sheet.error_cells == [
        (2, 2, "#DIV/0!"),
        (3, 2, "#N/A"),
        (3, 3, "#VALUE!"),
        (4, 3, "#REF!"),
    ]


def test_formulas_never_calculated_are_listed(tmp_path: Path) -> None:
    # openpyxl writes formulas without a result: Excel calculates them on opening, we can't.
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["CONTACT", "NAME", "TOTAL"])
    sheet.append(["+525500001111", "Ana", "=1+1"])
    sheet.append(["+525500002222", "Bo", 7])
    # A row of formulas only: calamine leaves it out of the sheet, the row is still listed.
    sheet.append(['="+52"&"5500003333"', '=UPPER("cy")', "=2+2"])
    path = tmp_path / "contacts.xlsx"
    workbook.save(path)
    sheet_read = read_contacts(path)
    assert rows(sheet_read) == [
        ("+525500001111", "Ana", None, 2),
        ("+525500002222", "Bo", "7", 3),
        (None, None, None, 4),
    ]
    assert sheet_read.error_cells == [
        (2, 3, NO_SAVED_RESULT),
        (4, 1, NO_SAVED_RESULT),
        (4, 2, NO_SAVED_RESULT),
        (4, 3, NO_SAVED_RESULT),
    ]


def test_a_formula_that_gives_empty_text_is_not_an_error(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [["CONTACT", "NOTE"], ["+525500001111", None], ["+525500002222", "x"]],
    )
    # Excel saves a formula whose result is "" with t="str" and an empty value.
    ingest_xml = _replace_in_sheet(
        path,
        b'<c r="A2" t="s"><v>2</v></c>',
        b'<c r="A2" t="s"><v>2</v></c><c r="B2" t="str"><f>IF(1,"","x")</f><v></v></c>',
    )
    sheet = read_contacts(ingest_xml)
    assert rows(sheet) == [("+525500001111", None, 2), ("+525500002222", "x", 3)]
    assert sheet.error_cells == []


def test_shared_formulas_never_calculated_are_listed(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [["CONTACT", "TOTAL"], ["+525500001111"], ["+525500002222"], ["+525500003333", 5]],
    )
    # One formula shared down B2:B3, as Excel writes a filled-down column, with no result saved.
    edited = _replace_in_sheet(
        path,
        b'<c r="A3" t="s"><v>3</v></c>',
        b'<c r="A3" t="s"><v>3</v></c><c r="B3"><f t="shared" si="0"/></c>',
    )
    edited = _replace_in_sheet(
        edited,
        b'<c r="A2" t="s"><v>2</v></c>',
        b'<c r="A2" t="s"><v>2</v></c><c r="B2"><f t="shared" ref="B2:B3" si="0">A2</f></c>',
    )
    sheet = read_contacts(edited)
    assert rows(sheet) == [
        ("+525500001111", None, 2),
        ("+525500002222", None, 3),
        ("+525500003333", "5", 4),
    ]
    assert sheet.error_cells == [(2, 2, NO_SAVED_RESULT), (3, 2, NO_SAVED_RESULT)]


def _replace_in_sheet(path: Path, old: bytes, new: bytes) -> Path:
    target = path.with_name(f"edited-{path.name}")
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as out:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                assert old in content
                content = content.replace(old, new)
            out.writestr(item, content)
    return target


def test_tsv_error_texts_are_formula_errors(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "contacts.tsv",
        [
            "CONTACT\tNAME\tTOTAL",
            "+525500001111\tAna\t#DIV/0!",
            "+525500002222\t#N/A\tErr:502",  # Calc's own codes
            "+525500003333\t#1 fan\tErr:5",  # not errors: text that starts alike
        ],
    )
    sheet = read_contacts(path)
    assert rows(sheet) == [
        ("+525500001111", "Ana", None, 2),
        ("+525500002222", None, None, 3),
        ("+525500003333", "#1 fan", "Err:5", 4),
    ]
    assert sheet.error_cells == [(2, 3, "#DIV/0!"), (3, 2, "#N/A"), (3, 3, "Err:502")]


# --- the same, as LibreOffice Calc saves a workbook ------------------------------------------


@pytest.fixture(scope="module")
def calc_saved(tmp_path_factory: pytest.TempPathFactory, calc_profile: Path) -> Path:
    """One workbook (hidden first sheet, formats, formula errors, a title) opened and saved by
    Calc: its .xlsx differs from Excel's (explicit t="n" and state="visible", its own format
    ids for "0%", <f aca="false">). One conversion for all the tests: each takes seconds."""
    if not calc_available():
        pytest.skip("LibreOffice (soffice) not installed")
    folder = tmp_path_factory.mktemp("calc-xlsx")
    workbook = xlsxwriter.Workbook(str(folder / "contacts.xlsx"))
    november = workbook.add_worksheet("Noviembre")
    december = workbook.add_worksheet("Diciembre")
    add_titled_sheet(workbook, workbook.add_worksheet("Titulado"))
    add_rows(workbook, november, NOVEMBER)
    add_rows(
        workbook,
        december,
        [
            ["CONTACT", "DISCOUNT", "AMOUNT", "TOTAL"],
            ["+525500001111", Formatted(0.15, "0%"), Formatted(1500.5, "#,##0.00"), 3],
            ["+525500002222", Formatted(0.2, "0.0%"), 12, Formula("=1/0", "#DIV/0!")],
        ],
    )
    december.activate()
    december.set_first_sheet()
    november.hide()
    workbook.close()
    return save_with_calc(folder / "contacts.xlsx", folder / "calc", "xlsx", calc_profile)


def test_calc_workbook_hidden_first_sheet(calc_saved: Path) -> None:
    sheet = read_contacts(calc_saved)
    assert sheet.sheet_name == "Diciembre"
    assert sheet.notices == [
        "Read sheet 'Diciembre'; sheets 'Noviembre' (hidden) and 'Titulado' also hold rows and "
        "were not read: use --sheet to choose."
    ]


def test_calc_workbook_formats_and_formula_errors(calc_saved: Path) -> None:
    sheet = read_contacts(calc_saved)
    assert rows(sheet) == [
        ("+525500001111", "15%", "1500.50", "3", 2),
        ("+525500002222", "20.0%", "12", None, 3),
    ]
    assert sheet.error_cells == [(3, 4, "#DIV/0!")]


def test_calc_workbook_title_above_the_headers(calc_saved: Path) -> None:
    sheet = read_contacts(calc_saved, sheet="Titulado")
    assert sheet.header_row_found == 2
    assert sheet.headers == ["Contactos diciembre"]


# --- tab-separated text saved by Calc -----------------------------------------------------------


@needs_calc
def test_tsv_saved_by_calc_reads_as_the_sheet(tmp_path: Path, calc_profile: Path) -> None:
    workbook = xlsxwriter.Workbook(str(tmp_path / "contacts.xlsx"))
    hidden = workbook.add_worksheet("Noviembre")
    sheet = workbook.add_worksheet("Diciembre")
    sheet.activate()
    sheet.set_first_sheet()
    hidden.hide()
    hidden.write_row(0, 0, ["CONTACT"])
    wrap = workbook.add_format({"text_wrap": True})
    percent = workbook.add_format({"num_format": "0%"})
    sheet.write_row(0, 0, ["CONTACT", "NAME", "ADDRESS", "NOTE", "DISCOUNT"])
    sheet.write_row(1, 0, ["+525500001111", 'Luis "El Jefe"', "Calle 1", '5" screen'])
    sheet.write_number(1, 4, 0.15, percent)
    sheet.write_row(2, 0, ["+525500002222", "Ana", "Calle 2\nDepto 3", "a\tb"], wrap)
    sheet.write_number(2, 4, 0.2, percent)
    sheet.write_row(3, 0, ["+525500003333", '"Bo"', "", " "])
    sheet.write_formula(3, 4, "=1/0", None, "#DIV/0!")
    sheet.write_row(4, 0, [" "])  # a trailing row of only a space
    workbook.close()
    tsv = save_with_calc(
        tmp_path / "contacts.xlsx",
        tmp_path / "calc",
        "csv:Text - txt - csv (StarCalc):9,34,76,1,,0,false,true,true,false,false,2",
        calc_profile,
    ).rename(tmp_path / "contacts.tsv")
    assert b'"Luis ""El Jefe"""' in tsv.read_bytes()  # what Calc writes: quoted, doubled quotes
    sheet_read = read_contacts(tsv)
    assert sheet_read.headers == ["CONTACT", "NAME", "ADDRESS", "NOTE", "DISCOUNT"]
    assert rows(sheet_read) == [
        ("+525500001111", 'Luis "El Jefe"', "Calle 1", '5" screen', "15%", 2),
        ("+525500002222", "Ana", "Calle 2\nDepto 3", "a\tb", "20%", 3),
        ("+525500003333", '"Bo"', None, " ", None, 4),
    ]
    assert sheet_read.error_cells == [(4, 5, "#DIV/0!")]
    assert sheet_read.extra_cells == []


# --- the sheet XML as other writers shape it ----------------------------------------------------


def test_prefixed_sheet_xml_as_the_open_xml_sdk_writes_it(tmp_path: Path) -> None:
    source = write_xlsx(
        tmp_path / "plain.xlsx",
        [
            ["CONTACT", "DISCOUNT", "TOTAL"],
            ["+525500001111", Formatted(0.15, "0%"), Formula("=1/0", "#DIV/0!")],
            ["+525500002222", None, "x"],
        ],
    )
    path = tmp_path / "contacts.xlsx"
    with zipfile.ZipFile(source) as plain, zipfile.ZipFile(path, "w") as prefixed:
        for item in plain.infolist():
            content = plain.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":  # <x:worksheet xmlns:x=...><x:c ...
                declaration, body = content.split(b"?>", 1)
                body = re.sub(rb"<(/?)(\w+)([ >/])", rb"<\1x:\2\3", body)
                content = declaration + b"?>" + body.replace(b'xmlns="', b'xmlns:x="', 1)
            prefixed.writestr(item, content)
    sheet = read_contacts(path)
    assert rows(sheet) == [("+525500001111", "15%", None, 2), ("+525500002222", None, "x", 3)]
    assert sheet.error_cells == [(2, 3, "#DIV/0!")]


def test_formats_and_errors_across_a_sheet_xml_of_several_megabytes(tmp_path: Path) -> None:
    # The sheet XML is read in 1 MB pieces: no cell may be lost where one piece ends.
    count = 15_000
    path = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            ["CONTACT", "NAME", "DISCOUNT", "TOTAL"],
            *(
                [
                    f"+5255{i:08d}",
                    f"Name {i}",
                    Formatted(i / 100, "0%"),
                    Formula("=1/0", "#DIV/0!") if i % 1000 == 0 else i,
                ]
                for i in range(count)
            ),
        ],
    )
    with zipfile.ZipFile(path) as archive:
        assert archive.getinfo("xl/worksheets/sheet1.xml").file_size > 1 << 20
    sheet = read_contacts(path)
    assert sheet.data["c2"].to_list() == [f"{i}%" for i in range(count)]
    assert sheet.error_cells == [(i + 2, 4, "#DIV/0!") for i in range(0, count, 1000)]
