"""Check a contact file against a chatbot: every failure in one pass, at the user's row and column.

read (tasks.ingest) → headers → derived facts, vectorised (phone validity per distinct number,
first occurrence, rendered lengths) → pandera schema (schemas.contacts) → failures in the user's
words → on success, the campaign-ready contacts and the summary (countries, segments, previews).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from schemas.chatbot import CONTACT_HEADER, Chatbot, check_message_lengths, placeholders
from schemas.contacts import (
    FIRST_ROW,
    LONGEST,
    PHONE_RULE,
    ROW,
    RULES,
    ContactIssue,
    check_extra_values,
    check_formula_cells,
    check_has_contacts,
    check_header_on_row_1,
    check_header_row,
    check_headers,
    column_letter,
    contact_schema,
    control_character_message,
)
from schemas.pandera_polars import import_pandera_polars, pandas_hidden
from tasks import sms
from tasks.countries import country_for_calling_code, country_for_region
from tasks.ingest import NO_SAVED_RESULT, ContactSheet, read_contacts
from tasks.phones import RULE_FORMAT, check_phones, explain_phone

# Loaded before anything else imports pandera, so that pandera never imports pandas (0.7 s).
pa = import_pandera_polars()

__all__ = [
    "ContactIssue",
    "ValidationReport",
    "check_contact_file",
    "column_letter",
    "validate_sheet",
]

# Explaining a rejected number costs a phonenumbers parse (~20 µs); past this many distinct
# rejected values (a whole file typed without +, say) the rest get the rule's general message.
EXPLAIN_LIMIT = 20_000
SCIENTIFIC = re.compile(r"^[0-9](?:[.,][0-9]+)?[eE]\+?[0-9]+$")


@dataclass(frozen=True)
class CountryCount:
    iso: str
    name: str
    calling_code: int
    contacts: int


@dataclass(frozen=True)
class MessageSegments:
    """How many SMS parts one chatbot message takes across the campaign's contacts."""

    step: str
    field: str
    encoding: str  # "GSM-7", "UCS-2" or "GSM-7/UCS-2" when it depends on the contact's values
    min_segments: int
    max_segments: int
    total_segments: int  # the opening message: what the launch sends; others: if all reach it
    opening: bool = False  # sent to every contact at launch; the others only to who reaches them


@dataclass
class ValidationReport:
    source: str
    chatbot_id: str
    valid: bool
    contact_count: int
    errors: list[ContactIssue]
    contacts: pl.DataFrame = field(repr=False)
    countries: list[CountryCount] = field(default_factory=list)
    segments: list[MessageSegments] = field(default_factory=list)
    previews: list[tuple[str, str]] = field(default_factory=list)
    file_sha256: str = ""  # of the bytes validated (tasks.ingest), recorded by a launch
    sheet_name: str | None = None  # the .xlsx sheet read
    notices: list[str] = field(default_factory=list)  # worth saying, not errors (other sheets)

    def error_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for issue in self.errors:
            counts[issue.rule] = counts.get(issue.rule, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "valid": self.valid,
            "contacts": self.contact_count,
            "file": self.source,
            "sheet": self.sheet_name,
            "chatbot": self.chatbot_id,
            "notices": self.notices,
            "error_counts": self.error_counts(),
            "errors": [e.to_json() for e in self.errors],
            "countries": [asdict(c) for c in self.countries],
            "segments": [asdict(s) for s in self.segments],
            "previews": [{"contact": p, "message": m} for p, m in self.previews],
        }


def check_contact_file(
    contacts_path: Path | str,
    chatbot: Chatbot,
    *,
    max_message_chars: int,
    sheet: str | int | None = None,
) -> ValidationReport:
    """Read and check a contact file (`sheet`: which .xlsx sheet, default the first visible one
    with values); raises ContactFileError only when it can't be read at all."""
    read = read_contacts(contacts_path, sheet)
    return validate_sheet(read, chatbot, max_message_chars=max_message_chars)


