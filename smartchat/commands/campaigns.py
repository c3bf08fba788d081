"""Campaign commands: `chatbot add|list`, `launch`, `stop`, `relaunch`, `status`, `query`, `export`.

Each parses its arguments, calls one function of `tasks.campaigns`, and formats the result. The
store is opened by those functions for one short unit of work at a time, never by this module.
Heavy imports (polars, duckdb, pandera) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from smartchat.console import json_default, json_ready, print_json
from smartchat.errors import ContactValidationError, UsageError

if TYPE_CHECKING:
    from tasks.campaigns import Campaign, CampaignProgress, LaunchResult

DbOption = Annotated[
    Path | None,
    typer.Option(
        "--db",
        help="The DuckDB store. Default: $SMARTCHAT_DB, else data/smartchat.duckdb.",
        metavar="PATH",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
NoSendOption = Annotated[
    bool,
    typer.Option("--no-send", help="Launch without sending: the campaign is stored, not texted."),
]
ContactsOption = Annotated[
    Path,
    typer.Option("--contacts", help="The contact file (.tsv or .xlsx).", show_default=False),
]
# A terminal table of a million rows helps nobody; --csv / --json print every row.
TABLE_ROWS = 1_000
# --csv / --json read and write this many rows at a time: memory stays flat for 30M rows.
STREAM_ROWS = 10_000

chatbot_app = typer.Typer(
    help="Register and list chatbots (the YAML scripts campaigns run).", no_args_is_help=True
)


@chatbot_app.command("add")
def chatbot_add(
    file: Annotated[Path, typer.Argument(help="The chatbot's YAML file.", metavar="FILE.yaml")],
    db: DbOption = None,
) -> None:
    """Register a chatbot: a changed file becomes a new version, an unchanged one keeps its own.

    A chatbot's language can't change: a file with the same id in another language is refused.
    """
    from tasks.campaigns import register_chatbot

    registration = register_chatbot(file, db)
    bot = registration.chatbot
    what = "Registered" if registration.created else "Unchanged:"
    Console().print(
        f"{what} chatbot [bold]{escape(bot.id)}[/] version {bot.version} "
        f"({escape(bot.name)}, language {escape(bot.language)})."
    )


@chatbot_app.command("list")
def chatbot_list(json_output: JsonOption = False, db: DbOption = None) -> None:
    """List every registered chatbot version and how many campaigns use it."""
    from tasks.campaigns import list_chatbots

    entries = list_chatbots(db)
    if json_output:
        print_json(
            [
                {
                    "id": bot.id,
                    "version": bot.version,
                    "name": bot.name,
                    "language": bot.language,
                    "content_hash": bot.content_hash,
                    "source": bot.source,
                    "created_at": bot.created_at,
                    "campaigns": count,
                }
                for bot, count in entries
            ]
        )
        return
    table = _table("Chatbots", ["Id", "Version", "Name", "Language", "Campaigns", "Added", "From"])
    for bot, count in entries:
        table.add_row(
            escape(bot.id),
            str(bot.version),
            escape(bot.name),
            escape(bot.language),
            str(count),
            f"{bot.created_at:%Y-%m-%d %H:%M}",
            escape(bot.source or ""),
        )
    Console().print(table if entries else "No chatbots yet: smartchat chatbot add FILE.yaml")


def launch(
    chatbot: Annotated[
        str,
        typer.Option("--chatbot", "-c", help="The chatbot's id (see `smartchat chatbot list`)."),
    ],
    contacts: ContactsOption,
    name: Annotated[
        str | None,
        typer.Option("--name", help="A name for people. Default: chatbot name · file name."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option("--rate", help="Messages per second. Default: $SMARTCHAT_DEFAULT_SEND_RATE."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and show what would be sent; write nothing."),
    ] = False,
    no_send: NoSendOption = False,
    separate: Annotated[
        bool,
        typer.Option(
            "--separate",
            help="Launch even though a running campaign of this chatbot came from another file "
            "of the same name (without it, that is refused as an attempt to change that "
            "campaign's contacts: relaunch it instead).",
        ),
    ] = False,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Validate a contact file against a chatbot and launch a campaign; prints its id.

    The contacts and the file's sha256 are stored in one transaction with the campaign, against
    the chatbot's latest version; after that they can't change. An invalid file writes nothing
    and gets the same report as `smartchat validate` (exit 1; with --json, the same JSON).
    """
    from tasks.campaigns import launch as launch_campaign

    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise UsageError(
            f"--rate must be a finite number of messages per second above 0, not {rate:g}."
        )
    result = _launching(
        json_output,
        lambda: launch_campaign(
            chatbot,
            contacts,
            name=name,
            rate=rate,
            send=not no_send,
            dry_run=dry_run,
            separate=separate,
            db=db,
        ),
    )
    _show_launch(result, json_output)


