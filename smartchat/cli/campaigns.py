"""Campaign commands: `chatbot add|list`, `launch`, `stop`, `relaunch`.

Each parses its arguments, calls one function of `tasks.campaigns`, and formats the result. The
store is opened by those functions for one short unit of work at a time, never by this module.
Heavy imports (polars, duckdb, pandera) happen inside the commands so `--help` stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from smartchat.cli.console import (
    busy,
    count,
    print_json,
    show_notices,
    show_validation_report,
    shown,
    text_table,
)
from smartchat.cli.errors import exit_code
from smartchat.cli.options import (
    AgainOption,
    CampaignArgument,
    CampaignNameOption,
    ChatbotRefOption,
    ContactsOption,
    DbOption,
    JsonOption,
    LaunchRateOption,
    SeparateOption,
    SheetOption,
    settings_of,
    store_of,
)
from smartchat.errors import ContactValidationError, SmartChatError
from smartchat.settings import Settings, StoreSettings

if TYPE_CHECKING:
    from tasks.campaigns import LaunchResult
    from tasks.store.campaigns import Campaign

NoSendOption = Annotated[
    bool,
    typer.Option("--no-send", help="Launch without sending: the campaign is stored, not texted."),
]

chatbot_app = typer.Typer(
    help="Register and list chatbots (the YAML scripts campaigns run).", no_args_is_help=True
)


@chatbot_app.command("add")
def chatbot_add(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The chatbot's YAML file.", metavar="FILE", show_default=False)
    ],
    db: DbOption = None,
) -> None:
    """Register a chatbot: a changed file becomes a new version, an unchanged one keeps its own.

    A chatbot's language can't change: a file with the same id in another language is refused.
    """
    from tasks.campaigns import register_chatbot

    settings = settings_of(ctx)
    registration = register_chatbot(
        settings.store.at(db), file, max_message_chars=settings.validation.max_message_chars
    )
    bot = registration.chatbot
    what = "Registered" if registration.created else "Unchanged:"
    Console().print(
        f"{what} chatbot [bold]{shown(bot.id)}[/] version {bot.version} "
        f"({shown(bot.name)}, language {shown(bot.language)})."
    )
    if registration.reactivated:
        Console().print(f"Version {bot.version} is again the one new campaigns use.")


@chatbot_app.command("list")
def chatbot_list(ctx: typer.Context, json_output: JsonOption = False, db: DbOption = None) -> None:
    """List every registered chatbot version and how many campaigns use it."""
    from tasks.campaigns import list_chatbots

    entries = list_chatbots(store_of(ctx, db))
    if json_output:
        print_json(
            [
                {
                    "id": use.chatbot.id,
                    "version": use.chatbot.version,
                    "name": use.chatbot.name,
                    "language": use.chatbot.language,
                    "content_hash": use.chatbot.content_hash,
                    "source": use.chatbot.source,
                    "created_at": use.chatbot.created_at,
                    "campaigns": use.campaigns,
                }
                for use in entries
            ]
        )
        return
    table = text_table(
        "Chatbots", ["Id", "Version", "Name", "Language", "Campaigns", "Added", "From"]
    )
    for use in entries:
        bot = use.chatbot
        table.add_row(
            shown(bot.id),
            str(bot.version),
            shown(bot.name),
            shown(bot.language),
            str(use.campaigns),
            f"{bot.created_at:%Y-%m-%d %H:%M}",
            shown(bot.source or ""),
        )
    Console().print(table if entries else "No chatbots yet: smartchat chatbot add FILE.yaml")


def launch(
    ctx: typer.Context,
    chatbot: ChatbotRefOption,
    contacts: ContactsOption,
    name: CampaignNameOption = None,
    rate: LaunchRateOption = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Validate and show what would be sent; write nothing."),
    ] = False,
    no_send: NoSendOption = False,
    separate: SeparateOption = False,
    again: AgainOption = False,
    sheet: SheetOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Validate a contact file against a chatbot and launch a campaign; prints its id.

    The contacts and the file's sha256 are stored in one transaction with the campaign, against
    the chatbot's latest version; after that they can't change. An invalid file writes nothing
    and gets the same report as `smartchat validate` (exit 1; with --json, the same JSON).
    """
    from schemas.campaigns import check_send_rate
    from tasks import campaigns

    settings = settings_of(ctx)
    plan = campaigns.LaunchPlan(
        name=name,
        # Checked before anything is read: a bad --rate is a usage error (exit 2).
        rate=check_send_rate(settings.sending.default_rate if rate is None else rate),
        send=not no_send,
        separate=separate,
        again=again,
    )
    store = settings.store.at(db)
    result = _launching(
        json_output,
        lambda: campaigns.launch(
            store,
            chatbot,
            contacts,
            plan=plan,
            max_message_chars=settings.validation.max_message_chars,
            dry_run=dry_run,
            sheet=sheet,
        ),
    )
    if dry_run:
        _show_dry_run(result, settings, json_output)
        return
    _show_launch(result, json_output, settings.validation.report_sample, send=not no_send)
    if result.campaign is not None and result.campaign.send_enabled:
        _send_launched(settings, store, result, json_output)


