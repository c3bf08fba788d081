"""The `smartchat` command: a thin layer that parses arguments, calls one function, formats output.

    smartchat/cli/   commands (contacts, campaigns, analysis), console output, exit codes
    smartchat/       the core every layer shares: settings, errors (no CLI, no Prefect)

Commands live in one module per area, each exposing `register(app)`. The settings are read once
per invocation, here, and passed down. This package never imports Prefect (about 1 s of start-up
that quick commands must not pay); tests/test_layers.py checks it.
"""

from __future__ import annotations

import gc
from typing import Any

import typer

from smartchat.cli import analysis, campaigns, contacts, sending, servers
from smartchat.cli.errors import exit_code, explain
from smartchat.errors import ContactValidationError, SmartChatError
from smartchat.settings import load_settings


class _Group(typer.core.TyperGroup):
    """Turns every SmartChatError into its message and exit code: no traceback for user error."""

    # `ctx` is the Context of the click that Typer vendors privately (typer._click): typed Any
    # rather than importing a private module.
    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except SmartChatError as exc:
            from smartchat.cli.console import err_console, show_validation_report, shown

            if isinstance(exc, ContactValidationError) and exc.report is not None:
                sample = ctx.obj.validation.report_sample if ctx.obj else 20
                show_validation_report(exc.report, err_console, sample)
            else:
                err_console.print(f"[bold red]Error:[/] {shown(explain(exc), limit=20_000)}")
            ctx.exit(exit_code(exc))


app = typer.Typer(
    name="smartchat",
    cls=_Group,
    help="SMS chatbot campaigns: validate contact files, launch campaigns, query what happened.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


@app.callback()
def _settings(ctx: typer.Context) -> None:
    # The one place the CLI reads the environment: a bad SMARTCHAT_* value stops every command
    # with exit 2 before anything is read or written.
    ctx.obj = load_settings()


contacts.register(app)
campaigns.register(app)
analysis.register(app)
sending.register(app)
servers.register(app)


def main() -> None:
    try:
        app()
    finally:
        # At exit the interpreter would garbage-collect every object polars, pandera and numpy
        # made (0.2-0.5 s measured on a 100k-row validate). Freezing skips that last pass only:
        # atexit handlers still run and files and connections are still closed by their owners.
        gc.freeze()