def validate_sheet(
    sheet: ContactSheet, chatbot: Chatbot, *, max_message_chars: int
) -> ValidationReport:
    """Every rule of schemas.contacts over a file as read; the contacts too when it is valid.

    A chatbot whose fixed text alone is over the limit raises ChatbotError: no contact is to
    blame for it.
    """
    check_message_lengths(chatbot, max_message_chars, source=chatbot.id)
    expected = [CONTACT_HEADER, *chatbot.custom_data]
    if sheet.header_row_found is not None:
        return _refused(sheet, chatbot, check_header_on_row_1(expected, sheet.header_row_found))
    if not sheet.headers:
        first = min((row for row, _, _ in sheet.extra_cells), default=None)
        return _refused(sheet, chatbot, check_header_row(expected, first))
    positions, issues = check_headers(sheet.headers, chatbot.custom_data, sheet.data)
    issues += check_extra_values(sheet.extra_cells)
    formula_issues = check_formula_cells(sheet.error_cells, positions, NO_SAVED_RESULT)
    issues += formula_issues
    frame = sheet.data.select(
        pl.col(ROW), *[pl.col(f"c{i}").alias(name) for name, i in positions.items()]
    )
    issues += check_has_contacts(frame.height)
    columns = [name for name in positions]
    complete = all(uid in positions for uid in chatbot.custom_data)
    frame, phone_messages = _derive_facts(frame, sheet, chatbot, positions, complete)

    try:
        with pandas_hidden():  # pandera imports its pandas API lazily too (0.7 s)
            schema = contact_schema(columns, max_message_chars if complete else None)
            schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        issues += _translate_failures(
            exc.failure_cases, frame, positions, chatbot, phone_messages, max_message_chars
        )
    # A formula's cell reads empty: its own finding says why, not also "empty".
    formula_cells = {(i.row, i.column) for i in formula_issues}
    issues = [i for i in issues if i.rule != "blank" or (i.row, i.column) not in formula_cells]

    issues.sort(key=lambda e: (list(RULES).index(e.rule), e.row, e.column_letter or ""))
    valid = not issues
    contacts = _campaign_contacts(frame, chatbot) if valid else frame.clear()
    report = ValidationReport(
        source=str(sheet.path),
        chatbot_id=chatbot.id,
        valid=valid,
        contact_count=frame.height,
        errors=issues,
        contacts=contacts,
        file_sha256=sheet.sha256,
        sheet_name=sheet.sheet_name,
        notices=sheet.notices,
    )
    if valid:
        report.countries = _country_counts(contacts)
        report.segments = _segment_stats(frame, chatbot)
        report.previews = [
            (row[CONTACT_HEADER], chatbot.first_message(row))
            for row in frame.head(3)
            .select(CONTACT_HEADER, *chatbot.custom_data)
            .iter_rows(named=True)
        ]
    return report


def _refused(sheet: ContactSheet, chatbot: Chatbot, issue: ContactIssue) -> ValidationReport:
    """The headers are not on row 1: one clear error rather than every value flagged."""
    return ValidationReport(
        source=str(sheet.path),
        chatbot_id=chatbot.id,
        valid=False,
        contact_count=sheet.data.height,
        errors=[issue],
        contacts=pl.DataFrame(),
        file_sha256=sheet.sha256,
        sheet_name=sheet.sheet_name,
        notices=sheet.notices,
    )


# --- derived facts -----------------------------------------------------------------------------


def _derive_facts(
    frame: pl.DataFrame,
    sheet: ContactSheet,
    chatbot: Chatbot,
    positions: dict[str, int],
    complete: bool,
) -> tuple[pl.DataFrame, dict[int, str]]:
    """The columns the schema's checks read; and, by row, why each rejected phone is wrong."""
    messages: dict[int, str] = {}
    if CONTACT_HEADER in positions:
        not_blank = pl.col(CONTACT_HEADER).str.strip_chars().str.len_chars().fill_null(0) > 0
        checked = check_phones(frame[CONTACT_HEADER])
        frame = frame.with_columns(
            checked["valid"].alias("_valid"),
            checked["region"].alias("_region"),
            checked["calling_code"].alias("_calling_code"),
        )
        rejected = frame.filter(~pl.col("_valid") & not_blank).select(ROW, CONTACT_HEADER)
        rules, messages = _explain_phones(rejected, sheet)
        frame = (
            frame.join(rules, on=ROW, how="left")
            if rules.height
            else frame.with_columns(pl.lit(None, pl.String).alias(PHONE_RULE))
        )
        frame = frame.with_columns(_first_rows(frame, not_blank))
    if complete and frame.height:
        templates = [text for _, _, text in chatbot.messages()]
        frame = frame.with_columns(sms.measure_columns(frame, chatbot.custom_data)).with_columns(
            pl.max_horizontal(*[sms.message_chars(t) for t in templates]).alias(LONGEST)
        )
    elif complete:
        frame = frame.with_columns(pl.lit(0).alias(LONGEST))
    return frame, messages


