"""How results look in a terminal (rich) and to scripts (`--json`); no business logic here."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime, time
from itertools import groupby
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from schemas.contacts import RULES

if TYPE_CHECKING:
    from schemas.contacts import ContactIssue
    from tasks.validation import ValidationReport

err_console = Console(stderr=True)

# The longest value a terminal table shows: a 5,000,000-character cell is cut, not printed.
MAX_SHOWN = 120
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def count(n: int, noun: str, plural: str | None = None) -> str:
    """`1 contact`, `2 contacts`, `1,000 rows`: a number with its noun."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """A value from a file or the store as the terminal may print it: control characters
    visible as \\xNN (an escape sequence in a cell must not clear the screen), long values cut
    with …, rich markup escaped."""
    text = "" if value is None else str(value)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text))


def print_json(payload: Any) -> None:
    """One JSON document on stdout, nothing else, so `| jq` always works."""
    sys.stdout.write(json_text(payload, indent=2) + "\n")
    sys.stdout.flush()


def json_text(payload: Any, indent: int | None = None) -> str:
    """Strict JSON: NaN and infinities (which json.dumps writes as bare NaN) become null,
    dates and times ISO 8601."""
    return json.dumps(
        json_ready(payload), ensure_ascii=False, indent=indent, default=json_default,
        allow_nan=False,
    )  # fmt: skip


def json_ready(value: Any) -> Any:
    """`value` with every NaN or infinity as None and every date or time as ISO 8601 text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def json_default(value: Any) -> Any:
    """For json.dumps: what JSON has no type for (dates, decimals, UUIDs...) as text."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return str(value)


def show_validation_report(report: ValidationReport, console: Console, sample: int) -> None:
    """The terminal report; `sample` errors per rule (SMARTCHAT_REPORT_SAMPLE)."""
    show_notices(report, console)
    if report.valid:
        _show_valid(report, console)
    else:
        _show_invalid(report, console, sample)


def show_notices(report: ValidationReport, console: Console) -> None:
    """What is worth knowing though it is no error: the sheet read, other sheets with rows."""
    for notice in report.notices:
        console.print(f"[yellow]Note:[/] {shown(notice, limit=2_000)}")


def _show_invalid(report: ValidationReport, console: Console, sample: int) -> None:
    total = len(report.errors)
    console.print(
        f"[bold red]✗ {shown(report.source)} can't be used with chatbot "
        f"{escape(report.chatbot_id)}:[/] {total:,} problem{'s' * (total != 1)} "
        f"in {report.contact_count:,} contact row{'s' * (report.contact_count != 1)}."
    )
    for rule, issues_iter in groupby(report.errors, key=lambda e: e.rule):
        issues = list(issues_iter)
        table = Table(
            title=f"{RULES.get(rule, rule)} ({len(issues):,})",
            title_justify="left",
            title_style="bold",
            show_lines=False,
        )
        table.add_column("Row", justify="right")
        table.add_column("Column")
        table.add_column("Value", overflow="fold", max_width=28)
        table.add_column("Problem", overflow="fold")
        for issue in issues[:sample]:
            table.add_row(*_cells(issue))
        console.print(table)
        if len(issues) > sample:
            console.print(f"  … and {len(issues) - sample:,} more (--json or --report lists all)")
    console.print(
        "Nothing was sent. Fix the file and run the command again "
        "(--report errors.xlsx marks every failing cell in a copy of your sheet)."
    )


def _cells(issue: ContactIssue) -> tuple[str, str, str, str]:
    column = (
        f"{issue.column_letter} ({issue.column})"
        if issue.column_letter and issue.column
        else issue.column_letter or issue.column or ""
    )
    value = "(empty)" if issue.value is None or not issue.value.strip() else issue.value
    return str(issue.row), shown(column), shown(value), escape(issue.message)


def _show_valid(report: ValidationReport, console: Console) -> None:
    console.print(
        f"[bold green]✓ {shown(report.source)}:[/] {report.contact_count:,} contact"
        f"{'s' * (report.contact_count != 1)} ready for chatbot {escape(report.chatbot_id)}."
    )
    countries = _table("Contacts per country", ["Country", "ISO"], ["Code", "Contacts"])
    for c in report.countries:
        countries.add_row(escape(c.name), c.iso, f"+{c.calling_code}", f"{c.contacts:,}")
    console.print(countries)

    segments = _table(
        "SMS segments per message",
        ["Step", "Message", "Sent to", "Encoding"],
        ["Segments each", "Total segments"],
    )
    for s in report.segments:
        each = (
            str(s.min_segments)
            if s.min_segments == s.max_segments
            else (f"{s.min_segments}–{s.max_segments}")
        )
        to, total = (
            ("everyone", f"{s.total_segments:,}")
            if s.opening
            else ("on reply", f"up to {s.total_segments:,}")
        )
        segments.add_row(escape(s.step), s.field, to, s.encoding, each, total)
    console.print(segments)
    console.print(
        "  The opening message goes to every contact at launch. The others go only to the "
        "contacts whose replies lead to them: their totals are for every contact getting them "
        "once."
    )

    if report.previews:
        console.print("[bold]First message, as the first contacts will get it[/]")
        for phone, text in report.previews:
            console.print(f"  {shown(phone)}: {shown(text, limit=2_000)}")


def _table(title: str, text_columns: list[str], number_columns: Iterable[str] = ()) -> Table:
    """A titled table: text columns left-aligned, then number columns right-aligned."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for name in text_columns:
        table.add_column(name)
    for name in number_columns:
        table.add_column(name, justify="right")
    return table


def rows_table(title: str, columns: list[str], rows: Iterable[Iterable[object]]) -> Table:
    table = _table(title, columns)
    for row in rows:
        table.add_row(*(shown(v) for v in row))
    return table


def text_table(title: str, columns: Iterable[str], rows: Iterable[Sequence[str]] = ()) -> Table:
    """A titled table of cells already escaped for rich markup."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for name in columns:
        table.add_column(shown(name))
    for row in rows:
        table.add_row(*row)
    return table


def busy(message: str, quiet: bool) -> AbstractContextManager[Any]:
    """A spinner on stderr, so stdout stays clean for --json and pipes."""
    return nullcontext() if quiet else Console(stderr=True).status(message)
