"""`smartchat run`: a whole campaign on embedded defaults, with live progress.

The work is the `run_campaign` Prefect flow (flows/run_campaign.py), so the campaign shows as one
run tree in the Prefect UI when PREFECT_API_URL points at a server (on Prefect's ephemeral API
otherwise). It runs in a thread while this one reads the store once a second for the progress
table: the store is opened read-only for a moment each time, as any analyst's query would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from smartchat.cli.console import count, print_json, shown
from smartchat.cli.errors import UsageError
from smartchat.cli.options import DbOption, JsonOption, settings_of
from smartchat.errors import SmartChatError, StoreError
from smartchat.settings import Settings, StoreSettings


def run(
    ctx: typer.Context,
    chatbot: Annotated[
        Path,
        typer.Option("--chatbot", "-c", help="The chatbot's YAML file.", show_default=False),
    ],
    contacts: Annotated[
        Path,
        typer.Option("--contacts", help="The contact file (.tsv or .xlsx).", show_default=False),
    ],
    reply_script: Annotated[
        Path | None,
        typer.Option(
            "--reply-script",
            help="How the sandbox's contacts answer (see data/sample-reply-script.yaml). "
            "Default: replies made from the chatbot.",
            metavar="FILE",
        ),
    ] = None,
    expire: Annotated[
        float,
        typer.Option(
            "--expire",
            help="Seconds without a reply before a conversation ends (short, so the run ends).",
            metavar="SECONDS",
        ),
    ] = 20.0,
    rate: Annotated[
        float, typer.Option("--rate", help="Messages per second.", metavar="N")
    ] = 500.0,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Run a whole campaign: launch, send, converse until every conversation ends, summarize.

    Registers the chatbot, starts the sandbox aggregator (when SMARTCHAT_GATEWAY_URL is the local
    default) and the webhook receiver, launches the contacts, sends, answers every reply, and
    prints the campaign summary and the step funnel. Ctrl-C stops cleanly: `smartchat send X`
    and the process-replies flow resume without sending anything twice.
    """
    from schemas.campaigns import check_send_rate
    from schemas.chatbot import load_chatbot

    settings = settings_of(ctx)
    check_send_rate(rate)
    if not expire > 0:
        raise UsageError(f"--expire must be a number of seconds above 0, not {expire:g}.")
    bot = load_chatbot(chatbot)  # a chatbot, reply script or contact file that doesn't fit is
    if reply_script is not None:  # refused before anything starts
        from tasks.gateway.reply_script import load_reply_script

        load_reply_script(reply_script)
    from tasks.validation import check_contact_file

    report = check_contact_file(
        contacts, bot, max_message_chars=settings.validation.max_message_chars
    )
    if not report.valid:
        from smartchat.errors import ContactValidationError

        raise ContactValidationError(f"{contacts} can't be used with {bot.id}.", report)

    _check_ports(settings)  # one sentence now, not a failed flow run in a few seconds
    # Prefect's console logging would scroll the progress table away; the UI keeps every log.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # The ephemeral API's telemetry write races its own SQLite file under a busy run.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.run_campaign import run_campaign

    store = settings.store.at(db)
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["summary"] = asyncio.run(
                run_campaign(
                    str(chatbot),
                    str(contacts),
                    str(reply_script) if reply_script else None,
                    expire,
                    rate,
                    str(store.path),
                )
            )
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            outcome["error"] = exc

    started = time.monotonic()
    since = datetime.now(UTC)
    thread = threading.Thread(target=work, name="run-campaign", daemon=True)
    thread.start()
    console = Console(stderr=True)
    with Live(_progress(store, started, since), console=console, refresh_per_second=2) as live:
        while thread.is_alive():
            thread.join(1.0)
            live.update(_progress(store, started, since))
    console.print()
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]
    if json_output:
        print_json(summary)
        return
    _show_summary(summary, time.monotonic() - started)


def _check_ports(settings: Settings) -> None:
    """The receiver's port, and the sandbox's when the gateway is the local default, are free."""
    from urllib.parse import urlsplit

    from tasks.serving import listen

    wanted = [("webhook receiver", urlsplit(settings.gateway.public_url).port or 8080)]
    gateway = urlsplit(settings.gateway.url)
    if gateway.hostname in ("127.0.0.1", "localhost", "::1"):
        wanted.append(("sandbox aggregator", gateway.port or 80))
    for what, port in wanted:
        try:
            listen("127.0.0.1", port).close()
        except OSError as exc:
            raise UsageError(
                f"The {what} can't listen on port {port} ({exc.strerror or exc}): another "
                "program has it (another smartchat run, serve or sandbox?). Stop it, or choose "
                "other ports (SMARTCHAT_PUBLIC_URL, SMARTCHAT_GATEWAY_URL)."
            ) from None


def _progress(store: StoreSettings, started: float, since: datetime) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(justify="right")
    elapsed = f"{time.monotonic() - started:,.0f} s"
    try:
        from tasks.queries import campaign_status

        latest = [
            p
            for p in (campaign_status(store) if store.path.exists() else [])[:1]
            if p.launched_at is not None and p.launched_at >= since
        ]
    except (SmartChatError, StoreError):
        latest = []  # the store is busy or new: next time
    if not latest:
        table.add_row("Starting", elapsed)
        return table
    p = latest[0]
    table.add_row("Campaign", f"{shown(p.campaign_id)} ({shown(p.status)})")
    table.add_row("Reached", f"{p.reached:,} of {p.contacts:,} contacts")
    table.add_row("Messages sent", f"{p.sent:,}")
    table.add_row("Delivered / failed", f"{p.delivered:,} / {p.failed:,}")
    table.add_row("Replied", f"{p.replied:,} ({p.replies:,} replies)")
    table.add_row(
        "Finished / expired / opted out", f"{p.finished:,} / {p.expired:,} / {p.opted_out:,}"
    )
    table.add_row("Elapsed", elapsed)
    return table


def _show_summary(summary: dict[str, Any], elapsed: float) -> None:
    console = Console()
    card = Table.grid(padding=(0, 2))
    card.add_column(style="bold")
    card.add_column(justify="right")
    for label, key in (
        ("Contacts", "contacts"),
        ("Reached", "reached"),
        ("Messages sent", "sent"),
        ("Delivered", "delivered"),
        ("Failed", "failed"),
        ("Replied", "replied"),
        ("Finished", "finished"),
        ("Expired", "expired"),
        ("Opted out", "opted_out"),
    ):
        card.add_row(label, f"{summary[key]:,}")
    funnel = Table(title="Step funnel", title_justify="left")
    columns = ("step", "reached", "replies", "answered", "fallbacks", "expired", "dropped")
    for name in columns:
        funnel.add_column(name.capitalize(), justify="left" if name == "step" else "right")
    for step in summary["step_funnel"]:
        funnel.add_row(shown(step["step"]), *(f"{step[c]:,}" for c in columns[1:]))
    console.print(f"[bold]Campaign {shown(summary['campaign_id'])}[/]: {shown(summary['status'])}")
    console.print(Group(card, funnel))
    if summary.get("report"):
        console.print(f"The report, with its charts: {shown(summary['report'], limit=500)}")
    console.print(
        f"{elapsed:,.0f} s; {count(summary['segments'], 'SMS segment')} sent. Every "
        f'conversation: smartchat query "SELECT * FROM conversations WHERE campaign_id = '
        f"'{shown(summary['campaign_id'])}'\""
    )


def register(app: typer.Typer) -> None:
    app.command()(run)