def _explain_phones(
    rejected: pl.DataFrame, sheet: ContactSheet
) -> tuple[pl.DataFrame, dict[int, str]]:
    """Rule (`phone_format` or `phone_invalid`) and message for each rejected number's row.

    phonenumbers explains each distinct (value, typed as a number cell) once.
    """
    explained: dict[tuple[str, bool], tuple[str, str]] = {}
    rows: list[int] = []
    rules: list[str] = []
    messages: dict[int, str] = {}
    for row, value in rejected.iter_rows():
        kind = sheet.number_cells.get(row)
        key = (value, kind is not None)
        if key not in explained:
            if len(explained) < EXPLAIN_LIMIT:
                problem = explain_phone(
                    value,
                    number_cell=kind is not None,
                    scientific=kind == "scientific" or bool(SCIENTIFIC.match(value.strip())),
                )
                explained[key] = (problem.rule, problem.message)
            else:
                explained[key] = (
                    RULE_FORMAT,
                    "Not a valid phone number in E.164 form: write +, the country code and "
                    "the number, with no spaces (e.g. +525500001111).",
                )
        rule, messages[row] = explained[key]
        rows.append(row)
        rules.append(rule)
    frame = pl.DataFrame(
        {ROW: rows, PHONE_RULE: rules}, schema={ROW: rejected.schema[ROW], PHONE_RULE: pl.String}
    )
    return frame, messages


def _first_rows(frame: pl.DataFrame, not_blank: pl.Expr) -> pl.Series:
    """The row where each repeated phone first appears; null for phones that appear once.

    Grouping a million strings is the slow way; their 64-bit hashes screen for repeats cheaply,
    and only the few candidate rows are grouped by the real string (so a hash collision
    between different numbers changes nothing).
    """
    hashes = frame.select(pl.col(CONTACT_HEADER).hash().filter(not_blank)).to_series()
    first = pl.repeat(None, frame.height, dtype=pl.Int64, eager=True).alias(FIRST_ROW)
    if hashes.n_unique() == hashes.len():  # the usual case: no repeats, nothing to locate
        return first
    candidates = (
        frame.select(pl.col(CONTACT_HEADER).hash().is_duplicated() & not_blank)
        .to_series()
        .arg_true()
    )
    rows = frame[candidates].select(pl.col(ROW).min().over(CONTACT_HEADER)).to_series()
    return first.scatter(candidates, rows)


# --- failures in the user's words ---------------------------------------------------------------


def _translate_failures(
    failures: pl.DataFrame,
    frame: pl.DataFrame,
    positions: dict[str, int],
    chatbot: Chatbot,
    phone_messages: dict[int, str],
    max_message_chars: int,
) -> list[ContactIssue]:
    failures = failures.filter(pl.col("index").is_not_null()).join(
        frame.with_row_index("index").select(
            pl.col("index").cast(pl.Int32), ROW, *_optional(frame, CONTACT_HEADER, FIRST_ROW)
        ),
        on="index",
        how="left",
    )
    issues: list[ContactIssue] = []
    for check, group in failures.partition_by("check", as_dict=True).items():
        name = check[0]
        if name == "blank":
            issues += _blank_issues(group, positions)
        elif name == "control_character":
            issues += [
                ContactIssue(
                    row,
                    column,
                    column_letter(positions[column]),
                    value,
                    name,
                    control_character_message(value),
                )
                for row, column, value in group.select(ROW, "column", "failure_case").iter_rows()
            ]
        elif name in ("phone_format", "phone_invalid"):
            issues += _phone_issues(group, name, positions, phone_messages)
        elif name == "duplicate_phone":
            issues += _duplicate_issues(group, positions)
        elif name == "message_too_long":
            issues += _length_issues(group, frame, positions, chatbot, max_message_chars)
    return issues


def _optional(frame: pl.DataFrame, *names: str) -> list[str]:
    return [n for n in names if n in frame.columns]


def _blank_issues(group: pl.DataFrame, positions: dict[str, int]) -> list[ContactIssue]:
    return [
        ContactIssue(
            row,
            column,
            column_letter(positions[column]),
            value,
            "blank",
            f"Empty {column} for this contact: every contact needs a value in every column"
            + (
                " (its phone number, with + and country code)."
                if column == CONTACT_HEADER
                else f"; fill in {column} or remove the contact."
            ),
        )
        for row, column, value in group.select(ROW, "column", "failure_case").iter_rows()
    ]


def _phone_issues(
    group: pl.DataFrame, rule: str, positions: dict[str, int], messages: dict[int, str]
) -> list[ContactIssue]:
    letter = column_letter(positions[CONTACT_HEADER])
    return [
        ContactIssue(row, CONTACT_HEADER, letter, value, rule, messages[row])
        for row, value in group.select(ROW, "failure_case").iter_rows()
    ]


