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
    letters = [column_letter(i) for i in range(len(sheet.headers))]
    contacts.append(_cells(contacts, 1, letters, sheet.headers, by_cell, header=True))
    columns = [f"c{i}" for i in range(len(sheet.headers))]
    for row, *values in sheet.data.select("row", *columns).iter_rows():
        contacts.append(_cells(contacts, row, letters, values, by_cell))

    problems = book.create_sheet("Problems")
    problems.append(["Row", "Column", "Header", "Value", "Rule", "Problem"])
    for issue in report.errors:
        problems.append(
            [issue.row, issue.column_letter, issue.column, issue.value, issue.rule, issue.message]
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
        cell = WriteOnlyCell(ws, value=value)
        # Text keeps what the user typed (a leading + or 0) exactly as it was.
        cell.number_format = "@"
        if header:
            cell.font = _BOLD
        issues = by_cell.get((row, letter))
        if issues:
            cell.fill = _BAD
            cell.comment = Comment("\n".join(i.message for i in issues), "smartchat")
        cells.append(cell)
    return cells