def stop(
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id.", metavar="CAMPAIGN")],
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Stop a campaign: nothing more is sent and its conversations stop answering.

    Stopping twice is harmless.
    """
    from tasks.campaigns import stop as stop_campaign

    campaign, changed = stop_campaign(campaign_id, db)
    if json_output:
        print_json({**campaign.to_json(), "changed": changed})
        return
    if changed:
        Console().print(f"Stopped campaign [bold]{escape(campaign.id)}[/].")
    else:
        Console().print(
            f"Campaign [bold]{escape(campaign.id)}[/] is already {escape(campaign.status)}."
        )


def relaunch(
    campaign_id: Annotated[
        str, typer.Argument(help="The campaign to replace.", metavar="CAMPAIGN")
    ],
    contacts: ContactsOption,
    name: Annotated[
        str | None, typer.Option("--name", help="Default: the replaced campaign's name.")
    ] = None,
    send: Annotated[
        bool | None,
        typer.Option(
            "--send/--no-send",
            help="Send, or store without sending. Default: as the replaced campaign.",
            show_default=False,
        ),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Launch a corrected contact file in place of a campaign (stopping it if it runs).

    The new campaign keeps the old one's chatbot version, send rate and sending (--no-send stays
    --no-send) and records which campaign it replaces. An invalid file changes nothing: the old
    campaign keeps running. A campaign is replaced once: to fix a replacement, relaunch it.
    """
    from tasks.campaigns import relaunch as relaunch_campaign

    result = _launching(
        json_output, lambda: relaunch_campaign(campaign_id, contacts, send=send, name=name, db=db)
    )
    _show_launch(result, json_output)


def status(
    campaign_id: Annotated[
        str | None,
        typer.Argument(help="One campaign's id; all campaigns when omitted.", metavar="[CAMPAIGN]"),
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Progress per campaign: contacts, sent, delivered, failed, replied (newest first)."""
    from tasks.campaigns import campaign_status, country_status

    progress = campaign_status(campaign_id, db)
    countries = country_status(campaign_id, db) if campaign_id else None
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
    console.print(_table("By country", countries.columns, _cells(countries.rows)))


def query(
    sql: Annotated[str, typer.Argument(help="One SELECT statement.", metavar="SQL")],
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
    from tasks.campaigns import open_query

    if csv_output and json_output:
        raise UsageError("Choose one of --csv and --json.")
    # Rows stream from DuckDB to stdout in batches: memory stays flat whatever the result's size.
    with open_query(sql, db) as result:
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
    title = f"{len(rows):,} rows" if len(rows) <= TABLE_ROWS else f"More than {TABLE_ROWS:,} rows"
    console.print(_table(title, result.columns, _cells(rows[:TABLE_ROWS])))
    if len(rows) > TABLE_ROWS:
        console.print(f"… first {TABLE_ROWS:,} shown; --csv or --json prints every row.")


def export(
    campaign_id: Annotated[str, typer.Argument(help="The campaign's id.", metavar="CAMPAIGN")],
    to: Annotated[Path, typer.Option("--to", help="Folder for the Parquet files.", metavar="DIR")],
    db: DbOption = None,
) -> None:
    """Write a campaign's tables and views as Parquet files in DIR/CAMPAIGN/, for BI tools.

    Files: campaigns, chatbots, campaign_contacts, messages, replies, campaign_summary,
    campaign_country_summary, step_funnel, step_answers (.parquet).
    """
    from tasks.campaigns import export_campaign

    with _busy("Exporting…", False):
        paths = export_campaign(campaign_id, to, db)
    Console().print(f"Wrote {len(paths)} Parquet files to {escape(str(paths[0].parent))}.")


def register(app: typer.Typer) -> None:
    app.add_typer(chatbot_app, name="chatbot")
    for command in (launch, stop, relaunch, status, query, export):
        app.command()(command)


# --- output ------------------------------------------------------------------------------------


def _launching(json_output: bool, action: Callable[[], LaunchResult]) -> LaunchResult:
    """Run a launch or relaunch; with --json an invalid file's report is the JSON on stdout.

    Without --json the error goes up to the CLI, which prints the report as `validate` does.
    """
    try:
        with _busy("Validating and storing contacts…", json_output):
            return action()
    except ContactValidationError as exc:
        if not json_output or exc.report is None:
            raise
        print_json(exc.report.to_json())  # the document `smartchat validate --json` prints
        raise typer.Exit(1) from None


def _show_launch(result: LaunchResult, json_output: bool) -> None:
    if json_output:
        print_json(result.to_json())
        return
    console = Console()
    campaign = result.campaign
    if campaign is None:
        from smartchat.console import show_validation_report
        from smartchat.settings import get_settings

        show_validation_report(result.report, console, sample=get_settings().report_sample)
        console.print(
            f"[bold]Dry run:[/] nothing was written. Without --dry-run this launches "
            f"{result.report.contact_count:,} contacts with chatbot {escape(result.chatbot.id)} "
            f"version {result.chatbot.version}."
        )
        return
    console.print(f"Launched campaign [bold]{escape(campaign.id)}[/]")
    console.print(_launch_details(campaign))


def _launch_details(campaign: Campaign) -> str:
    lines = [
        f"  {campaign.contact_count:,} contacts from {escape(campaign.contacts_file)} "
        f"(sha256 {campaign.contacts_sha256[:12]}…)",
        f"  chatbot {escape(campaign.chatbot_id)} version {campaign.chatbot_version}, "
        f"{campaign.send_rate:g} messages/s",
    ]
    if campaign.replaces:
        lines.append(f"  replaces campaign {escape(campaign.replaces)} (now stopped)")
    if not campaign.send_enabled:
        lines.append("  --no-send: stored, not sent")
    return "\n".join(lines)


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
            escape(p.campaign_id),
            escape(p.name),
            escape(p.status),
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
        ("Campaign", escape(p.campaign_id)),
        ("Name", escape(p.name)),
        ("Chatbot", escape(f"{p.chatbot_id} version {p.chatbot_version}")),
        ("Status", escape(p.status)),
        ("Contacts", f"{p.contacts:,}"),
        ("Reached", f"{p.reached:,}"),
        ("Sent", f"{p.sent:,} messages, {p.segments:,} SMS segments"),
        ("Delivered", f"{p.delivered:,}"),
        ("Failed", f"{p.failed:,}"),
        ("Replied", f"{p.replied:,} {reply_rate}".strip()),
        ("Opted out", f"{p.opted_out:,}"),
        ("Replaces", escape(p.replaces or "")),
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


def _table(title: str, columns: Iterable[str], rows: Iterable[Sequence[str]] = ()) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold")
    for name in columns:
        table.add_column(escape(name))
    for row in rows:
        table.add_row(*row)
    return table


def _cells(rows: Iterable[Sequence[Any]]) -> Iterator[list[str]]:
    for row in rows:
        yield [escape(_text(v)) for v in row]


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


def _busy(message: str, quiet: bool) -> AbstractContextManager[Any]:
    """A spinner on stderr, so stdout stays clean for --json and pipes."""
    return nullcontext() if quiet else Console(stderr=True).status(message)
