"""The validation report and the template: real files in, real workbooks out (read back with
openpyxl, and with calamine as SmartChat reads), and nothing lost or half-written on failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import fastexcel
import pytest
from openpyxl import Workbook, load_workbook

from schemas.chatbot import load_chatbot
from smartchat.errors import OutputFileError
from smartchat.settings import ValidationSettings
from tasks import error_report
from tasks.error_report import write_error_report
from tasks.ingest import ContactSheet, read_contacts
from tasks.safe_write import atomic_output
from tasks.template import write_template
from tasks.validation import ValidationReport, validate_sheet
from tests.filemakers import write_tsv, write_xlsx

ROOT = Path(__file__).resolve().parents[1]
BOT_YAML = ROOT / "data" / "payment-reminder.yaml"
BOT = load_chatbot(BOT_YAML)
HEADERS = ["CONTACT", "NAME", "DUE_DATE", "AMOUNT"]
RED = "FFFFC7CE"


def validated(path: Path) -> tuple[ContactSheet, ValidationReport]:
    sheet = read_contacts(path)
    report = validate_sheet(sheet, BOT, max_message_chars=ValidationSettings().max_message_chars)
    return sheet, report


def report_for(path: Path, out: Path) -> tuple[ValidationReport, Workbook]:
    sheet, report = validated(path)
    assert write_error_report(sheet, report, out) == out
    return report, load_workbook(out)


def failing_rows(n: int) -> list[str]:
    """A TSV's lines: n contacts, each with one error (a phone without + or an empty NAME)."""
    lines = ["\t".join(HEADERS)]
    for i in range(n):
        phone = f"52551{i:07d}" if i % 2 else f"+52551{i:07d}"
        lines.append("\t".join([phone, "" if i % 2 == 0 else "Ana", "2026-12-01", "1500"]))
    return lines


def entries(folder: Path) -> list[str]:
    """Everything in `folder`, hidden entries too: a leftover temp file or folder shows here."""
    return sorted(os.listdir(folder))


# --- 1. the template never overwrites a file by accident ------------------------------------------


def test_template_refuses_an_existing_file_and_leaves_it_as_it_was(tmp_path):
    out = tmp_path / "contacts.xlsx"
    book = Workbook()
    book.active.append(HEADERS)
    book.active.append(["+525512345678", "Ana", "2026-12-01", "1500"])  # someone's work
    book.save(out)
    before = out.read_bytes()

    with pytest.raises(OutputFileError) as caught:
        write_template(BOT, out)

    assert str(caught.value) == f"{out} already exists; nothing was written."
    assert caught.value.path == out
    assert out.read_bytes() == before
    assert entries(tmp_path) == ["contacts.xlsx"]


def test_template_overwrites_on_purpose_and_is_a_good_template(tmp_path):
    out = tmp_path / "contacts.xlsx"
    out.write_bytes(b"an old template")

    assert write_template(BOT, out, overwrite=True) == out

    assert entries(tmp_path) == ["contacts.xlsx"]
    sheet = load_workbook(out)["Contacts"]
    assert [c.value for c in sheet[1]] == HEADERS
    assert all(c.font.b and c.number_format == "@" for c in sheet[1])
    assert sheet.freeze_panes == "A2"
    assert "E.164" in sheet["A1"].comment.text
    # Filled in, it is a valid contact file.
    book = load_workbook(out)
    book.active.append(["+525512345678", "Ana", "2026-12-01", "1500"])
    book.save(out)
    assert validated(out)[1].valid


def test_template_messages_speak_of_files_not_flags(tmp_path):
    with pytest.raises(OutputFileError, match="The template is an .xlsx file") as caught:
        write_template(BOT, tmp_path / "contacts.csv")
    assert "--" not in str(caught.value)
    with pytest.raises(OutputFileError, match="does not exist"):
        write_template(BOT, tmp_path / "missing" / "contacts.xlsx")


