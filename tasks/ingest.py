"""Read a user's contact file (.tsv or .xlsx) into polars as text, losing nothing.

The reader only rejects files it cannot read (missing, wrong format, corrupt, password-protected,
undecodable, a sheet asked for that isn't there); every content problem (headers, phones, blanks,
duplicates, formula errors) is left to validation, which needs each value exactly as written and
its spreadsheet position (header = row 1, columns 1-based), so:

* `headers` is row 1 as written, up to its last non-empty cell ('' for an empty cell in between;
  trailing empty cells are not headers, so a value under one is an extra cell). An empty row 1
  gives `headers == []`; an empty sheet or a TSV of blank lines gives that and no data rows,
  for validation to report "no header row" (a 0-byte file is unreadable instead).
* `header_row_found` is N when row 1 has no "CONTACT" cell (trimmed, any case) but row N, one of
  the first 20, has: a title above the headers. Nothing else changes (the headers are still row
  1), so validation can report that one problem instead of every value as misplaced.
* `data` has one String column per header, c0..c{n-1}, null for an empty cell, then "row":
  the row number in the file/sheet. Rows a person sees as empty (every cell empty or
  whitespace-only) are dropped; the others keep their number and their values as written.
* values right of the last header go to `extra_cells` (at most `MAX_EXTRA_CELLS` of them,
  `extra_cell_count` has the total); whitespace-only cells are empty, not extra values.
* `error_cells` lists (row, column, text) for cells that show a formula error ("#DIV/0!",
  "#N/A", ...) or hold a formula that was never calculated ("formula without a saved result":
  written by a script, never opened in Excel). They read as empty in `data`, and their rows are
  kept even when nothing else is in them, so validation can explain them instead of reporting
  empty cells. A TSV cell whose whole text is an error Excel or Calc displays ("#N/A",
  "Err:502") is one too: it was a formula when the sheet was saved as text.
* `notices` are things worth telling the person that are not errors (another sheet also holds
  rows); `sheet_name` is the sheet read (None for TSV).

Which sheet of an .xlsx: by default the first visible sheet holding any value; hidden and very
hidden sheets are never read by default and empty visible sheets are skipped. `sheet=` chooses
explicitly: a name (exact, else ignoring case; hidden sheets too) or a number, the n-th tab Excel
shows (hidden sheets don't count; a string of digits that is no sheet's name is a number, so a
command line can pass its text through). A choice that matches no sheet is a ContactFileError
listing the sheets. When the default choice leaves other sheets holding rows unread, one notice
names them. Visibility and "holds any value" come from the workbook and sheet XML (each sheet is
scanned only up to its first value), so unread sheets are never parsed by calamine.

.xlsx cells become the text a person sees: dates "2026-12-01", times "14:30", numbers "1500" /
"1500.5" (fastexcel's rendering: at most 9 decimals, no float noise), booleans "TRUE"/"FALSE".
Number formats: what reaches the SMS is the number as the cell shows it, without what depends on
the reader's locale or belongs to the message template:
  * percent formats apply: 0.15 shown as "15%" reads "15%" ("0.00%": "12.34%");
  * decimal places apply, rounded half away from zero as Excel does: 1500.5 in "0.00" or
    "#,##0.00" reads "1500.50", 1500.6 in "0" reads "1501", "0.0#" shows 1 to 2 decimals;
  * thousands separators, currency symbols and literal text do not: "#,##0" reads "1500",
    "$#,##0.00" reads "1500.00". The file does not say which separators the person's Excel
    shows (1,500.50 in Mexico, 1.500,50 in Spain) and a wrong guess changes the amount a
    customer reads; a missing separator never does. Symbols and words belong to the message
    ("${AMOUNT}"), or they would be doubled.
  * a negative number keeps its "-" where the format shows parentheses; scaling commas ("0,"
    shows thousands) apply; scientific, fraction, date and text formats are fastexcel's
    rendering as before.
Styles are read only when the workbook has a style whose format would change a number's text
and the sheet has number cells; only then is the sheet XML scanned for the cells that use one.
Formula cells give the result Excel saved. Error cells and never-calculated formulas read as
empty and are listed in `error_cells`; finding them scans the sheet XML only when a column with a
header has empty cells or the sheet's XML spans more rows than calamine returned (rows of
uncalculated formulas only).

TSV as spreadsheet programs save it: a field that starts with '"' is quoted ('""' inside is one
'"'; tabs and line breaks inside belong to the value, a line break is read as "\n"), provided the
closing quote ends the field; anywhere else a '"' is literal ('5" screen' stays as written), and
so is a field whose opening quote is never closed as one. A quoted cell spanning lines is one
row: rows are numbered as the spreadsheet program numbers them. Lines may end with LF, CRLF or
(old Mac) CR alone; a NUL byte anywhere makes the file unreadable (it is not text). Files without
a field starting with '"' take polars' fast path unchanged (three memchr scans added). Otherwise
quoted fields holding a tab or a line break (rare: an address on two lines) are swapped for NUL
tokens before polars parses, and the other quoted cells are unquoted afterwards where they are:
one quoted name in a million rows costs ~0.07 s, a million quoted names ~0.6 s.

The sheet XML is read with regular expressions over its bytes (ElementTree.iterparse takes 1.3 s
on 100,000 rows x 4 columns, the regexes under 0.1 s); they expect the attribute order every
common writer uses (r, then s, then t). A workbook shaped otherwise just loses these extras:
number formats, error cells and the scientific-format hint.

Import cost matters here (the CLI calls this before anything else), so polars and fastexcel are
imported inside the functions and openpyxl is not used at all (see `_scientific_rows`).
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smartchat.errors import ContactFileError

if TYPE_CHECKING:
    import zipfile
    from collections.abc import Iterator

    import fastexcel
    import polars as pl

# A file whose row 1 is not the header (a title line, say) would otherwise put every value of a
# million-row file here; validation only ever shows the first few.
MAX_EXTRA_CELLS = 10_000
# How far down a header row misplaced under a title is looked for.
HEADER_SEARCH_ROWS = 20

_CONTACT = "CONTACT"  # schemas.chatbot.CONTACT_HEADER; importing it would import pydantic

_ZIP_MAGIC = b"PK\x03\x04"
_EMPTY_ZIP_MAGIC = b"PK\x05\x06"
_OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")
# Excel encrypts a workbook by wrapping it in an OLE2 container holding these streams; OLE2 stores
# stream names as UTF-16LE.
_ENCRYPTION_STREAM = "EncryptionInfo".encode("utf-16-le")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF8_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 64 * 1024

# How fastexcel renders a date/time cell as a string (chrono's NaiveDateTime).
_EXCEL_DATETIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?$"
# Excel's day 0: a time-only cell (14:30) is a date on it.
_EXCEL_DAY_ZERO = ["1899-12-30", "1899-12-31"]
# How fastexcel renders a number cell; a text cell can look the same, hence the second look.
_NUMBER_TEXT = r"^-?[0-9]+(?:\.[0-9]+)?$"
_FRACTION_TEXT = r"^-?[0-9]+\.[0-9]+$"
# Excel keeps 15 significant digits: a longer integer lost some (no E.164 number is longer).
_EXCEL_DIGITS = 15
# The built-in number formats (ECMA-376 18.8.30) whose code matters here; the others are dates
# (fastexcel renders those) or locale-dependent, read as General.
_BUILTIN_FORMATS = {
    1: "0",
    2: "0.00",
    3: "#,##0",
    4: "#,##0.00",
    5: '"$"#,##0_);("$"#,##0)',
    6: '"$"#,##0_);[Red]("$"#,##0)',
    7: '"$"#,##0.00_);("$"#,##0.00)',
    8: '"$"#,##0.00_);[Red]("$"#,##0.00)',
    9: "0%",
    10: "0.00%",
    11: "0.00E+00",
    12: "# ?/?",
    13: "# ??/??",
    37: "#,##0 ;(#,##0)",
    38: "#,##0 ;[Red](#,##0)",
    39: "#,##0.00;(#,##0.00)",
    40: "#,##0.00;[Red](#,##0.00)",
    41: '_(* #,##0_);_(* (#,##0);_(* "-"_);_(@_)',
    42: '_("$"* #,##0_);_("$"* (#,##0);_("$"* "-"_);_(@_)',
    43: '_(* #,##0.00_);_(* (#,##0.00);_(* "-"??_);_(@_)',
    44: '_("$"* #,##0.00_);_("$"* (#,##0.00);_("$"* "-"??_);_(@_)',
    48: "##0.0E+0",
    49: "@",
}
# What Excel (and Calc, its "Err:5xx" codes aside) displays in a cell whose formula failed.
_ERROR_TEXTS = (
    "#DIV/0!",
    "#N/A",
    "#NAME?",
    "#NULL!",
    "#NUM!",
    "#REF!",
    "#VALUE!",
    "#SPILL!",
    "#CALC!",
    "#FIELD!",
    "#BLOCKED!",
    "#CONNECT!",
    "#BUSY!",
    "#UNKNOWN!",
    "#GETTING_DATA",
)
_CALC_ERROR_TEXT = r"^Err:[0-9]{3}$"
NO_SAVED_RESULT = "formula without a saved result"

SheetChoice = str | int | None


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
    # xlsx: the sheet read; None for TSV
    sheet_name: str | None = None
    # For the person, not errors: e.g. other sheets that hold rows and were not read.
    notices: list[str] = field(default_factory=list)
    # 1-based row holding the headers when row 1 doesn't (a title above them); None otherwise
    header_row_found: int | None = None
    # (row, 1-based column, "#DIV/0!" | ... | NO_SAVED_RESULT), sorted; these cells read as null
    error_cells: list[tuple[int, int, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.extra_cell_count = max(self.extra_cell_count, len(self.extra_cells))


def read_contacts(path: Path | str, sheet: SheetChoice = None) -> ContactSheet:
    """Read a .tsv or .xlsx contact file; raise ContactFileError if it can't be read at all.

    `sheet` (xlsx only) is a sheet name or the 1-based number of a visible tab; by default the
    first visible sheet holding any value is read.
    """
    file = Path(path)
    _check_is_readable_file(file)
    suffix = file.suffix.lower()
    if suffix not in (".tsv", ".xlsx"):
        raise ContactFileError(_unsupported_extension_message(file, suffix))
    content = _read_all(file)
    if suffix == ".tsv":
        contacts = _read_tsv(file, content, sheet)
    else:
        contacts = _read_xlsx(file, content, sheet)
    contacts.sha256 = hashlib.sha256(content).hexdigest()
    return contacts


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

# A '"' opening a field: at the start or after a tab or a line break. The literal '"' first lets
# the regex engine jump from quote to quote (20x faster than a class first); the negative
# lookbehind also matches at the very start of the file.
_FIELD_START_QUOTE = re.compile(rb'"(?<![^\t\n]")')
# A quoted field, as Excel and Calc write one, holding a tab or a line break: the only kind that
# changes where fields and rows end. Possessive, so a quote never closed fails in one pass.
_SPANNING_FIELD = re.compile(
    rb'"(?<![^\t\n]")'
    rb'([^"\t\r\n]*+(?:""[^"\t\r\n]*+)*+[\t\r\n][^"]*+(?:""[^"]*+)*+)'
    rb'"(?=\t|\r?\n|\r?\Z)'
)
# A cell polars read that is a whole quoted field (closing quote last, inner quotes doubled).
_QUOTED_CELL = r'^"(?:[^"]|"")*"$'
# What a spanning field is replaced by while polars parses: NUL never occurs in the text (checked).
_TOKEN = "\x00"


def _read_tsv(file: Path, content: bytes, sheet: SheetChoice) -> ContactSheet:
    if sheet is not None:
        raise ContactFileError(
            f"Contact file '{file}' is tab-separated text, which has no sheets to choose from: "
            "leave out --sheet."
        )
    source = _lf_line_ends(_tsv_source(file, content)).removeprefix(_UTF8_BOM)
    may_hold_errors = _may_hold_error_texts(source)
    quoted = _has_quoted_field(source)
    spanning: list[str | None] = []
    if quoted:
        source, spanning = _replace_spanning_fields(file, source)
    raw = _tsv_frame(file, source)
    if quoted:
        raw = _unquote(raw, spanning)
    raw, error_cells = _error_texts(raw) if may_hold_errors else (raw, [])
    return _build_sheet(file, "tsv", raw, number_cells={}, error_cells=error_cells)


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
    if b"\x00" in content:  # memchr: ~3 ms for 35 MB; tokens and the ragged reader rely on it
        raise ContactFileError(
            f"Contact file '{file}' is not UTF-8 text (it contains NUL bytes, like UTF-16 text "
            "without a byte-order mark or a binary file): save it as UTF-8 TSV or .xlsx."
        )
    return content


def _lf_line_ends(source: bytes) -> bytes:
    """Old Mac programs end lines with CR alone, which polars does not split on."""
    first_cr = source.find(b"\r", 0, _SNIFF_BYTES)
    if first_cr == -1 or source[first_cr + 1 : first_cr + 2] == b"\n":
        return source
    first_lf = source.find(b"\n", 0, _SNIFF_BYTES)
    if first_lf != -1 and first_lf < first_cr:
        return source
    return source.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def _has_quoted_field(source: bytes) -> bool:
    # memchr first: most files have no '"' at all and pay ~3 ms for 35 MB.
    return b'"' in source and _FIELD_START_QUOTE.search(source) is not None


def _replace_spanning_fields(file: Path, source: bytes) -> tuple[bytes, list[str | None]]:
    """Replace each quoted field holding a tab or a line break by NUL + its index in the list.

    Then polars reads one line per row, a field per tab, as without quoting; the other quoted
    fields stay for `_unquote`. Such cells are rare (an address on two lines), so a Python step
    per field is fine; a file quoting every name does not pay it.
    """
    values: list[bytes] = []

    def token(field: re.Match[bytes]) -> bytes:
        values.append(field.group(1))
        return b"\x00%d" % (len(values) - 1)

    replaced = _SPANNING_FIELD.sub(token, source)
    try:
        texts = [_cell_text(value) for value in values]
    except UnicodeDecodeError:
        _check_utf8(file, source)  # raises, naming the line
        raise
    return replaced, texts


def _cell_text(quoted: bytes) -> str | None:
    """A quoted field's content as the cell held it: one '"' per '""', line breaks as LF."""
    text = quoted.replace(b'""', b'"').decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") or None


