"""The validation report as a workbook: the user's own sheet back, each failing cell explained.

Sheet "Contacts" is the contact file as read, every value in its own row and column (blank rows
kept, so row numbers match the file), every value as text (a `=HYPERLINK(...)` stays inert
text, a leading + or 0 stays), control characters shown as \\xNN; failing cells are filled red,
and the first `MAX_COMMENTS` of them also carry their reasons as a comment. Sheet "Problems"
lists every problem (row, column, header, value, rule, reason) with an autofilter. Both have a
bold, frozen header row and columns sized to their content.

The workbook is written by hand as SpreadsheetML (the XML inside an .xlsx). On a file of 200,000
problems openpyxl (write-only mode, a Comment per failing cell) took 42 s and 1.4 GB here, and
xlsxwriter spends about 5 µs per cell in Python (11.7 s for the same 2 million cells without any
other work), while polars builds a slice of rows' XML in a few vectorised string operations
(2-3 s and under 100 MB for the whole report: benchmarks/bench_report.py). The slices are
streamed into the zip, so memory stays flat however long the file. The parts, their order and
the VML that Excel needs to show comments mirror what xlsxwriter writes (without the optional
theme and document properties), and LibreOffice opens the result with its comments and filter.
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from smartchat.errors import OutputFileError
from tasks.safe_write import atomic_output, same_file
from tasks.validation import column_letter

if TYPE_CHECKING:
    from tasks.ingest import ContactSheet
    from tasks.validation import ValidationReport

# Excel's limits: a sheet has 1,048,576 rows and 16,384 columns (A..XFD).
MAX_ROWS = 1_048_576
MAX_COLUMNS = 16_384
# Comments are the slow, heavy part of a workbook for Excel too (each is a drawing); past this
# many failing cells the reasons are in the Problems sheet only.
MAX_COMMENTS = 5_000
# Rows turned into XML at a time: big enough for polars to pay off, small enough that memory
# stays flat (measured on 200,000 problems: 10,000 rows added 95 MB to the process, 50,000 added
# 275 MB, for the same time).
SLICE_ROWS = 10_000
# Deflate level 1 instead of the default 6: 1.4 s less for 200,000 problems, for a file of 13.7 MB
# instead of 10.7 MB.
COMPRESSION_LEVEL = 1

PROBLEM_HEADERS = ("Row", "Column", "Header", "Value", "Rule", "Problem")
_PROBLEM_FIELDS = ("row", "letter", "header", "value", "rule", "message")
# Column widths, in characters: from the content, within these bounds.
_MIN_WIDTH, _MAX_WIDTH = 8, 60
_PROBLEM_MAX_WIDTHS = (10, 8, 30, 40, 20, 80)

# Cell styles: indexes into cellXfs in _STYLES.
_TEXT, _HEADER, _BAD, _BAD_HEADER, _NUMBER_TOP, _TEXT_TOP, _WRAPPED = range(1, 8)

# XML 1.0 can't hold these characters at all (the same set openpyxl refuses); show them as \xNN.
_CONTROL = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20))]
_INVALID_XML = [*_CONTROL, "\ufffe", "\uffff"]
_SHOWN = [f"\\x{ord(c):02x}" for c in _CONTROL] + ["\\ufffe", "\\uffff"]
# A cell holds 32,767 UTF-16 units; a value is never longer in UTF-16 units than in UTF-8 bytes,
# nor longer than 2 units per character, hence the cheap test and the safe cut.
_CELL_BYTES = 32_767
_CUT_CHARACTERS = _CELL_BYTES // 2

_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PACKAGE_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'


def write_error_report(sheet: ContactSheet, report: ValidationReport, out: Path | str) -> Path:
    """Write the report to `out` (.xlsx), replacing a previous report, never the contact file.

    Complete or not written at all (see tasks.safe_write); OutputFileError when it can't be.
    """
    out = check_report_path(out, sheet.path)
    with atomic_output(out, what="the report") as path:
        _write_workbook(path, sheet, _issues(report))
    return out


def check_report_path(out: Path | str, contacts_path: Path | str) -> Path:
    """Where a report may go: an .xlsx file that is not the contact file, however it is written.

    Cheap, so a caller can check before the (long) validation; `write_error_report` checks too.
    """
    out = Path(out)
    if out.suffix.lower() != ".xlsx":
        raise OutputFileError(
            f"The report must be an .xlsx file (e.g. errors.xlsx), not {out.name!r}.", out
        )
    if same_file(out, Path(contacts_path)):
        raise OutputFileError(
            f"The report would overwrite the contact file {contacts_path}: choose another name.",
            out,
        )
    return out


def _write_workbook(path: Path, sheet: ContactSheet, issues: pl.DataFrame) -> None:
    width = max([len(sheet.headers), *(column for _, column, _ in sheet.extra_cells), 1])
    letters = [column_letter(i) for i in range(min(width, MAX_COLUMNS))]
    issues = issues.with_columns(
        pl.col("letter").replace_strict(letters, range(len(letters)), default=None).alias("col")
    )
    flagged = _flagged_cells(issues)
    issues, note = _fit_problems(issues)
    problems_last_row = issues.height + 1 + (note is not None)
    comments = (
        flagged.head(MAX_COMMENTS).select("row", "col", "text"),
        pl.DataFrame(
            [(1, 5, _capped_comments_note(flagged.height))]
            if flagged.height > MAX_COMMENTS
            else [],
            schema=_COMMENT_SCHEMA,
            orient="row",
        ),
    )
    has_comments = [c.height > 0 for c in comments]

    with zipfile.ZipFile(
        path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESSION_LEVEL
    ) as archive:
        for name, text in _package_parts(has_comments, problems_last_row):
            archive.writestr(name, text)
        _write_member(
            archive,
            "xl/worksheets/sheet1.xml",
            _contacts_xml(sheet, flagged, letters, comments=has_comments[0]),
            largest=_largest_xml(
                [*sheet.data.drop("row"), pl.Series([v for _, _, v in sheet.extra_cells])]
            ),
        )
        _write_member(
            archive,
            "xl/worksheets/sheet2.xml",
            _problems_xml(issues, note, problems_last_row, comments=has_comments[1]),
            largest=_largest_xml([issues[field] for field in _PROBLEM_FIELDS]),
        )
        first_block = 1
        for number, notes in enumerate(comments, start=1):
            if notes.height:
                archive.writestr(f"xl/comments{number}.xml", _comments_xml(notes))
                archive.writestr(
                    f"xl/drawings/vmlDrawing{number}.vml", _vml_xml(notes, first_block)
                )
                first_block += _shape_blocks(notes.height)


def _write_member(
    archive: zipfile.ZipFile, name: str, chunks: Iterator[str], *, largest: int
) -> None:
    """Stream `chunks` into the member `name`; `largest` bounds its size in bytes, unzipped.

    A streamed member's size is unknown until the end, so zipfile must be told beforehand if it
    may pass 2 GiB (ZIP64 headers). Only then: Excel is strict about ZIP64 headers and calls
    workbooks with the wrong ones corrupt (Apache POI bug 57342, commons-compress COMPRESS-474),
    so the usual report carries none.
    """
    with archive.open(name, "w", force_zip64=largest > zipfile.ZIP64_LIMIT) as member:
        for chunk in chunks:
            member.write(chunk.encode("utf-8"))


def _largest_xml(columns: list[pl.Series]) -> int:
    """An upper bound of the XML for these values: escaping at most quintuples a value ('&' is
    '&amp;'), and a cell's markup with its share of the row's takes under 200 bytes."""
    text = sum(int(c.cast(pl.String).str.len_bytes().sum() or 0) for c in columns)
    return 5 * text + 200 * sum(len(c) for c in columns)


# --- the problems, as columns -------------------------------------------------------------------

_COMMENT_SCHEMA = {"row": pl.Int64, "col": pl.Int64, "text": pl.String}


def _issues(report: ValidationReport) -> pl.DataFrame:
    """One row per problem, in the report's order, with the fields the sheets show."""
    return pl.DataFrame(
        [(e.row, e.column_letter, e.column, e.value, e.rule, e.message) for e in report.errors],
        schema={"row": pl.Int64, **{field: pl.String for field in _PROBLEM_FIELDS[1:]}},
        orient="row",
    )


