"""`--report FILE.xlsx`: the user's own sheet back, each failing cell highlighted with its reason.

Written with openpyxl in write-only mode, streaming row by row, so a report on a large file costs
memory for one row at a time, not for the whole workbook.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from openpyxl import Workbook
from openpyxl.cell import WriteOnlyCell
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.comments import Comment
from openpyxl.styles import Font, PatternFill
from openpyxl.worksheet.worksheet import Worksheet

from smartchat.errors import UsageError
from tasks.ingest import ContactSheet
from tasks.validation import ContactIssue, ValidationReport, column_letter

_BAD = PatternFill(start_color="FFFFC7CE", end_color="FFFFC7CE", fill_type="solid")
_BOLD = Font(bold=True)


def write_error_report(sheet: ContactSheet, report: ValidationReport, out: Path | str) -> Path:
    out = Path(out)
    if out.suffix.lower() != ".xlsx":
        raise UsageError(f"--report must name an .xlsx file, not {out.name!r}.")
    by_cell: dict[tuple[int, str], list[ContactIssue]] = defaultdict(list)
    for issue in report.errors:
        if issue.column_letter:
            by_cell[(issue.row, issue.column_letter)].append(issue)

    book = Workbook(write_only=True)
    contacts = book.create_sheet("Contacts")
    extras: dict[int, dict[int, str]] = defaultdict(dict)
    for row, col, value in sheet.extra_cells:
        extras[row][col - 1] = value
    width = max([len(sheet.headers), *(max(cols) + 1 for cols in extras.values())])
    letters = [column_letter(i) for i in range(width)]
    contacts.append(_cells(contacts, 1, letters, sheet.headers, by_cell, header=True))
    columns = [f"c{i}" for i in range(len(sheet.headers))]
    next_row = 2
    for row, *values in sheet.data.select("row", *columns).iter_rows():
        # Blank rows were skipped on reading: keep every row where the user has it, so the
        # row numbers in the comments and the Problems sheet point at the right line.
        for _ in range(next_row, row):
            contacts.append([])
        values += [extras[row].get(i) for i in range(len(sheet.headers), width)]
        contacts.append(_cells(contacts, row, letters, values, by_cell))
        next_row = row + 1

    problems = book.create_sheet("Problems")
    problems.append(["Row", "Column", "Header", "Value", "Rule", "Problem"])
    for issue in report.errors:
        value = WriteOnlyCell(problems, value=_printable(issue.value))
        value.data_type = "s"
        problems.append(
            [issue.row, issue.column_letter, issue.column, value, issue.rule, issue.message]
        )
    try:
        book.save(out)
    except OSError as exc:
        raise UsageError(f"Can't write the report {out}: {exc.strerror or exc}.") from None
    return out


def _cells(
    ws: Worksheet,
    row: int,
    letters: list[str],
    values: Sequence[str | None],
    by_cell: dict[tuple[int, str], list[ContactIssue]],
    header: bool = False,
) -> list[WriteOnlyCell]:
    cells = []
    for letter, value in zip(letters, values, strict=True):
        cell = WriteOnlyCell(ws, value=_printable(value))
        # Always text, never a formula: `=HYPERLINK(...)` in a contact file must not become a
        # live link in the report, and text keeps a leading + or 0 exactly as typed.
        if value is not None:
            cell.data_type = "s"
        cell.number_format = "@"
        if header:
            cell.font = _BOLD
        issues = by_cell.get((row, letter))
        if issues:
            cell.fill = _BAD
            cell.comment = Comment("\n".join(i.message for i in issues), "smartchat")
        cells.append(cell)
    return cells


def _printable(value: str | None) -> str | None:
    """XML can't hold control characters: show them as \\xNN so the user can find them."""
    if value is None:
        return None
    text: str = ILLEGAL_CHARACTERS_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", value)
    return text
