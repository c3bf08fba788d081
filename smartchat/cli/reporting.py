"""Report commands: `report` (one campaign as a self-contained HTML page, tasks.campaign_report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from smartchat.cli.console import busy
from smartchat.cli.errors import UsageError
from smartchat.cli.options import CampaignArgument, DbOption, store_of

HTML_SUFFIXES = (".html", ".htm")


def report(
    ctx: typer.Context,
    campaign_id: CampaignArgument,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the report (.html).",
            metavar="PATH",
            show_default=False,
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the output file if it exists.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write a campaign's report: one HTML page with its figures and charts.

    The page needs no network to open (its scripts are inside it): the campaign's figures, the
    step funnel, delivery and replies by country, replies over time and opt-outs. An existing
    file is replaced only with --force.
    """
    from tasks.campaign_report import write_report

    if output.suffix.lower() not in HTML_SUFFIXES:
        raise UsageError(
            f"The report is an HTML page: give -o a name ending in .html, e.g. "
            f"{output.with_suffix('.html').name}."
        )
    with busy("Building the report…", False):
        path = write_report(store_of(ctx, db), campaign_id, output, overwrite=force)
    Console().print(f"Wrote the report of {escape(campaign_id)} to {escape(str(path))}.")


def register(app: typer.Typer) -> None:
    app.command()(report)