def _flagged_cells(issues: pl.DataFrame) -> pl.DataFrame:
    """Each cell with problems (row, 0-based col) in sheet order, its reasons one per line."""
    return (
        issues.filter(pl.col("col").is_not_null() & (pl.col("row") <= MAX_ROWS))
        .group_by("row", "col", maintain_order=True)
        .agg(pl.col("message").str.join("\n").alias("text"))
        .sort("row", "col")
    )


def _fit_problems(issues: pl.DataFrame) -> tuple[pl.DataFrame, str | None]:
    """The problems that fit in a sheet, and a note for the last row if some don't.

    Only a TSV can be that long: a workbook's contact sheet already stops at Excel's last row.
    """
    if issues.height < MAX_ROWS:
        return issues, None
    shown = MAX_ROWS - 2  # the header row, the problems, the note
    return issues.head(shown), (
        f"{issues.height - shown:,} more problems are not listed: a sheet holds at most "
        f"{MAX_ROWS:,} rows."
    )


def _capped_comments_note(flagged: int) -> str:
    return (
        f"{flagged:,} cells have problems: the first {MAX_COMMENTS:,} from the top carry their "
        "reasons as a comment. Every problem is listed here."
    )


# --- cells --------------------------------------------------------------------------------------


def _text(value: pl.Expr) -> pl.Expr:
    """A value as XML text that Excel shows exactly as it was read."""
    shown = value.str.replace_many(_INVALID_XML, _SHOWN)
    shown = (
        pl.when(shown.str.len_bytes() > _CELL_BYTES)
        .then(shown.str.slice(0, _CUT_CHARACTERS))
        .otherwise(shown)
    )
    # Excel reads _xHHHH_ in any text as an escaped character: escape a literal one's underscore.
    return shown.str.replace_many(["&", "<", ">"], ["&amp;", "&lt;", "&gt;"]).str.replace_all(
        r"_(x[0-9A-Fa-f]{4}_)", "_x005F_$1"
    )