def no_hard_links(source, target):
    raise PermissionError(1, "Operation not permitted")  # as on FAT or some network shares


@pytest.mark.parametrize("hard_links", [True, False], ids=["hard links", "no hard links"])
def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path, monkeypatch, hard_links):
    if not hard_links:
        monkeypatch.setattr(os, "link", no_hard_links)
    out = tmp_path / "contacts.xlsx"
    with pytest.raises(OutputFileError, match="already exists; nothing was written"):
        with atomic_output(out, what="the template", overwrite=False) as path:
            path.write_bytes(b"ours")
            out.write_bytes(b"theirs")  # another program, between our check and our rename
    assert out.read_bytes() == b"theirs"
    assert entries(tmp_path) == ["contacts.xlsx"]


def test_a_template_is_written_where_there_are_no_hard_links(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "link", no_hard_links)
    out = write_template(BOT, tmp_path / "contacts.xlsx")
    assert [c.value for c in load_workbook(out)["Contacts"][1]] == HEADERS
    assert entries(tmp_path) == ["contacts.xlsx"]


# --- 2. the report never overwrites the contact file ----------------------------------------------


@pytest.fixture
def contacts_xlsx(tmp_path):
    folder = tmp_path / "files"
    (folder / "sub").mkdir(parents=True)
    return write_xlsx(folder / "contacts.xlsx", [HEADERS, ["5255", "Ana", "2026-12-01", "1"]])


@pytest.mark.parametrize(
    "name_it",
    [
        pytest.param(lambda p: p, id="the same path"),
        pytest.param(lambda p: p.resolve(), id="absolute"),
        pytest.param(lambda p: Path(os.path.relpath(p)), id="relative"),
        pytest.param(lambda p: p.parent / "sub" / ".." / p.name, id="with .."),
        pytest.param(lambda p: _link(p, os.symlink), id="a symlink to it"),
        pytest.param(lambda p: _link(p, os.link), id="a hard link to it"),
    ],
)
def test_report_refuses_to_overwrite_the_contact_file(contacts_xlsx, name_it, monkeypatch):
    monkeypatch.chdir(contacts_xlsx.parent)
    sheet, report = validated(contacts_xlsx)
    before = contacts_xlsx.read_bytes()

    with pytest.raises(OutputFileError) as caught:
        write_error_report(sheet, report, name_it(contacts_xlsx))

    assert str(caught.value) == (
        f"The report would overwrite the contact file {contacts_xlsx}: choose another name."
    )
    assert contacts_xlsx.read_bytes() == before


def _link(target: Path, make) -> Path:
    link = target.parent / "report.xlsx"
    make(target, link)
    return link


def test_a_tsv_contact_file_behind_an_xlsx_symlink_is_refused_too(tmp_path):
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(2))
    (tmp_path / "errors.xlsx").symlink_to(contacts)
    sheet, report = validated(contacts)
    with pytest.raises(OutputFileError, match="would overwrite the contact file"):
        write_error_report(sheet, report, tmp_path / "errors.xlsx")
    assert contacts.read_text().splitlines() == failing_rows(2)


def test_another_case_is_the_contact_file_only_where_the_disk_ignores_case(contacts_xlsx):
    other_case = contacts_xlsx.with_name("CONTACTS.xlsx")
    sheet, report = validated(contacts_xlsx)
    before = contacts_xlsx.read_bytes()
    if other_case.exists():  # a case-insensitive file system (macOS, Windows): the same file
        with pytest.raises(OutputFileError, match="would overwrite the contact file"):
            write_error_report(sheet, report, other_case)
    else:  # a case-sensitive one: another file, written as asked
        write_error_report(sheet, report, other_case)
        assert load_workbook(other_case)["Problems"].max_row == 2
    assert contacts_xlsx.read_bytes() == before