def _duplicate_issues(group: pl.DataFrame, positions: dict[str, int]) -> list[ContactIssue]:
    letter = column_letter(positions[CONTACT_HEADER])
    return [
        ContactIssue(
            row,
            CONTACT_HEADER,
            letter,
            value,
            "duplicate_phone",
            f"Phone number repeated: it is already on row {first}. A number can be in a "
            "campaign only once: delete this row (it may be in another campaign).",
        )
        for row, value, first in group.select(ROW, CONTACT_HEADER, FIRST_ROW).iter_rows()
    ]


def _length_issues(
    group: pl.DataFrame,
    frame: pl.DataFrame,
    positions: dict[str, int],
    chatbot: Chatbot,
    limit: int,
) -> list[ContactIssue]:
    """One issue per contact: every over-long message named, the longest value blamed."""
    rows = frame.join(group.select(ROW), on=ROW, how="semi")
    issues = []
    for record in rows.iter_rows(named=True):
        values = {k: v or "" for k, v in record.items()}
        over = [
            (len(chatbot.render(text, values)), step, fld, text)
            for step, fld, text in chatbot.messages()
            if len(chatbot.render(text, values)) > limit
        ]
        over.sort(reverse=True)
        used = set(placeholders(over[0][3])) or set(chatbot.custom_data)
        longest = max(sorted(used), key=lambda n: len(values[n]))
        steps = ", ".join(f"step '{step}' ({fld}) {n:,}" for n, step, fld, _ in over)
        issues.append(
            ContactIssue(
                record[ROW],
                longest,
                column_letter(positions[longest]),
                record[longest],
                "message_too_long",
                f"Messages over {limit:,} characters for this contact ({steps}): "
                f"shorten {longest}.",
            )
        )
    return issues


# --- success: what the campaign gets, and the summary -------------------------------------------


def _campaign_contacts(frame: pl.DataFrame, chatbot: Chatbot) -> pl.DataFrame:
    return frame.select(
        pl.col(ROW).cast(pl.Int64),
        pl.col(CONTACT_HEADER).alias("phone"),
        pl.col("_region").alias("country"),
        pl.col("_calling_code").cast(pl.Int32).alias("calling_code"),
        *[pl.col(uid) for uid in chatbot.custom_data],
    )


def _country_counts(contacts: pl.DataFrame) -> list[CountryCount]:
    # Grouped by calling code too: non-geographic numbers (+800, +882...) share region "001".
    counts = contacts.group_by("country", "calling_code").len()
    result = []
    for iso, code, n in counts.sort(
        ["len", "country", "calling_code"], descending=[True, False, False]
    ).iter_rows():
        country = country_for_region(iso) if iso != "001" else country_for_calling_code(code)
        result.append(CountryCount(iso, country.name_en, code, n))
    return result


def _segment_stats(frame: pl.DataFrame, chatbot: Chatbot) -> list[MessageSegments]:
    """Segments per message. The opening message goes to every contact, so its total is what
    the launch sends; a later step's total is the most it can cost (if every contact reached
    it). A message without placeholders is the same for everyone: its parts times the contacts.
    """
    if frame.height == 0:
        return []
    messages = list(chatbot.messages())
    # with_columns first: a message without placeholders is a literal, broadcast to every row.
    per_contact = frame.with_columns(
        expr
        for i, (_, _, text) in enumerate(messages)
        for expr in (
            sms.message_segments(text).alias(f"seg{i}"),
            sms.message_is_ucs2(text).alias(f"ucs{i}"),
        )
    )
    stats = per_contact.select(
        expr
        for i in range(len(messages))
        for expr in (
            pl.col(f"seg{i}").min().alias(f"min{i}"),
            pl.col(f"seg{i}").max().alias(f"max{i}"),
            pl.col(f"seg{i}").sum().alias(f"sum{i}"),
            pl.col(f"ucs{i}").mean().alias(f"ucs{i}"),
        )
    ).row(0, named=True)
    result = []
    for i, (step, fld, _) in enumerate(messages):
        share = stats[f"ucs{i}"]
        encoding = "UCS-2" if share == 1 else "GSM-7" if share == 0 else "GSM-7/UCS-2"
        opening = step == chatbot.start and fld == "say"
        result.append(
            MessageSegments(
                step,
                fld,
                encoding,
                stats[f"min{i}"],
                stats[f"max{i}"],
                stats[f"sum{i}"],
                opening,
            )
        )
    return result
