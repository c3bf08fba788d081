"""Read a user's contact file (.tsv or .xlsx) into polars as text, losing nothing.

The reader only rejects files it cannot read (missing, wrong format, corrupt, password-protected,
undecodable); every content problem (headers, phones, blanks, duplicates) is left to validation,
which needs each value exactly as written and its spreadsheet position (header = row 1, columns
1-based), so:

* `headers` is row 1 as written, up to its last non-empty cell ('' for an empty cell in between;
  trailing empty cells are not headers, so a value under one is an extra cell). An empty row 1
  gives `headers == []`; an empty sheet or a TSV of blank lines gives that and no data rows,
  for validation to report "no header row" (a 0-byte file is unreadable instead).
* `data` has one String column per header, c0..c{n-1}, null for an empty cell, then "row":
  the row number in the file/sheet. Rows whose every cell is empty are dropped; the others keep
  their number.
* values right of the last header go to `extra_cells` (at most `MAX_EXTRA_CELLS` of them,
  `extra_cell_count` has the total).

.xlsx cells become the text a person sees: dates "2026-12-01", times "14:30", numbers "1500" /
"1500.5" (fastexcel's rendering: at most 9 decimals, no float noise), booleans "TRUE"/"FALSE".
Number formats (%, currency, thousands separators) are not applied: 15% reads "0.15". Formula
cells give the result Excel saved; error cells (#N/A, #DIV/0!) read as empty. Only the first sheet
in the workbook's order is read, hidden or not.

Import cost matters here (the CLI calls this before anything else), so polars and fastexcel are
imported inside the functions and openpyxl is not used at all (see `_scientific_rows`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from smartchat.errors import ContactFileError

if TYPE_CHECKING:
    import zipfile

    import fastexcel
    import polars as pl

# A file whose row 1 is not the header (a title line, say) would otherwise put every value of a
# million-row file here; validation only ever shows the first few.
MAX_EXTRA_CELLS = 10_000

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
# Excel encrypts a workbook by wrapping it in an OLE2 container holding these streams; OLE2 stores
# stream names as UTF-16LE.
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_SNIFF_BYTES = 64 * 1024

# How fastexcel renders a date/time cell as a string (chrono's NaiveDateTime).
_EXCEL_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?$"
# Excel's day 0: a time-only cell (14:30) is a date on it.
_EXCEL_DAY_ZERO = ["1899-12-30", "1899-12-31"]
# How fastexcel renders a number cell; a text cell can look the same, hence the second look.
_NUMBER_TEXT = r"^-?[0-9]+(?:\.[0-9]+)?$"
# Excel keeps 15 significant digits: a longer integer lost some (no E.164 number is longer).
_EXCEL_DIGITS = 15
# Built-in number formats 11 ("0.00E+00") and 48 ("##0.0E+0") are the scientific ones.
_BUILTIN_SCIENTIFIC_FORMATS = frozenset({11, 48})


@dataclass
class ContactSheet:
    """A contact file as read: every value as text, with its spreadsheet row and column."""

    path: Path
    file_format: str  # "tsv" | "xlsx"
    headers: list[str]
    data: pl.DataFrame  # c0..c{n-1}: String, then "row": Int64
    # xlsx only: row -> "number" | "scientific" for CONTACT (c0) cells that were numeric cells
    number_cells: dict[int, str] = field(default_factory=dict)
    # (row, 1-based column, value) for values right of the last header, sorted
    extra_cells: list[tuple[int, int, str]] = field(default_factory=list)
    extra_cell_count: int = 0  # all extra values found; `extra_cells` stops at MAX_EXTRA_CELLS
    # sha256 of exactly the bytes that were parsed, so a campaign records the file it launched
    # even if the file changes on disk a moment later.
    sha256: str = ""

    def __post_init__(self) -> None:
        self.extra_cell_count = max(self.extra_cell_count, len(self.extra_cells))


def read_contacts(path: Path | str) -> ContactSheet:
    """Read a .tsv or .xlsx contact file; raise ContactFileError if it can't be read at all."""
    file = Path(path)
    _check_is_readable_file(file)
    suffix = file.suffix.lower()
    if suffix not in (".tsv", ".xlsx"):
        raise ContactFileError(_unsupported_extension_message(file, suffix))
    content = _read_all(file)
    sheet = _read_tsv(file, content) if suffix == ".tsv" else _read_xlsx(file, content)
    sheet.sha256 = hashlib.sha256(content).hexdigest()
    return sheet


# --- files and formats --------------------------------------------------------------------------