def test_report_messages_speak_of_files_not_flags(tmp_path):
    sheet, report = validated(write_tsv(tmp_path / "c.tsv", failing_rows(2)))
    with pytest.raises(OutputFileError) as caught:
        write_error_report(sheet, report, tmp_path / "errors.csv")
    assert str(caught.value) == (
        "The report must be an .xlsx file (e.g. errors.xlsx), not 'errors.csv'."
    )
    (tmp_path / "folder.xlsx").mkdir()
    with pytest.raises(OutputFileError, match="it is a folder"):
        write_error_report(sheet, report, tmp_path / "folder.xlsx")


def test_report_replaces_an_earlier_report_in_one_step(tmp_path):
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(3))
    out = tmp_path / "errors.xlsx"
    out.write_bytes(b"yesterday's report")
    report, book = report_for(contacts, out)
    assert book["Problems"].max_row == 1 + len(report.errors) == 4
    assert entries(tmp_path) == ["c.tsv", "errors.xlsx"]


# --- 3. a full disk leaves nothing behind, and nothing on stderr but our message ------------------

_CHILD = """
import sys
from schemas.chatbot import load_chatbot
from smartchat.errors import OutputFileError
from smartchat.settings import ValidationSettings
from tasks.error_report import write_error_report
from tasks.ingest import read_contacts
from tasks.template import write_template
from tasks.validation import validate_sheet

what, out, contacts = sys.argv[1:4]
bot = load_chatbot({bot!r})
if what == "report":
    sheet = read_contacts(contacts)
    report = validate_sheet(sheet, bot, max_message_chars=ValidationSettings().max_message_chars)
{limit}
try:
    if what == "report":
        write_error_report(sheet, report, out)
    else:
        write_template(bot, out, overwrite=True)
except OutputFileError as exc:
    print(exc)
else:
    print("written")
"""


@dataclass
class SmallDisk:
    """A folder where writes fail past a few KB: a real 64 KB tmpfs when we may mount one, else
    a file-size limit set in the child process (EFBIG instead of ENOSPC, the same failure path)."""

    folder: Path
    mounted: bool

    def leave(self, free: int) -> str:
        """Leave about `free` bytes writable; returns code for the child to run before writing."""
        if not self.mounted:
            return (
                "import resource, signal\n"
                "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
                f"resource.setrlimit(resource.RLIMIT_FSIZE, ({free}, {free}))"
            )
        filler = self.folder / "filler"
        with open(filler, "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(filler, max(filler.stat().st_size - free, 0))
        return ""

    def reason(self) -> str:
        return "No space left on device" if self.mounted else "File too large"


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount"):
        mount = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)]
        mounted = subprocess.run(mount, capture_output=True).returncode == 0
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def run_child(what: str, out: Path, contacts: Path | None, limit: str):
    code = _CHILD.format(bot=str(BOT_YAML), limit=limit)
    return subprocess.run(
        [sys.executable, "-c", code, what, str(out), str(contacts or "")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_full_disk_report_leaves_the_previous_report_and_no_noise(tmp_path, small_disk):
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(5_000))  # a report of ~350 KB
    out = small_disk.folder / "errors.xlsx"
    out.write_bytes(b"the previous report")

    done = run_child("report", out, contacts, small_disk.leave(16 * 1024))

    assert done.stdout.strip() == (
        f"Can't write the report {out}: {small_disk.reason()}. Nothing was written. "
        "errors.xlsx is unchanged."
    ), done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    assert out.read_bytes() == b"the previous report"
    assert [e for e in entries(small_disk.folder) if e != "filler"] == ["errors.xlsx"]


def test_full_disk_template_keeps_the_previous_template_and_no_noise(small_disk):
    out = small_disk.folder / "contacts.xlsx"
    out.write_bytes(b"the previous template")

    done = run_child("template", out, None, small_disk.leave(2048))

    assert done.stdout.strip().startswith(
        f"Can't write the template {out}: {small_disk.reason()}. Nothing was written."
    ), done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr
    assert out.read_bytes() == b"the previous template"
    assert [e for e in entries(small_disk.folder) if e != "filler"] == ["contacts.xlsx"]


def test_full_disk_report_without_an_earlier_one_leaves_no_file(tmp_path, small_disk):
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(5_000))
    out = small_disk.folder / "errors.xlsx"
    done = run_child("report", out, contacts, small_disk.leave(16 * 1024))
    assert done.stdout.strip().endswith("Nothing was written."), done.stdout + done.stderr
    assert "Exception ignored" not in done.stderr
    assert [e for e in entries(small_disk.folder) if e != "filler"] == []


