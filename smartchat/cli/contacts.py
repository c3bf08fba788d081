"""Contact-file commands: `validate`, `template`, `country`. None of them starts Prefect."""

from __future__ import annotations

import importlib
import threading
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from smartchat.cli.console import print_json, rows_table, show_validation_report
from smartchat.cli.errors import UsageError
from smartchat.cli.options import DbOption, SheetOption, settings_of
from smartchat.settings import StoreSettings

if TYPE_CHECKING:
    from schemas.chatbot import Chatbot

CHATBOT_OPTION = typer.Option(
    "--chatbot",
    "-c",
    help="The chatbot: its YAML file, or the id of a registered chatbot.",
    metavar="FILE|ID",
    show_default=False,
)


def validate(
    ctx: typer.Context,
    contacts: Annotated[Path, typer.Argument(help="The contact file (.tsv or .xlsx).")],
    chatbot: Annotated[str, CHATBOT_OPTION],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the full result as JSON (every error).")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Write a copy of the sheet with each failing cell highlighted and explained.",
            metavar="FILE.xlsx",
        ),
    ] = None,
    sheet: SheetOption = None,
    db: DbOption = None,
) -> None:
    """Check a contact file against a chatbot before anything is sent.

    Exit code 0 when the file is valid, 1 when it breaks a rule (every problem is listed with its
    row and column), 2 when it can't be read.
    """
    settings = settings_of(ctx)
    if report is not None:
        from tasks.error_report import check_report_path

        check_report_path(report, contacts)  # before the long part: a wrong path is cheap to fix
    # The validation stack (pandera, numpy: ~0.5 s of imports) loads on the second core while
    # this thread reads the file, which polars and calamine do without holding the GIL.
    warm_up = threading.Thread(target=importlib.import_module, args=("tasks.validation",))
    warm_up.start()
    from tasks.ingest import read_contacts

    console = Console()
    busy = nullcontext() if json_output else console.status("Reading and checking contacts…")
    with busy:
        try:
            bot = _chatbot(settings.store.at(db), chatbot)
            read = read_contacts(contacts, sheet)
        finally:
            warm_up.join()
        from tasks.validation import validate_sheet

        result = validate_sheet(read, bot, max_message_chars=settings.validation.max_message_chars)
    if report is not None:
        from tasks.error_report import write_error_report

        write_error_report(read, result, report)
    if json_output:
        print_json(result.to_json())
    else:
        show_validation_report(result, console, settings.validation.report_sample)
        if report is not None:
            console.print(f"Report written to {report}.")
    if not result.valid:
        raise typer.Exit(1)


def template(
    ctx: typer.Context,
    chatbot: Annotated[str, CHATBOT_OPTION],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the .xlsx template.")
    ] = Path("contacts.xlsx"),
    force: Annotated[
        bool, typer.Option("--force", help="Replace the output file if it exists.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Write an empty contact file with the chatbot's headers (CONTACT formatted as text)."""
    from tasks.template import write_template

    bot = _chatbot(settings_of(ctx).store.at(db), chatbot)
    write_template(bot, output, overwrite=force)
    Console().print(
        f"Wrote {output}: columns CONTACT, {', '.join(bot.custom_data) or '(no Custom Data)'}."
    )


def country(
    query: Annotated[
        str, typer.Argument(help="A country name (English or Spanish), ISO code or +code.")
    ],
    json_output: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
) -> None:
    """Look up a country's calling code: `Mexico`, `méxico`, `MX` or `+52`."""
    from tasks.countries import find_countries

    if not query.strip(" +"):
        raise UsageError(
            "Give a country name (Mexico, México), an ISO code (MX) or a calling code (+52)."
        )
    matches = find_countries(query)
    if json_output:
        print_json([m.__dict__ for m in matches])
    elif matches:
        Console().print(
            rows_table(
                f"Countries matching {query!r}",
                ["Code", "ISO", "Country", "País"],
                [(f"+{m.calling_code}", m.iso, m.name_en, m.name_es) for m in matches],
            )
        )
    if not matches:
        if not json_output:
            Console(stderr=True).print(
                f"No country matches {query!r}: try a name (Mexico, México), an ISO code (MX) "
                "or a calling code (+52)."
            )
        raise typer.Exit(1)


def _chatbot(store: StoreSettings, ref: str) -> Chatbot:
    """The chatbot a file or a registered id names (the store is opened only for an id)."""
    from schemas.chatbot import is_chatbot_file, load_chatbot

    if is_chatbot_file(ref):
        return load_chatbot(ref)
    from tasks.campaigns import chatbot_definition

    return chatbot_definition(store, ref)


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(template)
    app.command()(country)
