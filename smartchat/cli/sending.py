"""Sending commands: `send` (tasks.sending, without Prefect), and `send_with_progress` for `launch`.

`smartchat send X` sends or resumes campaign X with a progress bar on stderr (sent, failed,
messages a second, time left); `--json` prints the report on stdout instead. Refused with one
sentence: an unknown campaign, a stopped or --no-send one (exit 1: the input), a gateway that
can't be reached or refuses the credentials (exit 2). Nothing is marked sent that wasn't: the
gateway is checked before anything is written, and a run that ends early records what it did.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from smartchat.cli.console import err_console, print_json
from smartchat.cli.options import CampaignArgument, DbOption, JsonOption, settings_of
from smartchat.settings import Settings, StoreSettings

if TYPE_CHECKING:
    from tasks.sending import SendProgress, SendReport

RateOption = Annotated[
    float | None,
    typer.Option(
        "--rate",
        help="Messages per second for this run. Default: the campaign's send rate.",
        metavar="N",
    ),
]


def send(
    ctx: typer.Context,
    campaign_id: CampaignArgument,
    rate: RateOption = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Send a launched campaign's messages, or resume a send that stopped or crashed.

    Every contact gets its opening message exactly once: a send interrupted at any moment
    (Ctrl-C, kill -9, a lost connection) is resumed by running this again, and messages whose
    answer was lost are looked up at the aggregator before anything is sent again. Never faster
    than the campaign's rate (or --rate). `smartchat stop X` halts a send between batches.
    """
    settings = settings_of(ctx)
    send_with_progress(settings, settings.store.at(db), campaign_id, rate, json_output)


def send_with_progress(
    settings: Settings,
    store: StoreSettings,
    campaign_id: str,
    rate: float | None = None,
    json_output: bool = False,
    *,
    print_result: bool = True,
) -> SendReport:
    """Send campaign `campaign_id` with a progress bar (or, `json_output`, the JSON report).

    What `smartchat send` runs, and what `smartchat launch` calls after launching (unless
    --no-send). `print_result=False` prints nothing after the bar (with `json_output`: nothing
    at all), so a caller can put `report.to_json()` into its own JSON document. Raises the
    SmartChatError that refused or ended the send (after printing what was done): the CLI
    turns it into its message and exit code.
    """
    from schemas.campaigns import check_send_rate
    from tasks.sending import run_send

    if rate is not None:
        check_send_rate(rate)  # a usage error, before anything is read
    from tasks.quiet_hours import QuietHours

    with _ProgressBar(quiet=json_output) as bar:
        report = asyncio.run(
            run_send(
                store,
                settings.gateway,
                settings.sending,
                campaign_id,
                rate=rate,
                progress=bar.update,
                quiet=QuietHours.parse(settings.sending.quiet_hours),
            )
        )
    if print_result and json_output:
        print_json(report.to_json())
    elif print_result:
        show_report(report)
    if report.failure is not None:
        raise report.failure
    return report


def register(app: typer.Typer) -> None:
    app.command()(send)


class _ProgressBar:
    """A rich progress bar on stderr (stdout stays clean), fed by the sender's ticker."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ProgressBar:
        if not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("sent [green]{task.fields[sent]:,}[/]"),
                TextColumn("failed [red]{task.fields[failed]:,}[/]"),
                TextColumn("{task.fields[per_second]:,.0f}/s"),
                TimeRemainingColumn(),
                console=err_console,
                transient=False,
            )
            self._progress.start()
        return self

    def update(self, live: SendProgress) -> None:
        if self._progress is None or live.total == 0:  # nothing to send: no empty bar
            return
        if self._task is None:
            self._task = self._progress.add_task(
                f"Sending {live.campaign_id}", total=live.total, sent=0, failed=0, per_second=0.0
            )
        self._progress.update(
            self._task,
            total=live.total,
            completed=min(live.done, live.total),
            sent=live.sent,
            failed=live.failed,
            per_second=live.per_second,
        )

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()


def show_report(report: SendReport) -> None:
    console = Console(stderr=True)
    campaign = escape(report.campaign_id)
    counts = report.status_counts
    if report.requests == 0 and not (report.sent or report.failed or report.stopped):
        done = sum(n for status, n in counts.items() if status not in ("queued", "sending"))
        lines = [f"Campaign [bold]{campaign}[/]: nothing left to send ({done:,} messages sent "
                 "or settled before)."]  # fmt: skip
    else:
        lines = [
            f"Campaign [bold]{campaign}[/]: sent [green]{report.sent:,}[/], failed "
            f"[red]{report.failed:,}[/] in {report.elapsed:,.1f} s (requests at "
            f"{report.request_rate:,.1f}/s, limit {report.rate:g})."
        ]
    if report.planned:
        lines.append(f"  {report.planned:,} opening messages queued")
    if report.skipped_opted_out:
        lines.append(f"  {report.skipped_opted_out:,} contacts skipped: their numbers opted out")
    found = report.reconciled.found
    if found or report.reconciled.requeued:
        lines.append(
            f"  from an interrupted send: {found:,} found at the aggregator (recorded sent), "
            f"{report.reconciled.requeued:,} sent again"
        )
    for failure in report.failures[:5]:
        code = f"{failure['error_code']} " if failure["error_code"] else ""
        lines.append(f"  failed: {failure['messages']:,} × {code}{escape(failure['error'] or '')}")
    if report.unresolved:
        lines.append(
            f"  [yellow]{report.unresolved:,} messages could not be confirmed with the "
            f"aggregator: run `smartchat send {campaign}` again to settle them.[/]"
        )
    if report.stopped is not None:
        lines.append(f"  [yellow]Stopped: the campaign is {report.stopped}.[/]")
    if report.held and report.held_until is not None:
        lines.append(
            f"  [yellow]{report.held:,} opening messages wait for their recipients' quiet hours "
            f"to end (the last at {report.held_until:%Y-%m-%d %H:%M} UTC): run `smartchat send "
            f"{campaign}` then, or let the process-replies schedule send them.[/]"
        )
    if report.failure is not None:
        left = report.status_counts.get("queued", 0) + report.status_counts.get("sending", 0)
        lines.append(
            f"  [yellow]The send ended early: {left:,} messages are still to send. Run "
            f"`smartchat send {campaign}` again to resume.[/]"
        )
    console.print("\n".join(lines))