# --- 4. values in columns without a header --------------------------------------------------------


def test_report_on_a_workbook_with_values_beyond_the_headers(tmp_path):
    contacts = write_xlsx(
        tmp_path / "contacts.xlsx",
        [
            HEADERS,
            ["+525512345678", "Ana", "2026-12-01", "1500", None, "a note"],
            ["5255", "Luis", "2026-12-02", "20"],
            [None, None, None, None, None, None, "stray"],
        ],
    )
    report, book = report_for(contacts, tmp_path / "errors.xlsx")

    sheet = book["Contacts"]
    assert [c.value for c in sheet[1]][:4] == HEADERS
    assert sheet["F2"].value == "a note" and sheet["F2"].fill.fgColor.rgb == RED
    assert "no header" in sheet["F2"].comment.text
    assert sheet["G4"].value == "stray" and sheet["G4"].fill.fgColor.rgb == RED
    assert sheet["E2"].value is None and sheet["E2"].fill.fill_type is None
    problems = [[c.value for c in row] for row in book["Problems"].iter_rows(min_row=2)]
    assert [(row, column, rule) for row, column, _, _, rule, _ in problems] == [
        (e.row, e.column_letter, e.rule) for e in report.errors
    ]
    assert {("F", 2), ("G", 4)} <= {(p[1], p[0]) for p in problems if p[4] == "extra_value"}


def test_report_on_a_sheet_with_no_header_row(tmp_path):
    contacts = write_xlsx(tmp_path / "c.xlsx", [[], ["+525512345678", "Ana", "x", "1"]])
    report, book = report_for(contacts, tmp_path / "errors.xlsx")
    assert [e.rule for e in report.errors] == ["header"]
    assert [c.value for c in book["Contacts"][2]] == ["+525512345678", "Ana", "x", "1"]


def test_report_on_a_tsv_with_ragged_rows(tmp_path):
    contacts = write_tsv(
        tmp_path / "c.tsv",
        ["\t".join(HEADERS), "+525512345678\tAna\t2026-12-01\t1\t\tx\ty", "+525512345679\tB"],
    )
    _, book = report_for(contacts, tmp_path / "errors.xlsx")
    sheet = book["Contacts"]
    assert [c.value for c in sheet[2]] == [
        "+525512345678",
        "Ana",
        "2026-12-01",
        "1",
        None,
        "x",
        "y",
    ]
    assert sheet["C3"].fill.fgColor.rgb == RED and sheet["C3"].value is None  # blank, flagged


# --- 5. what the report keeps of the user's sheet -------------------------------------------------


