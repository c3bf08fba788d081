"""The `smartchat` command: a thin layer that parses arguments, calls one function, formats output.

    smartchat/cli/   commands (contacts, campaigns, analysis), console output, exit codes
    smartchat/       the core every layer shares: settings, errors (no CLI, no Prefect)

Commands live in one module per area, each exposing `register(app)`. The settings are read once
per invocation, here, and passed down. This package never imports Prefect (about 1 s of start-up
that quick commands must not pay); tests/test_layers.py checks it.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

import typer

from smartchat.cli import (
    analysis,
    campaigns,
    contacts,
    reporting,
    running,
    scheduling,
    sending,
    servers,
)
from smartchat.cli.errors import exit_code, explain
from smartchat.errors import ContactValidationError, SmartChatError
from smartchat.settings import load_settings

_display_type = typer.core.TyperOption.display_type_rich


def _option_placeholder(self: typer.core.TyperOption, ctx: Any) -> str | None:
    # Typer labels values `<bool>`, `<path>`, `<str>` in --help: a flag takes no value, so no
    # label; the others read as the placeholders the usage line and the README use (PATH, TEXT).
    if self.is_flag:
        return None
    label = _display_type(self, ctx)
    return label.strip("<>").upper().replace("STR", "TEXT") if label else None


def _no_placeholder(self: typer.core.TyperArgument, ctx: Any) -> str | None:
    return None  # an argument's name (CAMPAIGN, SQL) is its placeholder already


def _usage_name(self: typer.core.TyperArgument) -> str:
    # Usage lines as Unix manuals write them: `query SQL`, `status [CAMPAIGN]` (Typer writes
    # `{SQL}` for a required argument).
    name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
    return name + ("..." if self.nargs != 1 else "")


typer.core.TyperOption.display_type_rich = _option_placeholder  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _no_placeholder  # type: ignore[method-assign,assignment]
typer.core.TyperArgument._usage_display_name = _usage_name  # type: ignore[method-assign]


class _Group(typer.core.TyperGroup):
    """Turns every SmartChatError into its message and exit code: no traceback for user error."""

    # `ctx` is the Context of the click that Typer vendors privately (typer._click): typed Any
    # rather than importing a private module.
    def invoke(self, ctx: Any) -> Any:
        arguments = _arguments(ctx)  # read now: invoking the subcommand consumes them
        try:
            return super().invoke(ctx)
        except SmartChatError as exc:
            from smartchat.cli.console import err_console, print_json, show_validation_report, shown

            if isinstance(exc, ContactValidationError) and exc.report is not None:
                sample = ctx.obj.validation.report_sample if ctx.obj else 20
                show_validation_report(exc.report, err_console, sample)
            else:
                err_console.print(f"[bold red]Error:[/] {shown(explain(exc), limit=20_000)}")
            if "--json" in arguments:
                # A script reading stdout gets a JSON document whatever happened.
                error = {"type": type(exc).__name__, "message": explain(exc)}
                print_json({"error": {**error, "exit_code": exit_code(exc)}})
            ctx.exit(exit_code(exc))
        except BrokenPipeError:
            # `smartchat query --csv | head`: the reader has all it wanted. Not an error; and
            # Python's own flush of stdout at exit must not fail on the closed pipe either.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(0)


def _arguments(ctx: Any) -> list[str]:
    """The command line after `smartchat` (the subcommand's own arguments included)."""
    # Typer's vendored click keeps the subcommand's name and arguments here until it runs it.
    protected = getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])
    return [*protected, *ctx.args]


app = typer.Typer(
    name="smartchat",
    cls=_Group,
    help="SMS chatbot campaigns: validate contact files, launch campaigns, query what happened.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
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
running.register(app)
reporting.register(app)
scheduling.register(app)


def main() -> None:
    try:
        app()
    finally:
        # At exit the interpreter would garbage-collect every object polars, pandera and numpy
        # made (0.2-0.5 s measured on a 100k-row validate). Freezing skips that last pass only:
        # atexit handlers still run and files and connections are still closed by their owners.
        gc.freeze()