def _text_cell(reference: pl.Expr, style: pl.Expr, value: pl.Expr) -> pl.Expr:
    # An inline string is text whatever it looks like: never a formula, a number or a date.
    return pl.format(
        '<c r="{}" s="{}" t="inlineStr"><is><t xml:space="preserve">{}</t></is></c>',
        reference,
        style,
        _text(value),
    )


def _one_text_cell(reference: str, style: int, value: str) -> str:
    """`_text_cell` for the few cells written one at a time (headers, notes)."""
    return str(pl.select(_text_cell(pl.lit(reference), pl.lit(style), pl.lit(value))).item())


# --- sheet "Contacts" ---------------------------------------------------------------------------


def _contacts_xml(
    sheet: ContactSheet, flagged: pl.DataFrame, letters: list[str], *, comments: bool
) -> Iterator[str]:
    extras = pl.DataFrame(
        sheet.extra_cells,
        schema={"row": pl.Int64, "col": pl.Int64, "value": pl.String},
        orient="row",
    ).with_columns(pl.col("col") - 1)
    data = sheet.data.filter(pl.col("row") <= MAX_ROWS)
    last_row = max(1, _max(data["row"]), _max(flagged["row"]))
    yield _sheet_start(
        f"A1:{letters[-1]}{last_row}",
        _contacts_widths(sheet, extras, len(letters)),
        # Whole columns are text, so what the user types into the report stays as typed too.
        [_TEXT] * len(letters),
        selected=True,
    )

    headers = pl.DataFrame(
        {"row": 1, "col": range(len(sheet.headers)), "value": sheet.headers},
        schema={"row": pl.Int64, "col": pl.Int64, "value": pl.String},
    ).with_columns(pl.col("value").replace("", None))
    yield _rows_xml(headers, flagged.filter(pl.col("row") == 1), letters, header=True)

    values = [f"c{i}" for i in range(len(sheet.headers))]
    after = 1  # rows up to this one are written
    for start in range(0, max(data.height, 1), SLICE_ROWS):
        part = data.slice(start, SLICE_ROWS)
        # The last slice reaches the sheet's end, so every extra value and flagged cell is in
        # exactly one slice even if it is on no row of `data`.
        last = part["row"][-1] if start + SLICE_ROWS < data.height else MAX_ROWS
        in_slice = pl.col("row").is_between(after + 1, last)
        cells = pl.concat(
            [
                part.unpivot(index="row", on=values, variable_name="col", value_name="value")
                # cast: with no headers at all, the unpivoted values are of type Null
                .select(
                    "row",
                    pl.col("col").str.slice(1).cast(pl.Int64),
                    pl.col("value").cast(pl.String),
                ),
                extras.filter(in_slice),
            ]
        )
        yield _rows_xml(cells, flagged.filter(in_slice), letters, header=False)
        after = last
    yield _sheet_end(comments=comments)


