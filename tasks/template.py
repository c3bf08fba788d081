"""`smartchat template`: an empty contact file with exactly the headers a chatbot needs."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.comments import Comment
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from schemas.chatbot import CONTACT_HEADER, Chatbot
from smartchat.errors import OutputFileError
from tasks.safe_write import atomic_output

# Excel applies a column's style to the cells typed into it later: formatting CONTACT as Text is
# what stops Excel turning +525500001111 into the number 525500001111.
TEXT = "@"


def write_template(chatbot: Chatbot, out: Path | str, *, overwrite: bool = False) -> Path:
    """Write the template to `out` (.xlsx); an existing file is replaced only with `overwrite`.

    A template is where people type their contacts: writing over one by mistake loses them, so
    an existing `out` is refused (OutputFileError) unless the caller asked to overwrite it.
    Complete or not written at all (see tasks.safe_write).
    """
    out = Path(out)
    if out.suffix.lower() != ".xlsx":
        raise OutputFileError(
            f"The template is an .xlsx file: name it e.g. contacts.xlsx, not {out.name!r}.", out
        )
    with atomic_output(out, what="the template", overwrite=overwrite) as path:
        _write_workbook(chatbot, path)
    return out


def _write_workbook(chatbot: Chatbot, path: Path) -> None:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Contacts"
    headers = [CONTACT_HEADER, *chatbot.custom_data]
    for i, header in enumerate(headers, start=1):
        cell = sheet.cell(row=1, column=i, value=header)
        cell.font = Font(bold=True)
        cell.number_format = TEXT
        letter = get_column_letter(i)
        sheet.column_dimensions[letter].width = 18
        sheet.column_dimensions[letter].number_format = TEXT
    sheet.cell(row=1, column=1).comment = Comment(
        "Phone numbers in E.164 form: +, country code, number, no spaces (e.g. +525500001111). "
        "One contact per row; each number once.",
        "smartchat",
    )
    sheet.freeze_panes = "A2"
    book.save(path)