def _unquote(raw: pl.DataFrame, spanning: list[str | None]) -> pl.DataFrame:
    """Quoted cells as the program meant them, and spanning fields back from their tokens.

    Only the cells starting with '"' or a token are touched (gathered, rewritten, scattered
    back): a file with one quoted name among a million rows pays for one cell, not a column.
    """
    import polars as pl

    if raw.width == 0:
        return raw
    # One parallel pass says which columns have either kind of cell.
    prefixes = ['"', _TOKEN] if spanning else ['"']
    flags = raw.select(
        pl.any_horizontal(pl.col(c).str.starts_with(p).any() for p in prefixes).alias(c)
        for c in raw.columns
    ).row(0)
    originals = pl.Series(spanning, dtype=pl.String)
    columns = []
    for name, flagged in zip(raw.columns, flags, strict=True):
        column = raw.get_column(name)
        if flagged:
            column = _unquote_column(column, originals)
        columns.append(column)
    return pl.DataFrame(columns)


def _unquote_column(column: pl.Series, originals: pl.Series) -> pl.Series:
    import polars as pl

    at, cells = _cells_starting_with(column, '"')
    if at.len():
        quoted = cells.str.contains(_QUOTED_CELL)
        inner = cells.filter(quoted).str.strip_prefix('"').str.strip_suffix('"')
        unquoted = inner.str.replace_all('""', '"', literal=True).replace("", None)
        column = column.scatter(at.filter(quoted), unquoted)
    if originals.len():
        at, cells = _cells_starting_with(column, _TOKEN)
        if at.len():
            column = column.scatter(at, originals.gather(cells.str.slice(1).cast(pl.Int64)))
    return column