def _max(column: pl.Series) -> int:
    top = column.max()
    return top if isinstance(top, int) else 0


def _contacts_widths(sheet: ContactSheet, extras: pl.DataFrame, columns: int) -> list[int]:
    longest = [len(header) for header in sheet.headers][:columns]
    longest += [0] * (columns - len(longest))
    headed = min(len(sheet.headers), columns)
    if headed and sheet.data.height:
        lengths = sheet.data.select(
            pl.col(f"c{i}").str.len_chars().max() for i in range(headed)
        ).row(0)
        for i, length in enumerate(lengths):
            longest[i] = max(longest[i], length or 0)
    extra_lengths = extras.group_by("col").agg(pl.col("value").str.len_chars().max())
    for column, length in extra_lengths.iter_rows():
        if column < columns:
            longest[column] = max(longest[column], length)
    return [min(_MAX_WIDTH, max(_MIN_WIDTH, n + 2)) for n in longest]


def _rows_xml(
    cells: pl.DataFrame, flagged: pl.DataFrame, letters: list[str], *, header: bool
) -> str:
    """The `<row>` elements of `cells` (row, col, value): text cells, flagged ones filled red."""
    normal, bad = (_HEADER, _BAD_HEADER) if header else (_TEXT, _BAD)
    style = pl.when(pl.col("bad")).then(pl.lit(bad)).otherwise(pl.lit(normal))
    reference = pl.col("col").replace_strict(
        range(len(letters)), letters, return_dtype=pl.String
    ) + pl.col("row").cast(pl.String)
    rows = (
        cells.join(
            flagged.select("row", "col", bad=pl.lit(True)),
            on=["row", "col"],
            how="full",
            coalesce=True,
        )
        .with_columns(pl.col("bad").fill_null(False))
        # A flagged blank cell is written too (empty, filled); columns past XFD can't be.
        .filter((pl.col("value").is_not_null() | pl.col("bad")) & (pl.col("col") < len(letters)))
        .sort("row", "col")
        .select(
            "row",
            pl.when(pl.col("value").is_null())
            .then(pl.format('<c r="{}" s="{}"/>', reference, style))
            .otherwise(_text_cell(reference, style, pl.col("value")))
            .alias("cell"),
        )
        .group_by("row", maintain_order=True)
        .agg(pl.col("cell").str.join(""))
        .select(pl.format('<row r="{}">{}</row>', "row", "cell").str.join(""))
    )
    return str(rows.item() or "")


# --- sheet "Problems" ---------------------------------------------------------------------------


