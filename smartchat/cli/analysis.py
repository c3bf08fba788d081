"""Analyst commands: `status`, `query`, `export` (the read side, tasks.queries).

`--csv` and `--json` stream rows from the store to stdout in batches, so memory stays flat for
30M rows; the terminal table reads and shows only the first rows.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smartchat.cli.console import (
    busy,
    count,
    json_default,
    json_ready,
    print_json,
    shown,
    text_table,
)
from smartchat.cli.errors import UsageError
from smartchat.cli.options import CampaignArgument, DbOption, JsonOption, store_of

if TYPE_CHECKING:
    from tasks.store.campaigns import CampaignProgress

# A terminal table of a million rows helps nobody; --csv / --json print every row.
TABLE_ROWS = 1_000
# --csv / --json read and write this many rows at a time: memory stays flat for 30M rows.
STREAM_ROWS = 10_000


def status(
    ctx: typer.Context,
    campaign_id: Annotated[
        str | None,
        typer.Argument(
            help="One campaign's id; all campaigns when omitted.",
            metavar="CAMPAIGN",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Progress per campaign: contacts, sent, delivered, failed, replied (newest first)."""
    from tasks.queries import campaign_status, country_status

    store = store_of(ctx, db)
    progress = campaign_status(store, campaign_id)
    countries = country_status(store, campaign_id) if campaign_id else None
    if json_output:
        rows = [p.to_json() for p in progress]
        if countries is None:
            print_json(rows)
        else:
            by_country = [dict(zip(countries.columns, r, strict=True)) for r in countries.rows]
            print_json({**rows[0], "countries": by_country})
        return
    console = Console()
    if not progress:
        console.print("No campaigns yet: smartchat launch --chatbot ID --contacts FILE")
        return
    if countries is None:
        console.print(_progress_table(progress))
        return
    console.print(_campaign_card(progress[0]))
    console.print(text_table("By country", countries.columns, _cells(countries.rows)))