def _cells_starting_with(column: pl.Series, prefix: str) -> tuple[pl.Series, pl.Series]:
    """The positions of the cells starting with `prefix`, and those cells."""
    at = column.str.starts_with(prefix).arg_true()
    return at, column.gather(at)


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
        quote_char=None,  # quoted fields were replaced by tokens; any other '"' is literal
        infer_schema=False,  # everything String: "0012" stays "0012"
        encoding="utf8",
    )


def _read_tsv_ragged(source: bytes) -> pl.DataFrame:
    """Slower path for rows of different widths: split each line ourselves."""
    import polars as pl

    lines = pl.read_csv(
        source,
        separator=_absent_control_character(source),  # so each line is one field
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


def _absent_control_character(source: bytes) -> str:
    """A control character the text doesn't hold (NUL may be there: the tokens of quoted fields)."""
    absent = (chr(c) for c in range(1, 32) if c not in (9, 10, 13) and bytes([c]) not in source)
    return next(absent, "\x00")  # a file holding every control character is split anyway


def _check_utf8(file: Path, raw: bytes) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ContactFileError(
            f"Contact file '{file}' is not UTF-8 text (line {line} has bytes that are not "
            "UTF-8, as in files saved as ANSI/Windows-1252): save it as UTF-8 TSV or .xlsx."
        ) from None


def _may_hold_error_texts(source: bytes) -> bool:
    # memchr for one character costs ~3 ms on 35 MB; the slower "Err:" search runs only after ':'.
    return b"#" in source or (b":" in source and b"Err:" in source)


def _error_texts(raw: pl.DataFrame) -> tuple[pl.DataFrame, list[tuple[int, int, str]]]:
    """Cells reading "#N/A", "Err:502"...: a formula's error, saved as text. Emptied and listed."""
    import polars as pl

    if raw.width == 0:
        return raw, []
    # starts_with is a cheap screen; the exact test runs only on columns that pass it.
    flags = raw.select(
        (pl.all().str.starts_with("#") | pl.all().str.starts_with("Err:")).any()
    ).row(0)
    suspects = [name for name, flagged in zip(raw.columns, flags, strict=True) if flagged]
    if not suspects:
        return raw, []
    found: list[tuple[int, int, str]] = []
    exprs = []
    for name in suspects:
        is_error = pl.col(name).is_in(list(_ERROR_TEXTS)) | pl.col(name).str.contains(
            _CALC_ERROR_TEXT
        )
        rows = raw.with_row_index("i").filter(is_error.fill_null(False)).select("i", name)
        column = int(name[1:]) + 1
        found += [(i + 1, column, text) for i, text in rows.iter_rows()]
        exprs.append(pl.when(is_error).then(None).otherwise(pl.col(name)).alias(name))
    return raw.with_columns(exprs), found


# --- xlsx ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sheet:
    """A worksheet as the workbook lists it."""

    name: str
    state: str  # "visible" | "hidden" | "veryHidden", as in xl/workbook.xml
    path: str | None  # its XML in the zip; None when the workbook's layout could not be followed
    holds_values: bool


def _read_xlsx(file: Path, content: bytes, choice: SheetChoice) -> ContactSheet:
    _check_xlsx_container(file, content)
    import fastexcel

    try:
        reader = fastexcel.read_excel(content)
        if not reader.sheet_names:
            raise ContactFileError(
                f"Contact file '{file}' has no worksheets: put your contacts on the first sheet "
                "and save it again."
            )
        archive = _open_zip(content)
        try:
            sheets = _list_sheets(archive, reader)
            chosen = _choose_sheet(file, sheets, choice)
            raw = _excel_text(_load_sheet(reader, chosen.name))
            number_cells = _number_cells(reader, archive, chosen, raw)
            raw = _apply_number_formats(archive, chosen, raw)
            raw, error_cells = _formula_errors(archive, chosen, raw)
        finally:
            if archive:
                archive.close()
    except fastexcel.FastExcelError:
        raise ContactFileError(
            f"Contact file '{file}' could not be read as an Excel workbook (it is damaged or not "
            "an .xlsx file): open it in Excel and save it again as .xlsx."
        ) from None
    return _build_sheet(
        file,
        "xlsx",
        raw,
        number_cells=number_cells,
        error_cells=error_cells,
        sheet_name=chosen.name,
        notices=_unread_sheets_notice(chosen, sheets) if choice is None else [],
    )


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


def _open_zip(content: bytes) -> zipfile.ZipFile | None:
    """The workbook as a zip, for the XML calamine doesn't expose; None if it can't be opened."""
    import zipfile

    try:
        return zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


# Errors the best-effort XML readers expect from a workbook laid out unlike Excel's.
def _xml_errors() -> tuple[type[Exception], ...]:
    import zipfile
    from xml.etree import ElementTree

    return (KeyError, OSError, ValueError, zipfile.BadZipFile, ElementTree.ParseError)


# --- xlsx: which sheet --------------------------------------------------------------------------


def _list_sheets(archive: zipfile.ZipFile | None, reader: fastexcel.ExcelReader) -> list[_Sheet]:
    """Every sheet with its visibility and whether it holds a value, in the workbook's order."""
    listed = _sheets_from_xml(archive) if archive else None
    if listed is None or [sheet.name for sheet in listed] != reader.sheet_names:
        return _sheets_from_fastexcel(reader)
    return listed


def _sheets_from_xml(archive: zipfile.ZipFile) -> list[_Sheet] | None:
    """From xl/workbook.xml and its relationships, as calamine finds them; None if not there."""
    from xml.etree import ElementTree

    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
        targets = {rel.get("Id"): rel.get("Target", "") for rel in rels}
        sheets = []
        for element in workbook.iter():
            if _local(element.tag) != "sheet":
                continue
            rel_id = next((v for k, v in element.attrib.items() if _local(k) == "id"), None)
            path = _zip_member(targets[rel_id])
            sheets.append(
                _Sheet(
                    name=element.get("name", ""),
                    state=element.get("state", "visible"),
                    path=path,
                    holds_values=_holds_values(archive, path),
                )
            )
        return sheets
    except _xml_errors():
        return None


def _zip_member(target: str) -> str:
    """A relationship target of xl/workbook.xml as a zip member name."""
    if target.startswith("/"):
        return target.lstrip("/")
    return posixpath.normpath(f"xl/{target}")


# A cell's value (<v>), inline text (<is>) or formula (<f>), in a sheet's XML.
_CELL_VALUE = re.compile(rb"<(?:\w+:)?v>[^<]|<(?:\w+:)?(?:is|f)[\s>/]")


def _holds_values(archive: zipfile.ZipFile, path: str) -> bool:
    """Whether the sheet XML has any cell value or formula: stops at the first one."""
    tail = b""
    with archive.open(path) as stream:
        while chunk := stream.read(1 << 16):
            if _CELL_VALUE.search(tail + chunk):
                return True
            tail = chunk[-16:]  # a tag cut between two reads is whole in the next search
    return False


def _sheets_from_fastexcel(reader: fastexcel.ExcelReader) -> list[_Sheet]:
    """The slow, sure way (every sheet parsed) for a workbook whose XML we could not follow."""
    import polars as pl

    states = {"visible": "visible", "hidden": "hidden", "veryhidden": "veryHidden"}
    sheets = []
    for name in reader.sheet_names:
        loaded = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
        frame = loaded.to_polars()
        holds = frame.width > 0 and bool(
            frame.select(pl.any_horizontal(pl.all().is_not_null()).any()).item()
        )
        sheets.append(_Sheet(name, states.get(str(loaded.visible), "visible"), None, holds))
    return sheets


def _choose_sheet(file: Path, sheets: list[_Sheet], choice: SheetChoice) -> _Sheet:
    visible = [sheet for sheet in sheets if sheet.state == "visible"]
    if choice is None:
        # Excel always keeps a sheet visible; `sheets[0]` is for a workbook that breaks the rule.
        fallback = visible[0] if visible else sheets[0]
        return next((sheet for sheet in visible if sheet.holds_values), fallback)
    if isinstance(choice, str):
        named = _sheet_named(sheets, choice)
        if named:
            return named
    number = choice if isinstance(choice, int) else _digits(choice)
    if number is not None and 1 <= number <= len(visible):
        return visible[number - 1]
    raise ContactFileError(_no_such_sheet_message(file, sheets, choice))


def _sheet_named(sheets: list[_Sheet], name: str) -> _Sheet | None:
    # Excel treats sheet names case-insensitively (no two may differ only in case).
    exact = next((sheet for sheet in sheets if sheet.name == name), None)
    folded = name.casefold()
    return exact or next((sheet for sheet in sheets if sheet.name.casefold() == folded), None)


def _digits(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.isascii() and text.isdigit() else None


def _no_such_sheet_message(file: Path, sheets: list[_Sheet], choice: str | int) -> str:
    asked = f"number {choice}" if isinstance(choice, int) else f"'{choice}'"
    numbered = [sheet for sheet in sheets if sheet.state == "visible"]
    names = [f"{i} '{sheet.name}'" for i, sheet in enumerate(numbered, start=1)]
    names += [f"'{sheet.name}'{_state_note(sheet)}" for sheet in sheets if sheet not in numbered]
    return (
        f"Contact file '{file}' has no sheet {asked}: its sheets are {_join(names)}. Give a "
        "sheet's name, or the number of its tab counting the tabs Excel shows."
    )


def _state_note(sheet: _Sheet) -> str:
    return {"hidden": " (hidden)", "veryHidden": " (very hidden)"}.get(sheet.state, "")


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _unread_sheets_notice(chosen: _Sheet, sheets: list[_Sheet]) -> list[str]:
    """One notice naming every other sheet that holds rows, when the default choice skipped it."""
    others = [sheet for sheet in sheets if sheet.holds_values and sheet != chosen]
    if not others:
        return []
    if chosen.holds_values:
        read, also = f"Read sheet '{chosen.name}'; ", "also "
    else:
        read, also = f"Sheet '{chosen.name}' is empty; ", ""
    if len(others) == 1:
        other = others[0]
        return [
            f"{read}sheet '{other.name}' {also}holds rows{_state_note(other)} and was not read: "
            "use --sheet to choose."
        ]
    names = _join([f"'{sheet.name}'{_state_note(sheet)}" for sheet in others])
    return [f"{read}sheets {names} {also}hold rows and were not read: use --sheet to choose."]


# --- xlsx: cells as text ------------------------------------------------------------------------


def _load_sheet(reader: fastexcel.ExcelReader, name: str) -> pl.DataFrame:
    """The sheet as fastexcel renders it to strings, columns f{i} from column A, row 1 first.

    The sheet object holds calamine's cell grid (the peak of memory); returning only the frame
    lets it go before the rest of the work.
    """
    sheet = reader.load_sheet(name, header_row=None, skip_rows=0, dtypes="string")
    # The sheet's range starts at its first used column: re-anchor it on column A.
    first_column = sheet.selected_columns[0].absolute_index if sheet.width else 0
    return _positional(sheet.to_polars(), first_column)


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


# --- xlsx: phone numbers typed as numbers -------------------------------------------------------


def _number_cells(
    reader: fastexcel.ExcelReader,
    archive: zipfile.ZipFile | None,
    sheet: _Sheet,
    raw: pl.DataFrame,
) -> dict[int, str]:
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
        sheet.name, header_row=None, skip_rows=0, use_columns=[0], dtypes="boolean"
    ).to_polars()
    if typed.height != raw.height:  # not the same grid: can't tell, let validation see text
        return {}
    is_number_cell = typed.to_series(0).slice(1).is_not_null()
    numbers = contact.filter(looks_numeric & is_number_cell)
    kinds = {
        row: "scientific" if _lost_digits(value) else "number" for row, value in numbers.iter_rows()
    }
    plain = {row for row, kind in kinds.items() if kind == "number"}
    for row in _scientific_rows(archive, sheet, plain):
        kinds[row] = "scientific"
    return kinds


def _lost_digits(value: str) -> bool:
    integer = value.lstrip("-").split(".")[0].lstrip("0")
    return len(integer) > _EXCEL_DIGITS


def _scientific_rows(archive: zipfile.ZipFile | None, sheet: _Sheet, rows: set[int]) -> set[int]:
    """Which of `rows` have a scientific number format (0.00E+00) in column A.

    openpyxl would tell, but its read-only mode parses every cell of every row (8.5 s for 100k
    rows x 4 columns), so read only what is needed with the standard library: the styles, and
    column A's style ids, and only when a scientific style exists at all. Best effort: a
    workbook laid out unlike Excel's just gets "number".
    """
    if not rows or archive is None or sheet.path is None:
        return set()
    try:
        formats = _cell_formats(archive)
        styles = {i for i, code in enumerate(formats) if _is_scientific_format(code)}
        if not styles:
            return set()
        ids = b"|".join(str(style).encode() for style in sorted(styles))
        # <c r="A12" s="3" ...>: Excel, Calc, openpyxl and xlsxwriter all write `r` first.
        pattern = rb'<%bc r="A([0-9]+)"[^>]*?\ss="(?:' + ids + rb')"'
        found = _find_all(archive, sheet.path, pattern)
    except _xml_errors():
        return set()
    return {int(row) for row in found} & rows


def _is_scientific_format(code: str) -> bool:
    # Quoted literals and \-escaped characters are text, not format codes.
    bare = re.sub(r'"[^"]*"|\\.', "", code)
    return re.search(r"[eE][+-]", bare) is not None


# --- xlsx: styles and the sheet XML -------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _cell_formats(archive: zipfile.ZipFile) -> list[str]:
    """The number format code of each cell style (cellXfs index), "General" when it has none."""
    from xml.etree import ElementTree

    root = ElementTree.fromstring(archive.read("xl/styles.xml"))
    codes: dict[int, str] = dict(_BUILTIN_FORMATS)
    ids: list[int] = []
    for element in root:
        if _local(element.tag) == "numFmts":
            for fmt in element:
                codes[int(fmt.get("numFmtId", "-1"))] = fmt.get("formatCode", "General")
        elif _local(element.tag) == "cellXfs":
            ids = [int(xf.get("numFmtId", "0")) for xf in element]
    return [codes.get(fmt_id, "General") for fmt_id in ids]


def _sheet_pieces(archive: zipfile.ZipFile, path: str) -> Iterator[tuple[bytes, bytes]]:
    """The sheet XML in pieces of about 1 MB, each ending after a cell's end tag (no cell is
    ever split), with the namespace prefix of its elements (Excel writes none, some libraries
    "x:"). Patterns written with that prefix start with a literal the regex engine skips to."""
    with archive.open(path) as stream:
        buffer = stream.read(1 << 20)
        prefix = _xml_prefix(buffer)
        cell_end = b"</" + prefix + b"c>"
        while buffer:
            chunk = stream.read(1 << 20)
            cut = len(buffer) if not chunk else buffer.rfind(cell_end) + len(cell_end)
            if cut < len(cell_end):  # no whole cell yet: read on
                buffer += chunk
                continue
            yield buffer[:cut], prefix
            buffer = buffer[cut:] + chunk


def _find_all(archive: zipfile.ZipFile, path: str, pattern: bytes) -> list[Any]:
    """findall of `pattern` over the sheet XML, %b in it standing for the namespace prefix."""
    found: list[Any] = []
    for piece, prefix in _sheet_pieces(archive, path):
        found += re.findall(pattern.replace(b"%b", prefix), piece)
    return found


def _xml_prefix(head: bytes) -> bytes:
    """The namespace prefix of the sheet's elements ('x:' in <x:worksheet>), usually none."""
    root = re.search(rb"<(\w+:)?worksheet[\s>]", head)
    return (root.group(1) or b"") if root else b""


def _column_index(letters: bytes) -> int:
    """0-based column of "A", "Z", "AA"... ."""
    index = 0
    for letter in letters:
        index = index * 26 + letter - 64
    return index - 1


def _sheet_dimension_rows(archive: zipfile.ZipFile, path: str) -> int:
    """Last row of the sheet's <dimension ref="A1:D120"> (0 if absent): it counts formula cells
    without a value, which calamine leaves out of its range."""
    with archive.open(path) as stream:
        head = stream.read(1 << 14)
    found = re.search(rb'<(?:\w+:)?dimension ref="[A-Z]*[0-9]*:?[A-Z]*([0-9]+)"', head)
    return int(found.group(1)) if found else 0


# --- xlsx: number formats -----------------------------------------------------------------------


@dataclass(frozen=True)
class _NumberDisplay:
    """How a number format shows a number, reduced to what an SMS should carry (module doc)."""

    decimals: int  # places always shown (0 after the point)
    optional: int  # more places shown when not zero (# and ? after the point)
    percent: int  # '%' signs: each multiplies by 100
    scale: int  # 1000 per comma right of the last digit placeholder

    def changes(self, has_fractions: bool) -> bool:
        """Whether some value's text changes; an integer format only rounds fractions."""
        return bool(self.decimals or self.percent or self.scale != 1 or has_fractions)

    def render(self, text: str) -> str | None:
        try:
            number = Decimal(text) * 100**self.percent / self.scale
            places = Decimal(1).scaleb(-(self.decimals + self.optional))
            shown = f"{number.quantize(places, rounding=ROUND_HALF_UP):f}"
        except InvalidOperation:  # not a number, or too many digits to round: leave it
            return None
        if self.optional and "." in shown:
            whole, fraction = shown.split(".")
            fraction = fraction.rstrip("0").ljust(self.decimals, "0")
            shown = f"{whole}.{fraction}" if fraction else whole
        if shown.startswith("-") and not shown.strip("-0."):
            shown = shown[1:]  # -0.001 in "0.00" shows 0.00
        return shown + "%" * self.percent


def _number_display(code: str) -> _NumberDisplay | None:
    """A plain number format's display, or None for General, dates, text, fractions, 1E+05."""
    # Quoted text, escapes, padding (_x), fills (*x) and [Red]/[$€-40A]/[>100] show no digits.
    bare = re.sub(r'"[^"]*"|\\.|_.|\*.|\[[^\]]*\]', "", code).split(";")[0]
    # Letters are date/time parts, General, or the E of scientific; '@' is text, '/' fractions.
    if re.search(r"[A-Za-z@/]", bare) or not re.search(r"[0#?]", bare):
        return None
    fraction = bare.partition(".")[2]
    scaling = re.search(r"[0#?](,+)[^0#?]*$", bare)
    return _NumberDisplay(
        decimals=fraction.count("0"),
        optional=fraction.count("#") + fraction.count("?"),
        percent=bare.count("%"),
        scale=1000 ** len(scaling.group(1)) if scaling else 1,
    )


def _apply_number_formats(
    archive: zipfile.ZipFile | None, sheet: _Sheet, raw: pl.DataFrame
) -> pl.DataFrame:
    """Number cells whose format changes their text (percent, decimals) as the module doc says.

    Cheapest test first: the styles (a few KB), then whether the sheet has numbers at all, and
    only then the sheet XML, for the cells using one of those styles.
    """
    if archive is None or sheet.path is None or raw.height < 2:
        return raw
    try:
        displays = {i: _number_display(code) for i, code in enumerate(_cell_formats(archive))}
        candidates = {i: d for i, d in displays.items() if d is not None}
        if not candidates:
            return raw
        has_numbers, has_fractions = _number_flags(raw)
        styles = {i: d for i, d in candidates.items() if d.changes(has_fractions)}
        if not has_numbers or not styles:
            return raw
        ids = b"|".join(str(style).encode() for style in sorted(styles))
        # Number cells only (no type, or t="n"): text, boolean and error cells keep their text.
        # Style first, type after: the order Excel, Calc, openpyxl and xlsxwriter write them in.
        pattern = rb'<%bc r="([A-Z]{1,3})([0-9]+)" s="(' + ids + rb')"(?: t="n")?(?! t=)[\s/>]'
        cells = _find_all(archive, sheet.path, pattern)
    except _xml_errors():
        return raw
    return _render_cells(raw, cells, styles)


def _number_flags(raw: pl.DataFrame) -> tuple[bool, bool]:
    """Whether rows 2+ have number-like text, and number-like text with decimals."""
    import polars as pl

    body = raw.slice(1)
    flags = body.select(
        pl.any_horizontal(pl.all().str.contains(_NUMBER_TEXT)).any().alias("number"),
        pl.any_horizontal(pl.all().str.contains(_FRACTION_TEXT)).any().alias("fraction"),
    ).row(0)
    return bool(flags[0]), bool(flags[1])


def _render_cells(
    raw: pl.DataFrame, cells: list[tuple[bytes, bytes, bytes]], styles: dict[int, _NumberDisplay]
) -> pl.DataFrame:
    """Rewrite the number cells found in the sheet XML, (column letters, row, style) each.

    Vectorised but for one Python call per distinct (value, style): a column of amounts has
    far fewer distinct values than rows.
    """
    import polars as pl

    if not cells:
        return raw
    letters, rows, style_ids = zip(*cells, strict=True)
    columns = {name: _column_index(name) for name in set(letters)}
    found = pl.DataFrame(
        {
            "column": [columns[name] for name in letters],
            "index": pl.Series(rows, dtype=pl.Binary).cast(pl.String).cast(pl.Int64) - 1,
            "style": pl.Series(style_ids, dtype=pl.Binary).cast(pl.String).cast(pl.Int64),
        }
    ).filter((pl.col("column") < raw.width) & (pl.col("index") < raw.height))
    updates = []
    for (column,), group in found.group_by("column"):
        series = raw.get_column(f"f{column}")
        cells_here = group.select("index", "style", series.gather(group["index"]).alias("value"))
        distinct = cells_here.drop_nulls("value").unique(["value", "style"])
        shown = [
            styles[style].render(value) or value
            for value, style in distinct.select("value", "style").iter_rows()
        ]
        texts = cells_here.join(
            distinct.with_columns(pl.Series("text", shown, dtype=pl.String)),
            on=["value", "style"],
            how="inner",
        )
        updates.append(series.scatter(texts["index"], texts["text"]))
    return raw.with_columns(updates) if updates else raw


# --- xlsx: formula errors -----------------------------------------------------------------------


def _formula_errors(
    archive: zipfile.ZipFile | None, sheet: _Sheet, raw: pl.DataFrame
) -> tuple[pl.DataFrame, list[tuple[int, int, str]]]:
    """Cells showing a formula error, and formulas never calculated; both read as empty.

    Both can only hide behind an empty cell, so the sheet XML is scanned only when a column with
    a header has one, or when the XML spans rows calamine left out (rows of such formulas only).
    Rows found beyond the sheet as read are added, empty, so validation sees them.
    """
    import polars as pl

    if archive is None or sheet.path is None:
        return raw, []
    width = len(_header_cells(raw))
    try:
        if not width or not (
            _has_empty_cells(raw, width) or _sheet_dimension_rows(archive, sheet.path) > raw.height
        ):
            return raw, []
        found = _error_cells(archive, sheet.path)
    except _xml_errors():
        return raw, []
    last = max((row for row, _, _ in found), default=0)
    if last > raw.height:
        raw = pl.concat([raw, raw.clear(last - raw.height)])
    return raw, found


def _error_cells(archive: zipfile.ZipFile, path: str) -> list[tuple[int, int, str]]:
    """(row, column, text) of error cells and of formulas without a saved result.

    Each pattern starts at what is rare in a sheet (t="e", a formula's end) rather than at every
    cell; the cell's reference is then read back from its start tag.
    """
    found: list[tuple[int, int, str]] = []
    for piece, prefix in _sheet_pieces(archive, path):
        error, *formula_ends = _error_patterns(prefix)
        for match in error.finditer(piece):
            row, column, _ = _cell_at(piece, match.start(), prefix)
            found.append((row, column, match.group(1).decode()))
        for pattern in formula_ends:
            for match in pattern.finditer(piece):
                row, column, attributes = _cell_at(piece, match.start(), prefix)
                # An empty <v> is a saved result when the formula gives text: "" is one.
                if not match.group(1) or not re.search(_TEXT_TYPE, attributes):
                    found.append((row, column, NO_SAVED_RESULT))
    return found


def _error_patterns(prefix: bytes) -> list[re.Pattern[bytes]]:
    """An error cell's type and value; a formula's end followed by no value, or an empty one."""
    formula = rb"(?:<%bf[^>]*/>|<%bf[^>]*>[^<]*</%bf>)"
    no_value = rb"(<%bv\s*/>|<%bv></%bv>)?</%bc>"
    patterns = [
        rb' t="e"[^>]*>' + formula + rb"?<%bv>([^<]*)<",
        rb"</%bf>" + no_value,
        rb"<%bf [^>]*/>" + no_value,  # a shared formula's other cells: <f t="shared" si="0"/>
    ]
    return [re.compile(pattern.replace(b"%b", prefix)) for pattern in patterns]


_CELL_START = re.compile(rb'<(?:\w+:)?c r="([A-Z]{1,3})([0-9]+)"([^>]*)>')
_TEXT_TYPE = rb'\st="(?:str|s|inlineStr|b|e)"'


def _cell_at(piece: bytes, position: int, prefix: bytes) -> tuple[int, int, bytes]:
    """(row, 1-based column, attributes) of the cell whose XML holds `position`."""
    cell = _CELL_START.match(piece, piece.rfind(b"<" + prefix + b"c ", 0, position))
    if cell is None:
        raise ValueError("a cell without a reference")  # one of _xml_errors(): best effort
    letters, row, attributes = cell.groups()
    return int(row), _column_index(letters) + 1, attributes


def _has_empty_cells(raw: pl.DataFrame, width: int) -> bool:
    import polars as pl

    headed = [f"f{i}" for i in range(min(width, raw.width))]
    body = raw.slice(1).select(headed)
    return bool(body.select(pl.any_horizontal(pl.all().is_null()).any()).item())


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


def _header_row_found(raw: pl.DataFrame) -> int | None:
    """The row of the first 20 holding a CONTACT cell, when it is not row 1 (a title above)."""
    for number, cells in enumerate(raw.head(HEADER_SEARCH_ROWS).iter_rows(), start=1):
        if any(cell is not None and cell.strip().upper() == _CONTACT for cell in cells):
            return None if number == 1 else number
    return None


def _build_sheet(
    file: Path,
    file_format: str,
    raw: pl.DataFrame,
    *,
    number_cells: dict[int, str],
    error_cells: list[tuple[int, int, str]],
    sheet_name: str | None = None,
    notices: list[str] | None = None,
) -> ContactSheet:
    """From positional columns f0..f{w-1}, row i = file row i+1, to the ContactSheet."""
    import polars as pl

    headers = _header_cells(raw)
    body = raw.slice(1).with_row_index("row", offset=2).with_columns(pl.col("row").cast(pl.Int64))
    body = _rows_with_values(body, raw.columns, {row for row, _, _ in error_cells})
    data = body.select(*(pl.col(f"f{i}").alias(f"c{i}") for i in range(len(headers))), "row")
    extra_cells, extra_count = _extra_cells(body, raw.columns[len(headers) :])
    return ContactSheet(
        path=file,
        file_format=file_format,
        headers=headers,
        data=data,
        number_cells=number_cells,
        extra_cells=extra_cells,
        extra_cell_count=extra_count,
        sheet_name=sheet_name,
        notices=notices or [],
        header_row_found=_header_row_found(raw),
        error_cells=sorted(error_cells),
    )


def _rows_with_values(body: pl.DataFrame, cells: list[str], keep: set[int]) -> pl.DataFrame:
    """The rows a person sees something in (extra cells included, so validation sees them),
    and the rows in `keep` (error cells, which read as empty)."""
    import polars as pl

    if not cells:
        return body.clear()
    kept = pl.col("row").is_in(list(keep))
    body = body.filter(pl.any_horizontal(pl.col(cells).is_not_null()) | kept)
    # Whitespace-only is empty (README), so a row of spaces is an empty row. Only a row whose
    # first cell is missing or starts with whitespace can be one. Every whitespace character
    # sorts below "!" or from U+0085 on, and two comparisons cost a tenth of a regex: the exact
    # test then runs on a handful of rows, even in a million-row file.
    first = pl.col(cells[0])
    suspects = body.filter(first.is_null() | (first < "!") | (first >= "\u0085"))
    if suspects.height == 0:
        return body
    has_text = pl.any_horizontal(pl.col(cells).str.contains(r"\S").fill_null(False))
    blank = suspects.filter(~has_text & ~kept).get_column("row")
    return body.filter(~pl.col("row").is_in(blank.implode())) if blank.len() else body


def _extra_cells(body: pl.DataFrame, extra: list[str]) -> tuple[list[tuple[int, int, str]], int]:
    """(row, 1-based column, value) of the values in columns `extra`, and how many there are."""
    import polars as pl

    if not extra:
        return [], 0
    found = (
        body.select("row", *extra)
        .unpivot(index="row", variable_name="column", value_name="value")
        .filter(pl.col("value").str.contains(r"\S"))  # null or whitespace-only: nothing there
        .with_columns(pl.col("column").str.slice(1).cast(pl.Int64) + 1)
        .sort("row", "column")
    )
    return list(found.head(MAX_EXTRA_CELLS).iter_rows()), found.height