def _check_is_readable_file(file: Path) -> None:
    try:
        if file.is_dir():
            raise ContactFileError(
                f"'{file}' is a folder, not a contact file: give the path of a .tsv or .xlsx file."
            )
        size = file.stat().st_size
    except FileNotFoundError:
        raise ContactFileError(
            f"Contact file '{file}' was not found: check the path and the file name."
        ) from None
    except OSError as exc:
        raise _os_error(file, exc) from None
    if size == 0:
        raise ContactFileError(
            f"Contact file '{file}' is empty (0 bytes): export your contacts again as .xlsx "
            "or as a UTF-8 .tsv file."
        )


def _os_error(file: Path, exc: OSError) -> ContactFileError:
    reason = exc.strerror or type(exc).__name__
    return ContactFileError(
        f"Contact file '{file}' could not be opened ({reason}): check that it exists and that "
        "you can read it."
    )


def _unsupported_extension_message(file: Path, suffix: str) -> str:
    if suffix == ".xls":
        return (
            f"Contact file '{file}' is in the old Excel 97-2003 format (.xls): open it in Excel "
            "and save it as .xlsx (File > Save As > Excel Workbook)."
        )
    if suffix == ".csv":
        return (
            f"Contact file '{file}' is a .csv file, which SmartChat does not read: save it from "
            "Excel as .xlsx, or as tab-separated text with a .tsv extension."
        )
    if suffix == ".txt":
        return (
            f"Contact file '{file}' has the extension .txt: if it is tab-separated text, rename "
            "it to .tsv; otherwise save it as .xlsx."
        )
    what = f"an unsupported extension '{suffix}'" if suffix else "no extension"
    return (
        f"Contact file '{file}' has {what}: save it as .xlsx or as a UTF-8 .tsv file "
        "(tab-separated)."
    )


def _read_all(file: Path) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise _os_error(file, exc) from None


def _ole2_message(file: Path, content: bytes, *, renamed_from: str) -> str:
    """OLE2 is both the .xls format and the wrapper of an encrypted .xlsx; tell them apart."""
    if _ENCRYPTION_STREAM in content:
        return (
            f"Contact file '{file}' is password-protected: remove the password in Excel "
            "(File > Info > Protect Workbook) and save it again."
        )
    return (
        f"Contact file '{file}' is an old Excel 97-2003 (.xls) workbook named {renamed_from}: "
        "open it in Excel and save it as .xlsx (File > Save As > Excel Workbook)."
    )


# --- TSV ----------------------------------------------------------------------------------------


def _read_tsv(file: Path, content: bytes) -> ContactSheet:
    raw = _tsv_frame(file, _tsv_source(file, content))
    return _build_sheet(file, "tsv", raw, number_cells={})


def _tsv_source(file: Path, content: bytes) -> bytes:
    """What polars should parse: the file's UTF-8 bytes."""
    head = content[:_SNIFF_BYTES]
    if head.startswith(_UTF16_BOMS):
        # Excel's "Unicode Text" is UTF-16LE with a BOM; polars reads UTF-8 only.
        try:
            return content.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise ContactFileError(
                f"Contact file '{file}' starts like UTF-16 text but is not valid UTF-16: "
                "save it as UTF-8 TSV or .xlsx."
            ) from None
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        raise ContactFileError(
            f"Contact file '{file}' is a zip file (an Excel .xlsx workbook?), not tab-separated "
            "text: if it is a workbook, rename it to .xlsx."
        )
    if head.startswith(_OLE2_MAGIC):
        raise ContactFileError(_ole2_message(file, content, renamed_from=".tsv"))
    if b"\x00" in head:
        raise ContactFileError(
            f"Contact file '{file}' is not UTF-8 text (it contains NUL bytes, like UTF-16 text "
            "without a byte-order mark or a binary file): save it as UTF-8 TSV or .xlsx."
        )
    return content


def _tsv_frame(file: Path, source: bytes) -> pl.DataFrame:
    """One row per line (a blank line is a row of nulls), String columns f0..f{w-1}."""
    import polars as pl

    try:
        return _positional(_read_tsv_table(source))
    except pl.exceptions.NoDataError:
        return pl.DataFrame()
    except pl.exceptions.ComputeError as exc:
        table_error = exc
    _check_utf8(file, source)
    try:
        # Most likely a row with more fields than row 1: the fast reader fixes the width from it.
        return _read_tsv_ragged(source)
    except pl.exceptions.ComputeError:
        reason = str(table_error).splitlines()[0]
        raise ContactFileError(
            f"Contact file '{file}' could not be read as tab-separated text ({reason}): "
            "save it as UTF-8 TSV or .xlsx."
        ) from None