def test_values_stay_inert_text_in_their_rows(tmp_path):
    lines = [
        "\t".join(HEADERS),
        "\t".join(["+525512345678", '=HYPERLINK("http://evil","x")', "2026-12-01", "0012"]),
        "",
        "",
        "\t".join(["5255", "A\x01B & <i>", "  padded  ", "_x0041_"]),
    ]
    contacts = write_tsv(tmp_path / "c.tsv", lines)
    out = tmp_path / "errors.xlsx"
    report_for(contacts, out)

    sheet = load_workbook(out)["Contacts"]
    assert sheet["B2"].data_type == "s" and sheet["B2"].value.startswith("=HYPERLINK")
    assert sheet["D2"].value == "0012"
    assert sheet.max_row == 5 and all(c.value is None for c in sheet[3])
    assert sheet["A5"].value == "5255" and sheet["A5"].comment is not None
    assert sheet["B5"].value == "A\\x01B & <i>"
    assert sheet["C5"].value == "  padded  "
    # As Excel and SmartChat's own reader see it: a literal _x0041_ is not the letter A.
    seen = fastexcel.read_excel(out).load_sheet(0, header_row=None, dtypes="string").to_polars()
    assert seen.row(4) == ("5255", "A\\x01B & <i>", "  padded  ", "_x0041_")
    assert seen.row(1)[1] == '=HYPERLINK("http://evil","x")'


def test_a_value_longer_than_a_cell_holds_is_cut_not_fatal(tmp_path):
    contacts = write_tsv(
        tmp_path / "c.tsv", ["\t".join(HEADERS), f"+525512345678\t{'n' * 40_000}\t2026-12-01\t1"]
    )
    _, book = report_for(contacts, tmp_path / "errors.xlsx")
    assert book["Contacts"]["B2"].value == "n" * 16_383
    assert book["Contacts"]["B2"].fill.fgColor.rgb == RED  # message_too_long


def test_comments_stop_at_the_cap_but_every_problem_is_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(error_report, "MAX_COMMENTS", 3)
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(6))
    report, book = report_for(contacts, tmp_path / "errors.xlsx")

    sheet = book["Contacts"]
    flagged = [c for row in sheet.iter_rows(min_row=2) for c in row if c.fill.fill_type]
    assert len(flagged) == len(report.errors) == 6
    assert [c.comment is not None for c in flagged] == [True] * 3 + [False] * 3
    problems = book["Problems"]
    assert problems.max_row == 7
    assert "the first 3 from the top" in problems["F1"].comment.text


def test_problems_past_the_last_row_of_a_sheet_are_counted(tmp_path, monkeypatch):
    monkeypatch.setattr(error_report, "MAX_ROWS", 6)
    contacts = write_tsv(tmp_path / "c.tsv", failing_rows(8))  # rows 2..9, 8 problems
    _, book = report_for(contacts, tmp_path / "errors.xlsx")
    assert book["Contacts"].max_row == 6
    problems = book["Problems"]
    assert problems.max_row == 6
    assert problems["F6"].value == "4 more problems are not listed: a sheet holds at most 6 rows."


# --- 6. looks -------------------------------------------------------------------------------------


def test_report_looks(tmp_path):
    contacts = write_tsv(
        tmp_path / "c.tsv",
        ["\t".join(HEADERS), "5255\tMaría José de la Concepción Pérez\t2026-12-01\t1"],
    )
    _, book = report_for(contacts, tmp_path / "errors.xlsx")
    sheet, problems = book["Contacts"], book["Problems"]

    for ws in (sheet, problems):
        assert ws.freeze_panes == "A2"
        assert all(c.font.b for c in ws[1])
        assert all(8 <= ws.column_dimensions[c.column_letter].width <= 80 for c in ws[1])
    assert problems.auto_filter.ref == "A1:F2"
    assert sheet.column_dimensions["B"].width > sheet.column_dimensions["D"].width
    assert problems["F2"].alignment.wrap_text
    assert sheet["A2"].fill.fgColor.rgb == RED and sheet["B2"].fill.fill_type is None
    assert sheet["A2"].number_format == "@"


def test_a_valid_file_gets_an_empty_problems_sheet(tmp_path):
    contacts = write_tsv(tmp_path / "c.tsv", ["\t".join(HEADERS), "+525512345678\tAna\tx\t1"])
    report, book = report_for(contacts, tmp_path / "errors.xlsx")
    assert report.valid
    assert [c.value for c in book["Problems"][1]] == list(error_report.PROBLEM_HEADERS)
    assert book["Problems"].max_row == 1