def _problems_xml(
    issues: pl.DataFrame, note: str | None, last_row: int, *, comments: bool
) -> Iterator[str]:
    lengths = issues.select(
        pl.col(field).cast(pl.String).str.len_chars().max() for field in _PROBLEM_FIELDS
    ).row(0)
    widths = [
        min(cap, max(_MIN_WIDTH, len(title) + 2, (length or 0) + 2))
        for title, cap, length in zip(PROBLEM_HEADERS, _PROBLEM_MAX_WIDTHS, lengths, strict=True)
    ]
    styles = [_NUMBER_TOP, _TEXT_TOP, _TEXT_TOP, _TEXT_TOP, _TEXT_TOP, _WRAPPED]
    yield _sheet_start(f"A1:F{last_row}", widths, styles, selected=False)
    yield '<row r="1">{}</row>'.format(
        "".join(
            _one_text_cell(f"{letter}1", _HEADER, title)
            for letter, title in zip("ABCDEF", PROBLEM_HEADERS, strict=True)
        )
    )
    for start in range(0, issues.height, SLICE_ROWS):
        part = issues.slice(start, SLICE_ROWS).with_row_index("r", offset=start + 2)
        r = pl.col("r").cast(pl.String)
        cells = [pl.format('<c r="A{}" s="{}"><v>{}</v></c>', r, pl.lit(_NUMBER_TOP), "row")]
        for letter, field in zip("BCDEF", _PROBLEM_FIELDS[1:], strict=True):
            style = pl.lit(_WRAPPED if field == "message" else _TEXT_TOP)
            cell = _text_cell(pl.lit(letter) + r, style, pl.col(field))
            cells.append(pl.when(pl.col(field).is_null()).then(pl.lit("")).otherwise(cell))
        rows = part.select(
            pl.concat_str(pl.lit('<row r="'), r, pl.lit('">'), *cells, pl.lit("</row>")).str.join(
                ""
            )
        )
        yield str(rows.item())
    if note is not None:
        yield f'<row r="{last_row}">{_one_text_cell(f"F{last_row}", _WRAPPED, note)}</row>'
    yield _sheet_end(autofilter=f"A1:F{last_row}", comments=comments)


# --- sheet frame and package --------------------------------------------------------------------


def _sheet_start(dimension: str, widths: list[int], styles: list[int], *, selected: bool) -> str:
    """Everything before the rows: size, frozen header row, column widths and styles."""
    columns = [
        f'<col min="{i}" max="{i}" width="{width}" style="{style}" customWidth="1"/>'
        for i, (width, style) in enumerate(zip(widths, styles, strict=True), start=1)
    ]
    tab = ' tabSelected="1"' if selected else ""
    return (
        f'{_DECLARATION}<worksheet xmlns="{_MAIN}" xmlns:r="{_REL}">'
        f'<dimension ref="{dimension}"/>'
        f'<sheetViews><sheetView{tab} workbookViewId="0">'
        '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
        '<selection pane="bottomLeft"/></sheetView></sheetViews>'
        '<sheetFormatPr defaultRowHeight="15"/>'
        f"<cols>{''.join(columns)}</cols><sheetData>"
    )


def _sheet_end(*, comments: bool, autofilter: str | None = None) -> str:
    """Everything after the rows, in the order the schema requires."""
    parts = ["</sheetData>"]
    if autofilter:
        parts.append(f'<autoFilter ref="{autofilter}"/>')
    parts.append(
        '<pageMargins left="0.7" right="0.7" top="0.75" bottom="0.75" header="0.3" footer="0.3"/>'
    )
    # Phone numbers without their + look like numbers: no green triangle on every such cell.
    parts.append(
        '<ignoredErrors><ignoredError sqref="A1:XFD1048576" numberStoredAsText="1"/>'
        "</ignoredErrors>"
    )
    if comments:
        parts.append('<legacyDrawing r:id="rId1"/>')
    return "".join([*parts, "</worksheet>"])