def _read_tsv_table(source: bytes) -> pl.DataFrame:
    import polars as pl

    return pl.read_csv(
        source,
        separator="\t",
        has_header=False,
        quote_char=None,  # no quoting in a contact TSV: a '"' is part of the value
        infer_schema=False,  # everything String: "0012" stays "0012"
        encoding="utf8",
    )


def _read_tsv_ragged(source: bytes) -> pl.DataFrame:
    """Slower path for rows of different widths: split each line ourselves."""
    import polars as pl

    lines = pl.read_csv(
        source,
        separator="\x00",  # never in the text (checked): each line is one field
        has_header=False,
        quote_char=None,
        infer_schema=False,
        encoding="utf8",
        new_columns=["line"],
    )
    fields = lines.get_column("line").str.split("\t")
    width = fields.list.len().max()
    columns = [
        fields.list.get(i, null_on_oob=True).replace("", None).alias(f"f{i}")
        for i in range(width if isinstance(width, int) else 0)
    ]
    return pl.DataFrame(columns)


def _check_utf8(file: Path, raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ContactFileError(
            f"Contact file '{file}' is not UTF-8 text (line {line} has bytes that are not "
            "UTF-8, as in files saved as ANSI/Windows-1252): save it as UTF-8 TSV or .xlsx."
        ) from None


# --- xlsx ---------------------------------------------------------------------------------------


def _read_xlsx(file: Path, content: bytes) -> ContactSheet:
    _check_xlsx_container(file, content)
    import fastexcel

    try:
        reader = fastexcel.read_excel(content)
        if not reader.sheet_names:
            raise ContactFileError(
                f"Contact file '{file}' has no worksheets: put your contacts on the first sheet "
                "and save it again."
            )
        raw = _excel_text(_load_first_sheet(reader))
        number_cells = _number_cells(file, reader, raw)
    except fastexcel.FastExcelError:
        raise ContactFileError(
            f"Contact file '{file}' could not be read as an Excel workbook (it is damaged or not "
            "an .xlsx file): open it in Excel and save it again as .xlsx."
        ) from None
    return _build_sheet(file, "xlsx", raw, number_cells=number_cells)


def _load_first_sheet(reader: fastexcel.ExcelReader) -> pl.DataFrame:
    """The first sheet as fastexcel renders it to strings, columns f{i} from column A, row 1 first.

    The sheet object holds calamine's cell grid (the peak of memory); returning only the frame
    lets it go before the rest of the work.
    """
    sheet = reader.load_sheet(0, header_row=None, skip_rows=0, dtypes="string")
    # The sheet's range starts at its first used column: re-anchor it on column A.
    first_column = sheet.selected_columns[0].absolute_index if sheet.width else 0
    return _positional(sheet.to_polars(), first_column)


def _check_xlsx_container(file: Path, content: bytes) -> None:
    """An .xlsx is a zip; say what it is instead when it isn't."""
    head = content[:8]
    if head.startswith((_ZIP_MAGIC, _EMPTY_ZIP_MAGIC)):
        return
    if head.startswith(_OLE2_MAGIC):
        raise ContactFileError(_ole2_message(file, content, renamed_from=".xlsx"))
    raise ContactFileError(
        f"Contact file '{file}' is not a real .xlsx file (it is not an Excel workbook; a CSV or "
        "text file renamed to .xlsx looks like this): open it in Excel and save it as .xlsx, or "
        "name it .tsv if it is tab-separated text."
    )


def _excel_text(raw: pl.DataFrame) -> pl.DataFrame:
    """Turn fastexcel's string rendering of typed cells into what a person sees in Excel.

    A string load is one pass over the sheet (a typed load cannot read the header row and the
    data at once), so a text cell that looks exactly like a rendered datetime or reads
    "true"/"false" is treated like one; Excel itself turns a typed "true" into a boolean.
    """
    import polars as pl

    if raw.width == 0:
        return raw
    # Only pay for the regex rewrites on columns that have such values.
    flags = raw.select(
        *(pl.col(c).str.contains(_EXCEL_DATETIME).any().alias(f"d{c}") for c in raw.columns),
        *(pl.col(c).is_in(["true", "false"]).any().alias(f"b{c}") for c in raw.columns),
    ).row(0, named=True)
    exprs = []
    for name in raw.columns:
        expr = pl.col(name).replace("", None)
        if flags[f"d{name}"]:
            expr = _datetime_text(expr)
        if flags[f"b{name}"]:
            expr = _boolean_text(expr)
        exprs.append(expr.alias(name))
    return raw.select(exprs)


def _datetime_text(value: pl.Expr) -> pl.Expr:
    """A rendered date cell as Excel shows it: no midnight, no :00 seconds, no day 0.

    '2026-12-01 00:00:00' -> '2026-12-01'; '2026-12-01 14:30:00' -> '2026-12-01 14:30';
    '2026-12-01 14:30:05' stays; '1899-12-31 14:30:00' (a time-only cell) -> '14:30'.
    """
    import polars as pl

    shown = (
        value.str.slice(0, 19)  # sub-second digits are float noise from the day fraction
        .str.strip_prefix(f"{_EXCEL_DAY_ZERO[0]} ")
        .str.strip_prefix(f"{_EXCEL_DAY_ZERO[1]} ")
        .str.strip_suffix(" 00:00:00")
        .str.strip_suffix(":00")
    )
    return pl.when(value.str.contains(_EXCEL_DATETIME)).then(shown).otherwise(value)


def _boolean_text(value: pl.Expr) -> pl.Expr:
    import polars as pl

    return (
        pl.when(value == "true")
        .then(pl.lit("TRUE"))
        .when(value == "false")
        .then(pl.lit("FALSE"))
        .otherwise(value)
    )


def _number_cells(file: Path, reader: fastexcel.ExcelReader, raw: pl.DataFrame) -> dict[int, str]:
    """CONTACT cells that are numeric cells (Excel dropped the +): row -> number | scientific.

    Rare error path: only when some CONTACT value reads like a number does it read column A
    again, typed as boolean: fastexcel converts only numeric (and boolean) cells to a boolean,
    never text, so a non-null there marks a numeric cell.
    """
    import polars as pl

    if raw.width == 0:
        return {}
    contact = raw.select(pl.col("f0").alias("value")).with_row_index("row", offset=1).slice(1)
    looks_numeric = pl.col("value").str.contains(_NUMBER_TEXT)
    if not contact.select(looks_numeric.any()).item():
        return {}
    # Index 0 is the range's first used column, which is column A here: had the sheet started
    # further right, f0 would be the all-empty padding and we would have returned above.
    typed = reader.load_sheet(
        0, header_row=None, skip_rows=0, use_columns=[0], dtypes="boolean"
    ).to_polars()
    if typed.height != raw.height:  # not the same grid: can't tell, let validation see text
        return {}
    is_number_cell = typed.to_series(0).slice(1).is_not_null()
    numbers = contact.filter(looks_numeric & is_number_cell)
    kinds = {
        row: "scientific" if _lost_digits(value) else "number" for row, value in numbers.iter_rows()
    }
    for row in _scientific_rows(file, {row for row, kind in kinds.items() if kind == "number"}):
        kinds[row] = "scientific"
    return kinds


def _lost_digits(value: str) -> bool:
    integer = value.lstrip("-").split(".")[0].lstrip("0")
    return len(integer) > _EXCEL_DIGITS


def _scientific_rows(file: Path, rows: set[int]) -> set[int]:
    """Which of `rows` have a scientific number format (0.00E+00) in column A.

    openpyxl would tell, but its read-only mode parses every cell of every row (8.5 s for 100k
    rows x 4 columns), so read only what is needed with the standard library: the styles, and
    column A's style ids, and only when a scientific style exists at all. Best effort: a
    workbook laid out unlike Excel's just gets "number".
    """
    import zipfile
    from xml.etree import ElementTree

    if not rows:
        return set()
    try:
        with zipfile.ZipFile(file) as archive:
            styles = _scientific_style_ids(archive)
            if not styles:
                return set()
            found = _column_a_rows_with_style(archive, _first_sheet_path(archive), styles)
            return found & rows
    except (
        KeyError,
        StopIteration,
        OSError,
        zipfile.BadZipFile,
        ElementTree.ParseError,
        ValueError,
    ):
        return set()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _scientific_style_ids(archive: zipfile.ZipFile) -> set[int]:
    """Indexes of cell styles (cellXfs) whose number format is scientific."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(archive.read("xl/styles.xml"))
    scientific_ids = set(_BUILTIN_SCIENTIFIC_FORMATS)
    cell_xfs: list[int] = []
    for element in root:
        if _local(element.tag) == "numFmts":
            for fmt in element:
                if _is_scientific_format(fmt.get("formatCode", "")):
                    scientific_ids.add(int(fmt.get("numFmtId", "-1")))
        elif _local(element.tag) == "cellXfs":
            cell_xfs = [int(xf.get("numFmtId", "0")) for xf in element]
    return {index for index, fmt_id in enumerate(cell_xfs) if fmt_id in scientific_ids}


def _is_scientific_format(code: str) -> bool:
    # Quoted literals and \-escaped characters are text, not format codes.
    bare = re.sub(r'"[^"]*"|\\.', "", code)
    return re.search(r"[eE][+-]", bare) is not None


def _first_sheet_path(archive: zipfile.ZipFile) -> str:
    """The zip member of the workbook's first sheet (the one fastexcel reads as index 0)."""
    from xml.etree import ElementTree

    workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
    first = next(e for e in workbook.iter() if _local(e.tag) == "sheet")
    rel_id = next(v for k, v in first.attrib.items() if _local(k) == "id")
    rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    target = next(e.get("Target", "") for e in rels if e.get("Id") == rel_id)
    return target.lstrip("/") if target.startswith("/") else f"xl/{target}"


def _column_a_rows_with_style(
    archive: zipfile.ZipFile, sheet_path: str, styles: set[int]
) -> set[int]:
    """Rows whose column-A cell has one of `styles`, streaming the sheet XML in chunks.

    Matches the opening tag <c r="A12" s="3" ...>; Excel, openpyxl and xlsxwriter write `r`
    first, and letting the regex pick the styles keeps all other cells out of Python.
    """
    ids = b"|".join(str(style).encode() for style in sorted(styles))
    cell = re.compile(
        rb"<(?:\w+:)?c\s+r\s*=\s*[\"']A(\d+)[\"'][^>]*?\ss\s*=\s*[\"'](?:" + ids + rb")[\"']"
    )
    found: set[int] = set()
    tail = b""
    with archive.open(sheet_path) as sheet:
        while chunk := sheet.read(1 << 20):
            buffer = tail + chunk
            cut = max(buffer.rfind(b"<"), 0)  # a tag may straddle two chunks: finish it next time
            found.update(int(row) for row in cell.findall(buffer, 0, cut))
            tail = buffer[cut:]
    found.update(int(row) for row in cell.findall(tail))
    return found


# --- common -------------------------------------------------------------------------------------


def _positional(frame: pl.DataFrame, first_column: int = 0) -> pl.DataFrame:
    """Name columns f{i} by 0-based sheet column, adding empty ones left of the first used one."""
    import polars as pl

    renamed = frame.rename({name: f"f{first_column + i}" for i, name in enumerate(frame.columns)})
    if first_column == 0:
        return renamed
    padding = [pl.lit(None, dtype=pl.String).alias(f"f{i}") for i in range(first_column)]
    return renamed.select(*padding, pl.all())


def _header_cells(raw: pl.DataFrame) -> list[str]:
    if raw.height == 0:
        return []
    cells = ["" if value is None else value for value in raw.row(0)]
    while cells and cells[-1] == "":
        cells.pop()
    return cells


def _build_sheet(
    file: Path, file_format: str, raw: pl.DataFrame, number_cells: dict[int, str]
) -> ContactSheet:
    """From positional columns f0..f{w-1}, row i = file row i+1, to the ContactSheet."""
    import polars as pl

    headers = _header_cells(raw)
    cells = raw.columns
    body = raw.slice(1).with_row_index("row", offset=2).with_columns(pl.col("row").cast(pl.Int64))
    # Keep a row if any of its cells has a value, extra ones included, so validation sees it.
    body = body.filter(pl.any_horizontal(pl.col(cells).is_not_null())) if cells else body.clear()
    data = body.select(*(pl.col(f"f{i}").alias(f"c{i}") for i in range(len(headers))), "row")
    extra_cells, extra_count = _extra_cells(body, cells[len(headers) :])
    return ContactSheet(
        path=file,
        file_format=file_format,
        headers=headers,
        data=data,
        number_cells=number_cells,
        extra_cells=extra_cells,
        extra_cell_count=extra_count,
    )


def _extra_cells(body: pl.DataFrame, extra: list[str]) -> tuple[list[tuple[int, int, str]], int]:
    """(row, 1-based column, value) of the values in columns `extra`, and how many there are."""
    import polars as pl

    if not extra:
        return [], 0
    found = (
        body.select("row", *extra)
        .unpivot(index="row", variable_name="column", value_name="value")
        .drop_nulls("value")
        .with_columns(pl.col("column").str.slice(1).cast(pl.Int64) + 1)
        .sort("row", "column")
    )
    return list(found.head(MAX_EXTRA_CELLS).iter_rows()), found.height