def query(
    ctx: typer.Context,
    sql: Annotated[
        str, typer.Argument(help="One SELECT statement.", metavar="SQL", show_default=False)
    ],
    csv_output: Annotated[bool, typer.Option("--csv", help="Print every row as CSV.")] = False,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print a JSON array, one object per row.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Run a read-only SQL query on the store (tables and views: see the README).

    Only a single SELECT is accepted; INSERT, UPDATE, DELETE, DROP, COPY, ATTACH, PRAGMA, SET and
    the like are refused (exit 1). It waits at most a few seconds for a launch or a sender batch
    to release the file.
    """
    from tasks.queries import open_query

    if csv_output and json_output:
        raise UsageError("Choose one of --csv and --json.")
    # Rows stream from DuckDB to stdout in batches: memory stays flat whatever the result's size.
    with open_query(store_of(ctx, db), sql) as result:
        if json_output:
            _write_json_array(result.columns, result.batches(STREAM_ROWS))
            return
        if csv_output:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(result.columns)
            for batch in result.batches(STREAM_ROWS):
                writer.writerows([_csv_value(v) for v in row] for row in batch)
            sys.stdout.flush()
            return
        rows = result.fetch(TABLE_ROWS + 1)  # one more than shown tells whether there are more
    console = Console()
    title = count(len(rows), "row") if len(rows) <= TABLE_ROWS else f"More than {TABLE_ROWS:,} rows"
    console.print(text_table(title, result.columns, _cells(rows[:TABLE_ROWS])))
    if len(rows) > TABLE_ROWS:
        console.print(f"… first {TABLE_ROWS:,} shown; --csv or --json prints every row.")


def export(
    ctx: typer.Context,
    campaign_id: CampaignArgument,
    to: Annotated[
        Path,
        typer.Option(
            "--to", help="Folder for the Parquet files.", metavar="DIR", show_default=False
        ),
    ],
    db: DbOption = None,
) -> None:
    """Write a campaign's tables and views as Parquet files in DIR/CAMPAIGN/, for BI tools.

    Files: campaigns, chatbots, campaign_contacts, messages, replies, campaign_summary,
    campaign_country_summary, step_funnel, step_answers (.parquet).
    """
    from tasks.queries import export_campaign

    with busy("Exporting…", False):
        paths = export_campaign(store_of(ctx, db), campaign_id, to)
    Console().print(f"Wrote {len(paths)} Parquet files to {escape(str(paths[0].parent))}.")


def register(app: typer.Typer) -> None:
    for command in (status, query, export):
        app.command()(command)


def _progress_table(progress: Sequence[CampaignProgress]) -> Table:
    """One line per campaign, newest first, in 80 columns (`status X` and --json have the rest)."""
    table = Table(
        title="Campaigns",
        title_justify="left",
        title_style="bold",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        padding=0,
        pad_edge=False,
    )
    table.add_column("Campaign", no_wrap=True, min_width=15)
    # The name gives way first (cut with …), so the figures never wrap into unreadable stubs.
    table.add_column("Name", no_wrap=True, overflow="ellipsis", max_width=16)
    table.add_column("Status", no_wrap=True, min_width=9)
    for numeric in ("Contacts", "Sent", "Deliv.", "Failed", "Replied"):
        table.add_column(numeric, justify="right", no_wrap=True, min_width=len(numeric))
    for p in progress:
        table.add_row(
            shown(p.campaign_id),
            shown(p.name),
            shown(p.status),
            *(f"{n:,}" for n in (p.contacts, p.sent, p.delivered, p.failed, p.replied)),
        )
    return table


def _campaign_card(p: CampaignProgress) -> Table:
    """Every field of one campaign, one per line."""
    card = Table.grid(padding=(0, 2))
    card.add_column(style="bold", no_wrap=True)
    card.add_column(overflow="fold")
    reply_rate = "" if p.reply_rate is None else f"{p.reply_rate:.1%}"
    fields = [
        ("Campaign", shown(p.campaign_id)),
        ("Name", shown(p.name, limit=500)),
        ("Chatbot", shown(f"{p.chatbot_id} version {p.chatbot_version}")),
        ("Status", shown(p.status)),
        ("Contacts", f"{p.contacts:,}"),
        ("Reached", f"{p.reached:,}"),
        ("Sent", f"{count(p.sent, 'message')}, {count(p.segments, 'SMS segment')}"),
        ("Delivered", f"{p.delivered:,}"),
        ("Failed", f"{p.failed:,}"),
        ("Replied", f"{p.replied:,} {reply_rate}".strip()),
        ("Opted out", f"{p.opted_out:,}"),
        ("Replaces", shown(p.replaces or "")),
        ("Launched", _when(p.launched_at)),
        ("Stopped", _when(p.stopped_at)),
        ("Completed", _when(p.completed_at)),
    ]
    for label, value in fields:
        if value:
            card.add_row(label, value)
    return card


def _when(moment: datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S %Z}" if moment else ""


def _cells(rows: Iterable[Sequence[Any]]) -> Iterator[list[str]]:
    for row in rows:
        yield [shown(_text(v)) for v in row]


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    return str(value)


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=json_default)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _write_json_array(columns: list[str], batches: Iterable[list[tuple[Any, ...]]]) -> None:
    """Rows as one JSON array of objects, written batch by batch: byte for byte what
    `json.dumps(rows, indent=2)` prints for the whole list, without holding the whole list."""
    encoder = json.JSONEncoder(ensure_ascii=False, indent=2, default=json_default, allow_nan=False)
    out = sys.stdout
    separator = "[\n"
    for batch in batches:
        objects = [dict(zip(columns, row, strict=True)) for row in batch]
        try:
            text = encoder.encode(objects)
        except ValueError:  # NaN or an infinity, which JSON lacks: null, as print_json does
            text = encoder.encode(json_ready(objects))
        # "[\n  {...},\n  {...}\n]": the items are already indented as array items.
        out.write(separator + text[2:-2])
        separator = ",\n"
    out.write("[]\n" if separator == "[\n" else "\n]\n")
    out.flush()