def _package_parts(has_comments: list[bool], problems_last_row: int) -> list[tuple[str, str]]:
    """The small parts of the package: what each part is, how they link, the styles."""
    sheets = ("Contacts", "Problems")
    types = [
        ("/xl/workbook.xml", "spreadsheetml.sheet.main+xml"),
        ("/xl/styles.xml", "spreadsheetml.styles+xml"),
    ]
    parts = []
    for number, commented in enumerate(has_comments, start=1):
        types.append((f"/xl/worksheets/sheet{number}.xml", "spreadsheetml.worksheet+xml"))
        if commented:
            types.append((f"/xl/comments{number}.xml", "spreadsheetml.comments+xml"))
            parts.append(
                (
                    f"xl/worksheets/_rels/sheet{number}.xml.rels",
                    _relationships(
                        [
                            ("vmlDrawing", f"../drawings/vmlDrawing{number}.vml"),
                            ("comments", f"../comments{number}.xml"),
                        ]
                    ),
                )
            )
    overrides = "".join(
        f'<Override PartName="{name}" '
        f'ContentType="application/vnd.openxmlformats-officedocument.{kind}"/>'
        for name, kind in types
    )
    content_types = (
        f'{_DECLARATION}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" '
        'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Default Extension="vml" '
        'ContentType="application/vnd.openxmlformats-officedocument.vmlDrawing"/>'
        f"{overrides}</Types>"
    )
    workbook = (
        f'{_DECLARATION}<workbook xmlns="{_MAIN}" xmlns:r="{_REL}">'
        '<bookViews><workbookView xWindow="240" yWindow="15" windowWidth="16095" '
        'windowHeight="9660"/></bookViews><sheets>'
        + "".join(
            f'<sheet name="{name}" sheetId="{i}" r:id="rId{i}"/>'
            for i, name in enumerate(sheets, start=1)
        )
        + "</sheets><definedNames>"
        # Excel records an autofilter's range under this name as well (so do xlsxwriter and
        # openpyxl): a file without it is not one Excel itself would write.
        '<definedName name="_xlnm._FilterDatabase" localSheetId="1" hidden="1">'
        f"Problems!$A$1:$F${problems_last_row}</definedName></definedNames></workbook>"
    )
    return [
        ("[Content_Types].xml", content_types),
        (
            "_rels/.rels",
            _relationships([("officeDocument", "xl/workbook.xml")]),
        ),
        ("xl/workbook.xml", workbook),
        (
            "xl/_rels/workbook.xml.rels",
            _relationships(
                [
                    ("worksheet", "worksheets/sheet1.xml"),
                    ("worksheet", "worksheets/sheet2.xml"),
                    ("styles", "styles.xml"),
                ]
            ),
        ),
        ("xl/styles.xml", _STYLES),
        *parts,
    ]


def _relationships(targets: list[tuple[str, str]]) -> str:
    return (
        f'{_DECLARATION}<Relationships xmlns="{_PACKAGE_REL}">'
        + "".join(
            f'<Relationship Id="rId{i}" Type="{_REL}/{kind}" Target="{target}"/>'
            for i, (kind, target) in enumerate(targets, start=1)
        )
        + "</Relationships>"
    )


# cellXfs, in the order of the _TEXT.. constants: 0 default, 1 text, 2 bold text (headers),
# 3 text on red (a failing cell), 4 bold text on red (a failing header), 5 number at the top of
# its cell, 6 text at the top, 7 wrapped text at the top (the reasons). Number format 49 is "@".
_STYLES = (
    f'{_DECLARATION}<styleSheet xmlns="{_MAIN}">'
    '<fonts count="2">'
    '<font><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/><family val="2"/></font>'
    "</fonts>"
    '<fills count="3"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFFFC7CE"/><bgColor indexed="64"/>'
    "</patternFill></fill></fills>"
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="8">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="49" fontId="1" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyFont="1"/>'
    '<xf numFmtId="49" fontId="0" fillId="2" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyFill="1"/>'
    '<xf numFmtId="49" fontId="1" fillId="2" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyFont="1" applyFill="1"/>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" applyAlignment="1">'
    '<alignment vertical="top"/></xf>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyAlignment="1"><alignment vertical="top"/></xf>'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1" '
    'applyAlignment="1"><alignment vertical="top" wrapText="1"/></xf>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '<dxfs count="0"/><tableStyles count="0" defaultTableStyle="TableStyleMedium9" '
    'defaultPivotStyle="PivotStyleLight16"/></styleSheet>'
)


