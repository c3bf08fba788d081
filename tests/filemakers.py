"""Write real contact files for tests: TSV bytes in any encoding, .xlsx with typed cells.

.xlsx files come from xlsxwriter (what we don't read with), so a test checks our reading of a real
workbook, not a round trip through our own code.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import xlsxwriter


@dataclass(frozen=True)
class Formatted:
    """A cell value written with an Excel number format, e.g. Formatted(5e11, "0.00E+00")."""

    value: Any
    num_format: str


@dataclass(frozen=True)
class Formula:
    """A formula cell with the cached result Excel would have stored."""

    formula: str
    result: Any


def write_tsv(
    path: Path, lines: list[str], *, encoding: str = "utf-8", newline: str = "\n"
) -> Path:
    """Lines, each ended by `newline`, in `encoding` ("utf-16" and "utf-8-sig" add a BOM)."""
    path.write_bytes("".join(line + newline for line in lines).encode(encoding))
    return path


def write_xlsx(
    path: Path,
    rows: list[list[Any]],
    *,
    first_row: int = 0,
    first_column: int = 0,
    styled_blank_rows: list[int] | None = None,
    more_sheets: dict[str, list[list[Any]]] | None = None,
) -> Path:
    """Write `rows` on the first sheet from (first_row, first_column), 0-based, typed by value.

    None leaves a cell unwritten; str is a text cell (never converted, "0012" stays text);
    bool/int/float are boolean/number cells; date/datetime/time are date cells with a date
    format. `styled_blank_rows` (0-based) get bold, coloured cells with no value, as when
    someone formats whole rows.
    """
    workbook = xlsxwriter.Workbook(str(path))
    sheet = workbook.add_worksheet("Contacts")
    _write_rows(workbook, sheet, rows, first_row, first_column)
    styled = workbook.add_format({"bold": True, "bg_color": "#FFFF00"})
    for row in styled_blank_rows or []:
        for column in range(6):
            sheet.write_blank(row, column, None, styled)
    for name, other_rows in (more_sheets or {}).items():
        _write_rows(workbook, workbook.add_worksheet(name), other_rows, 0, 0)
    workbook.close()
    return path


def _write_rows(workbook: Any, sheet: Any, rows: list[list[Any]], top: int, left: int) -> None:
    formats: dict[str, Any] = {}

    def fmt(num_format: str) -> Any:
        if num_format not in formats:
            formats[num_format] = workbook.add_format({"num_format": num_format})
        return formats[num_format]

    for r, values in enumerate(rows, start=top):
        for c, value in enumerate(values, start=left):
            _write_cell(sheet, r, c, value, fmt)


def _write_cell(sheet: Any, row: int, column: int, value: Any, fmt: Any) -> None:
    num_format = None
    if isinstance(value, Formatted):
        value, num_format = value.value, value.num_format
    if value is None:
        return
    if isinstance(value, Formula):
        sheet.write_formula(row, column, value.formula, None, value.result)
    elif isinstance(value, str):
        sheet.write_string(row, column, value)
    elif isinstance(value, bool):
        sheet.write_boolean(row, column, value)
    elif isinstance(value, int | float):
        sheet.write_number(row, column, value, fmt(num_format) if num_format else None)
    elif isinstance(value, datetime | date | time):
        sheet.write_datetime(row, column, value, fmt(num_format or _date_format(value)))
    else:
        raise TypeError(f"no cell type for {value!r}")


def _date_format(value: date | datetime | time) -> str:
    if isinstance(value, datetime):
        return "yyyy-mm-dd hh:mm:ss"
    if isinstance(value, time):
        return "hh:mm"
    return "yyyy-mm-dd"


# --- OLE2 compound files: what .xls files and password-protected .xlsx files are ---------------

_OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
_FREE, _END_OF_CHAIN, _FAT_SECTOR, _NO_STREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def write_ole2(path: Path, stream_names: list[str]) -> Path:
    """A minimal compound file (header, one FAT sector, one directory sector) naming these streams.

    Excel's encrypted .xlsx holds "EncryptionInfo" and "EncryptedPackage"; an .xls holds
    "Workbook". The streams are empty: only the container's shape matters to the reader.
    """
    header = bytearray(512)
    header[0:8] = _OLE2_MAGIC
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)  # v3, 512-byte sectors
    struct.pack_into("<I", header, 44, 1)  # one FAT sector
    struct.pack_into("<I", header, 48, 1)  # directory starts at sector 1
    struct.pack_into("<III", header, 56, 4096, _END_OF_CHAIN, 0)  # no mini FAT
    struct.pack_into("<II", header, 68, _END_OF_CHAIN, 0)  # no DIFAT sectors
    struct.pack_into("<I", header, 76, 0)  # the FAT is sector 0
    header[80:512] = b"\xff" * 432
    fat = struct.pack("<II", _FAT_SECTOR, _END_OF_CHAIN) + b"\xff" * 504
    entries = [_directory_entry("Root Entry", 5, child=1 if stream_names else _NO_STREAM)]
    for i, name in enumerate(stream_names, start=1):
        sibling = i + 1 if i < len(stream_names) else _NO_STREAM
        entries.append(_directory_entry(name, 2, right=sibling))
    directory = b"".join(entries).ljust(512 * ((len(entries) + 3) // 4), b"\x00")
    path.write_bytes(bytes(header) + fat + directory)
    return path


def _directory_entry(
    name: str, kind: int, *, child: int = _NO_STREAM, right: int = _NO_STREAM
) -> bytes:
    entry = bytearray(128)
    encoded = (name + "\x00").encode("utf-16-le")
    entry[: len(encoded)] = encoded
    struct.pack_into("<HBB", entry, 64, len(encoded), kind, 1)
    struct.pack_into("<III", entry, 68, _NO_STREAM, right, child)
    struct.pack_into("<IQ", entry, 116, _END_OF_CHAIN, 0)
    return bytes(entry)


# --- workbooks of several sheets, and files saved by LibreOffice Calc ---------------------------


def write_workbook(
    path: Path,
    sheets: dict[str, list[list[Any]]],
    *,
    hidden: tuple[str, ...] = (),
    very_hidden: tuple[str, ...] = (),
    active: str | None = None,
    styled_blank: tuple[str, ...] = (),
) -> Path:
    """Sheets in this order, typed as in `write_xlsx`; some hidden, one active (selected).

    Excel needs a visible active sheet: by default the first one not hidden. A hidden first
    sheet also moves the first tab shown, as Excel does. Sheets in `styled_blank` get bold,
    coloured cells with no value (rows 1-20, columns A-F) after their rows.
    """
    workbook = xlsxwriter.Workbook(str(path))
    styled = workbook.add_format({"bold": True, "bg_color": "#FFFF00"})
    added = {}
    for name, rows in sheets.items():
        sheet = added[name] = workbook.add_worksheet(name)
        _write_rows(workbook, sheet, rows, 0, 0)
        if name in styled_blank:
            for row in range(len(rows), 20):
                for column in range(6):
                    sheet.write_blank(row, column, None, styled)
    shown = active or next(n for n in sheets if n not in hidden and n not in very_hidden)
    added[shown].activate()
    added[shown].set_first_sheet()
    for name in hidden:
        added[name].hide()
    for name in very_hidden:
        added[name].very_hidden()
    workbook.close()
    return path


def calc_available() -> bool:
    """Whether LibreOffice (`soffice`, Debian package libreoffice-calc-nogui) is installed."""
    return shutil.which("soffice") is not None


def save_with_calc(source: Path, out_dir: Path, convert_to: str, profile: Path) -> Path:
    """Open `source` in LibreOffice Calc (headless) and save it as `convert_to` into `out_dir`.

    `convert_to` is soffice's --convert-to argument: "xlsx" for Calc's own .xlsx, or
    'csv:Text - txt - csv (StarCalc):9,34,76,1,,0,false,true,true,false,false,2' for the
    tab-separated text Calc saves of sheet 2 (tab, '"', UTF-8, ..., "as shown", sheet number).
    `profile` is a private LibreOffice user folder, so a desktop LibreOffice never interferes;
    reuse one across calls, creating it takes seconds. Returns the file written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.iterdir())
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={profile.resolve().as_uri()}",
            "--headless",
            "--convert-to",
            convert_to,
            "--outdir",
            str(out_dir),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    written = sorted(set(out_dir.iterdir()) - before)
    if len(written) != 1:
        raise RuntimeError(f"LibreOffice wrote {written} from {source}")
    return written[0]


def add_rows(workbook: Any, sheet: Any, rows: list[list[Any]]) -> None:
    """Write `rows` from A1 on an xlsxwriter sheet of `workbook`, typed as in `write_xlsx`."""
    _write_rows(workbook, sheet, rows, 0, 0)