def stop(
    ctx: typer.Context,
    campaign_id: CampaignArgument,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Stop a campaign: nothing more is sent and its conversations stop answering.

    Stopping twice is harmless.
    """
    from tasks import campaigns

    campaign, changed = campaigns.stop(store_of(ctx, db), campaign_id)
    if json_output:
        print_json({**campaign.to_json(), "changed": changed})
        return
    if changed:
        Console().print(f"Stopped campaign [bold]{shown(campaign.id)}[/].")
    else:
        Console().print(
            f"Campaign [bold]{shown(campaign.id)}[/] is already {shown(campaign.status)}."
        )


def relaunch(
    ctx: typer.Context,
    campaign_id: Annotated[
        str,
        typer.Argument(help="The campaign to replace.", metavar="CAMPAIGN", show_default=False),
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
    sheet: SheetOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Launch a corrected contact file in place of a campaign (stopping it if it runs).

    The new campaign keeps the old one's chatbot version, send rate and sending (--no-send stays
    --no-send) and records which campaign it replaces. An invalid file changes nothing: the old
    campaign keeps running. A campaign is replaced once: to fix a replacement, relaunch it.
    """
    from tasks import campaigns

    settings = settings_of(ctx)
    result = _launching(
        json_output,
        lambda: campaigns.relaunch(
            settings.store.at(db),
            campaign_id,
            contacts,
            send=send,
            name=name,
            max_message_chars=settings.validation.max_message_chars,
            sheet=sheet,
        ),
    )
    sends = result.campaign is not None and result.campaign.send_enabled
    _show_launch(result, json_output, settings.validation.report_sample, send=sends)
    if sends:
        _send_launched(settings, settings.store.at(db), result, json_output)


def register(app: typer.Typer) -> None:
    app.add_typer(chatbot_app, name="chatbot")
    for command in (launch, stop, relaunch):
        app.command()(command)


def _launching(json_output: bool, action: Callable[[], LaunchResult]) -> LaunchResult:
    """Run a launch or relaunch; with --json an invalid file's report is the JSON on stdout.

    Without --json the error goes up to the CLI, which prints the report as `validate` does.
    """
    try:
        with busy("Validating and storing contacts…", json_output):
            return action()
    except ContactValidationError as exc:
        if not json_output or exc.report is None:
            raise
        print_json(exc.report.to_json())  # the document `smartchat validate --json` prints
        raise typer.Exit(1) from None


def _send_launched(
    settings: Settings, store: StoreSettings, result: LaunchResult, json_output: bool
) -> None:
    """Send a campaign just launched; with --json, one document holds the launch and the send.

    A send that can't start or ends early (the aggregator unreachable, say) leaves the campaign
    launched: its error says so, and `smartchat send` resumes it.
    """
    from smartchat.cli.sending import send_with_progress, show_report

    assert result.campaign is not None
    try:
        report = send_with_progress(
            settings, store, result.campaign.id, json_output=json_output, print_result=False
        )
    except SmartChatError as exc:
        exc.message = (
            f"Campaign {result.campaign.id} is launched but not sent: {exc.message} "
            f"Once that is fixed: smartchat send {result.campaign.id}"
        )
        if json_output:
            print_json({**result.to_json(), "send": {"error": exc.message}})
            raise typer.Exit(exit_code(exc)) from None
        raise
    if json_output:
        print_json({**result.to_json(), "send": report.to_json()})
    else:
        show_report(report)


def _show_dry_run(result: LaunchResult, settings: Settings, json_output: bool) -> None:
    """The validation report, then who would wait for quiet hours and what it would cost."""
    from datetime import UTC, datetime, time

    from tasks.launch_preview import preview
    from tasks.quiet_hours import QuietHours

    start, end = (time.fromisoformat(t) for t in settings.sending.quiet_hours.split("-"))
    shown_preview = preview(
        result.report.contacts,
        result.chatbot.load(),
        quiet=QuietHours(start, end),
        prices=settings.sending.prices,
        now=datetime.now(UTC),
    )
    if json_output:
        print_json({**result.to_json(), "preview": shown_preview.to_json()})
        return
    console = Console()
    show_validation_report(result.report, console, settings.validation.report_sample)
    waiting = shown_preview.waiting
    window = f"{start:%H:%M}–{end:%H:%M} in each contact's local time"
    if waiting.waiting and waiting.latest is not None:
        console.print(
            f"[bold]Quiet hours[/] ({window}): {count(waiting.waiting, 'contact')} of "
            f"{waiting.contacts:,} would wait until {end:%H:%M} their time (the last at "
            f"{waiting.latest:%Y-%m-%d %H:%M} UTC)."
        )
    else:
        console.print(f"[bold]Quiet hours[/] ({window}): nobody would wait right now.")
    cost = shown_preview.cost
    if cost is None:
        console.print(
            f"No price table at {shown(settings.sending.prices)} (SMARTCHAT_PRICES): no cost "
            "estimate."
        )
    else:
        table = text_table(
            f"Estimated cost, opening message ({shown(shown_preview.prices)})",
            ["Country", "Messages", "Segments", "Price/segment", "Cost"],
        )
        for row in cost.opening.by_country.iter_rows(named=True):
            price = row["price_per_segment"]
            table.add_row(
                shown(row["country"]),
                f"{row['messages']:,}",
                f"{row['segments']:,}",
                "" if price is None else f"{price:g}",
                "" if row["cost"] is None else f"{row['cost']:,.2f}",
            )
        console.print(table)
        total = "unknown" if cost.opening.cost is None else f"{cost.opening.cost:,.2f}"
        upper = cost.upper_bound.cost if cost.upper_bound else None
        bound = (
            ""
            if upper is None
            else f"; at most {upper:,.2f} if every contact gets every message once"
        )
        console.print(f"  Total {total} {cost.opening.currency}{bound}. {cost.note}")
    console.print(
        f"[bold]Dry run:[/] nothing was written. Without --dry-run this launches "
        f"{count(result.report.contact_count, 'contact')} with chatbot "
        f"{shown(result.chatbot.id)} version {result.chatbot.version}."
    )


def _show_launch(result: LaunchResult, json_output: bool, sample: int, send: bool = False) -> None:
    if json_output:
        if not send:  # else the launch and its send print one document together
            print_json(result.to_json())
        return
    console = Console()
    campaign = result.campaign
    if campaign is None:
        show_validation_report(result.report, console, sample)
        console.print(
            f"[bold]Dry run:[/] nothing was written. Without --dry-run this launches "
            f"{count(result.report.contact_count, 'contact')} with chatbot "
            f"{shown(result.chatbot.id)} version {result.chatbot.version}."
        )
        return
    show_notices(result.report, console)
    console.print(f"Launched campaign [bold]{shown(campaign.id)}[/]")
    console.print(_launch_details(campaign))


def _launch_details(campaign: Campaign) -> str:
    lines = [
        f"  {count(campaign.contact_count, 'contact')} from {shown(campaign.contacts_file)} "
        f"(sha256 {campaign.contacts_sha256[:12]}…)",
        f"  chatbot {shown(campaign.chatbot_id)} version {campaign.chatbot_version}, "
        f"{campaign.send_rate:g} messages/s",
    ]
    if campaign.replaces:
        lines.append(f"  replaces campaign {shown(campaign.replaces)} (now stopped)")
    if not campaign.send_enabled:
        lines.append("  --no-send: stored, not sent")
    return "\n".join(lines)
