"""The contact commands, driven in-process through Typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from typer.testing import CliRunner

from smartchat.cli import app

ROOT = Path(__file__).resolve().parents[1]
BOT = str(ROOT / "data" / "payment-reminder.yaml")
SAMPLE = str(ROOT / "data" / "sample-contacts.tsv")
HEADERS = ["CONTACT", "NAME", "DUE_DATE", "AMOUNT"]

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, list(args))


def bad_file(tmp_path: Path) -> Path:
    rows = [
        HEADERS,
        ["+525512345678", "Ana", "2026-12-01", "1"],
        ["52 55 1234 5679", "", "2026-12-01", "1"],
        ["+525512345678", "Eve", "d", "2"],
    ]
    path = tmp_path / "bad.tsv"
    path.write_text("\n".join("\t".join(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_every_command_has_help():
    result = invoke("--help")
    assert result.exit_code == 0
    for command in ("validate", "template", "country"):
        sub = invoke(command, "--help")
        assert sub.exit_code == 0, sub.output
        assert "Usage" in sub.output


def test_validate_sample_ok():
    result = invoke("validate", SAMPLE, "--chatbot", BOT)
    assert result.exit_code == 0, result.output
    assert "12 contacts ready" in result.output
    assert "Mexico" in result.output and "+52" in result.output
    assert "Hola Ana" in result.output


def test_validate_invalid_file_exit_1_with_rows(tmp_path):
    result = invoke("validate", str(bad_file(tmp_path)), "--chatbot", BOT)
    assert result.exit_code == 1
    assert "3 problems" in result.output
    assert "+525512345679" in result.output  # the suggested fix for row 3
    assert "row 2" in result.output  # the duplicate names the row it repeats


def test_validate_json_lists_every_error(tmp_path):
    result = invoke("validate", str(bad_file(tmp_path)), "--chatbot", BOT, "--json")
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["valid"] is False and payload["contacts"] == 3
    errors = {(e["rule"], e["row"], e["column_letter"]) for e in payload["errors"]}
    assert errors == {("phone_format", 3, "A"), ("blank", 3, "B"), ("duplicate_phone", 4, "A")}
    assert set(payload["errors"][0]) >= {
        "row",
        "column",
        "column_letter",
        "value",
        "rule",
        "message",
    }


def test_validate_json_on_success(tmp_path):
    result = invoke("validate", SAMPLE, "--chatbot", BOT, "--json")
    payload = json.loads(result.stdout)
    assert result.exit_code == 0 and payload["valid"] and payload["errors"] == []
    assert sum(c["contacts"] for c in payload["countries"]) == 12


def test_report_highlights_failing_cells(tmp_path):
    out = tmp_path / "errors.xlsx"
    result = invoke("validate", str(bad_file(tmp_path)), "--chatbot", BOT, "--report", str(out))
    assert result.exit_code == 1
    book = load_workbook(out)
    sheet = book["Contacts"]
    assert [c.value for c in sheet[1]] == HEADERS
    assert "+525512345679" in sheet["A3"].comment.text
    assert sheet["B3"].comment is not None and sheet["A2"].comment is None
    assert "row 2" in sheet["A4"].comment.text
    assert sheet["A3"].fill.fgColor.rgb.endswith("C7CE")
    assert book["Problems"].max_row == 4


@pytest.mark.parametrize(
    ("name", "content", "fragment"),
    [
        ("missing.tsv", None, "missing.tsv"),
        ("renamed.xlsx", b"CONTACT,NAME\n+525512345678,Ana\n", "not a real .xlsx"),
        ("old.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\0" * 100, ".xlsx"),
    ],
)
def test_unreadable_files_exit_2_without_traceback(tmp_path, name, content, fragment):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    result = invoke("validate", str(path), "--chatbot", BOT)
    assert result.exit_code == 2, result.output
    assert fragment in result.output
    assert "Traceback" not in result.output


def test_usage_error_exit_2():
    assert invoke("validate", SAMPLE).exit_code == 2  # --chatbot missing


def test_bad_chatbot_exit_1(tmp_path):
    bot = tmp_path / "bot.yaml"
    bot.write_text(Path(BOT).read_text().replace("goto: thanks", "goto: nowhere"))
    result = invoke("validate", SAMPLE, "--chatbot", str(bot))
    assert result.exit_code == 1
    assert "'nowhere' is not a step" in result.output


def test_template_round_trip(tmp_path):
    out = tmp_path / "contacts.xlsx"
    result = invoke("template", "--chatbot", BOT, "-o", str(out))
    assert result.exit_code == 0, result.output
    sheet = load_workbook(out).active
    assert [c.value for c in sheet[1]] == HEADERS
    assert sheet["A1"].number_format == "@"
    # A user fills the template in: it then validates.
    book = load_workbook(out)
    book.active.append(["+525512345678", "Ana", "2026-12-01", "1500"])
    book.save(out)
    assert invoke("validate", str(out), "--chatbot", BOT).exit_code == 0


@pytest.mark.parametrize("query", ["Mexico", "méxico", "MX", "+52"])
def test_country_lookup(query):
    result = invoke("country", query, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload[0]["iso"] == "MX" and payload[0]["calling_code"] == 52
    assert payload[0]["name_es"] == "México"


def test_country_shared_code_lists_all():
    payload = json.loads(invoke("country", "+1", "--json").stdout)
    isos = {c["iso"] for c in payload}
    assert {"US", "CA", "PR", "JM"} <= isos and all(c["calling_code"] == 1 for c in payload)


def test_country_unknown_exit_1():
    result = invoke("country", "Atlantis")
    assert result.exit_code == 1


def test_quick_commands_never_import_prefect(tmp_path):
    """`smartchat validate` must not pay Prefect's start-up (or start its server)."""
    code = (
        "import sys\n"
        "from smartchat.cli import main\n"
        f"sys.argv = ['smartchat', 'validate', {SAMPLE!r}, '--chatbot', {BOT!r}, '--json']\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 0, done.stderr


def test_template_xlsx_from_openpyxl_written_file_with_numbers(tmp_path):
    """A real workbook typed the way people do: numbers as numbers, dates as dates."""
    import datetime as dt

    book = Workbook()
    book.active.append(HEADERS)
    book.active.append(["+525512345678", "Ana", dt.date(2026, 12, 1), 1500])
    book.save(tmp_path / "c.xlsx")
    result = invoke("validate", str(tmp_path / "c.xlsx"), "--chatbot", BOT)
    assert result.exit_code == 0, result.output
    assert "1500 vence el 2026-12-01" in result.output


def test_report_keeps_rows_in_place_and_writes_values_as_inert_text(tmp_path):
    """Blank lines don't shift rows; formulas stay text; control characters don't crash it."""
    lines = [
        "\t".join(HEADERS),
        "\t".join(["+525512345678", '=HYPERLINK("http://evil","x")', "2026-12-01", "1"]),
        "",
        "",
        "\t".join(["5255", "A\x01B", "2026-12-01", "1"]),
    ]
    path = tmp_path / "c.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "errors.xlsx"
    result = invoke("validate", str(path), "--chatbot", BOT, "--report", str(out))
    assert result.exit_code == 1, result.output
    sheet = load_workbook(out)["Contacts"]
    assert sheet["A5"].value == "5255" and sheet["A5"].comment is not None  # row 5, as in the file
    assert sheet["B2"].data_type == "s" and sheet["B2"].value.startswith("=HYPERLINK")
    assert sheet["B5"].value == "A\\x01B"


@pytest.mark.parametrize("query", ["+", " ", ""])
def test_country_without_a_query_is_a_usage_error(query):
    result = invoke("country", query)
    assert result.exit_code == 2 and "calling code" in result.output


def test_template_never_overwrites_without_force(tmp_path: Path):
    out = tmp_path / "contacts.xlsx"
    out.write_bytes(b"the user's filled-in workbook")
    refused = runner.invoke(app, ["template", "-c", str(BOT), "-o", str(out)])
    assert refused.exit_code == 2
    assert "already exists; nothing was written" in " ".join(refused.output.split())
    assert "--force" in refused.output
    assert out.read_bytes() == b"the user's filled-in workbook"
    forced = runner.invoke(app, ["template", "-c", str(BOT), "-o", str(out), "--force"])
    assert forced.exit_code == 0 and out.read_bytes()[:2] == b"PK"


def test_a_report_onto_the_contact_file_is_refused_before_anything_is_read(tmp_path: Path):
    contacts = tmp_path / "c.xlsx"
    contacts.write_bytes(b"not even read")
    result = runner.invoke(
        app, ["validate", str(contacts), "-c", str(BOT), "--report", str(tmp_path / "." / "c.xlsx")]
    )
    assert result.exit_code == 2
    assert "would overwrite the contact file" in " ".join(result.output.split())
    assert contacts.read_bytes() == b"not even read"


SHEET_HEADERS = ["CONTACT", "NAME", "DUE_DATE", "AMOUNT"]


def test_the_visible_sheet_is_read_others_with_rows_are_named_and_sheet_chooses(tmp_path: Path):
    """Last month's contacts on a hidden first sheet must never be the ones validated."""
    from tests.filemakers import write_workbook

    book = write_workbook(
        tmp_path / "c.xlsx",
        {
            "Noviembre": [SHEET_HEADERS, ["+525512345678", "Old", "2026-11-01", "1"]],
            "Diciembre": [
                SHEET_HEADERS,
                ["+525512345679", "Ana", "2026-12-01", "2"],
                ["+525512345680", "Luis", "2026-12-01", "3"],
            ],
        },
        hidden=("Noviembre",),
    )
    default = runner.invoke(app, ["validate", str(book), "-c", BOT, "--json"])
    assert default.exit_code == 0, default.output
    report = json.loads(default.stdout)
    assert (report["sheet"], report["contacts"]) == ("Diciembre", 2)
    assert any("Noviembre" in n and "--sheet" in n for n in report["notices"])
    chosen = runner.invoke(app, ["validate", str(book), "-c", BOT, "--sheet", "Noviembre"])
    assert chosen.exit_code == 0 and "1 contact ready" in " ".join(chosen.output.split())
    unknown = runner.invoke(app, ["validate", str(book), "-c", BOT, "--sheet", "Enero"])
    assert unknown.exit_code == 2 and "Diciembre" in unknown.output


def test_a_title_row_above_the_headers_is_one_finding(tmp_path: Path):
    from tests.filemakers import write_workbook

    book = write_workbook(
        tmp_path / "c.xlsx",
        {"Hoja1": [["Campaña de diciembre"], SHEET_HEADERS, ["+525512345679", "Ana", "x", "2"]]},
    )
    result = runner.invoke(app, ["validate", str(book), "-c", BOT, "--json"])
    errors = json.loads(result.stdout)["errors"]
    assert result.exit_code == 1
    assert [(e["rule"], e["row"]) for e in errors] == [("header", 2)]
    assert "headers are on row 2" in errors[0]["message"]
    assert "delete the rows above them" in errors[0]["message"]


def test_formula_errors_are_named_not_reported_as_empty(tmp_path: Path):
    import xlsxwriter

    path = tmp_path / "c.xlsx"
    book = xlsxwriter.Workbook(str(path))
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, SHEET_HEADERS)
    sheet.write_row(1, 0, ["+525512345679", "Ana", "2026-12-01"])
    sheet.write_formula(1, 3, "=1/0", None, "#DIV/0!")
    book.close()
    result = runner.invoke(app, ["validate", str(path), "-c", BOT, "--json"])
    errors = json.loads(result.stdout)["errors"]
    assert [(e["rule"], e["row"], e["column_letter"]) for e in errors] == [
        ("formula_error", 2, "D")
    ]
    assert "gives #DIV/0!" in errors[0]["message"]