# --- comments -----------------------------------------------------------------------------------


def _comments_xml(notes: pl.DataFrame) -> str:
    """The comments' text (row, 0-based col, text); `_vml_xml` draws their boxes."""
    entries = notes.select(
        pl.format(
            '<comment ref="{}" authorId="0"><text><r><rPr><sz val="8"/><color indexed="81"/>'
            '<rFont val="Tahoma"/><family val="2"/></rPr><t xml:space="preserve">{}</t></r>'
            "</text></comment>",
            pl.Series([column_letter(c) for c in notes["col"]]) + pl.col("row").cast(pl.String),
            _text(pl.col("text")),
        ).str.join("")
    ).item()
    return (
        f'{_DECLARATION}<comments xmlns="{_MAIN}"><authors><author>smartchat</author></authors>'
        f"<commentList>{entries}</commentList></comments>"
    )


def _shape_blocks(count: int) -> int:
    """VML shape ids come in blocks of 1,024 per drawing, numbered across the workbook."""
    return 1 + count // 1024


def _vml_xml(notes: pl.DataFrame, first_block: int) -> str:
    """The hidden boxes Excel shows on hover: without them it doesn't show the comments."""
    shapes = []
    for i, (row, col, text) in enumerate(notes.iter_rows()):
        top = max(row - 2, 0)  # the box starts a row above its cell, as Excel places it
        lines = min(20, max(4, math.ceil(len(text) / 30) + text.count("\n") + 1))
        shapes.append(
            f'<v:shape id="_x0000_s{1024 * first_block + 1 + i}" type="#_x0000_t202" '
            f'style="position:absolute;margin-left:59.25pt;margin-top:1.5pt;width:144pt;'
            f'height:{lines * 15}pt;z-index:{i + 1};visibility:hidden" fillcolor="#ffffe1" '
            'o:insetmode="auto"><v:fill color2="#ffffe1"/>'
            '<v:shadow on="t" color="black" obscured="t"/><v:path o:connecttype="none"/>'
            '<v:textbox style="mso-direction-alt:auto"><div style="text-align:left"></div>'
            '</v:textbox><x:ClientData ObjectType="Note"><x:MoveWithCells/><x:SizeWithCells/>'
            f"<x:Anchor>{col + 1}, 15, {top}, 10, {col + 4}, 15, {top + lines}, 4</x:Anchor>"
            f"<x:AutoFill>False</x:AutoFill><x:Row>{row - 1}</x:Row><x:Column>{col}</x:Column>"
            "</x:ClientData></v:shape>"
        )
    blocks = ",".join(str(b) for b in range(first_block, first_block + _shape_blocks(len(shapes))))
    return (
        '<xml xmlns:v="urn:schemas-microsoft-com:vml" '
        'xmlns:o="urn:schemas-microsoft-com:office:office" '
        'xmlns:x="urn:schemas-microsoft-com:office:excel">'
        f'<o:shapelayout v:ext="edit"><o:idmap v:ext="edit" data="{blocks}"/></o:shapelayout>'
        '<v:shapetype id="_x0000_t202" coordsize="21600,21600" o:spt="202" '
        'path="m,l,21600r21600,l21600,xe"><v:stroke joinstyle="miter"/>'
        '<v:path gradientshapeok="t" o:connecttype="rect"/></v:shapetype>'
        f"{''.join(shapes)}</xml>"
    )
