"""Options several commands share, and the settings each invocation read (smartchat.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smartchat.settings import Settings, StoreSettings

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
ContactsOption = Annotated[
    Path,
    typer.Option("--contacts", help="The contact file (.tsv or .xlsx).", show_default=False),
]
SheetOption = Annotated[
    str | None,
    typer.Option(
        "--sheet",
        help="The .xlsx sheet to read, by name or number. Default: the first visible sheet "
        "with values (hidden sheets are never read unless named).",
        metavar="NAME|N",
        show_default=False,
    ),
]
ChatbotRefOption = Annotated[
    str,
    typer.Option(
        "--chatbot",
        "-c",
        help="The chatbot: a registered id (smartchat chatbot list), or its YAML file "
        "(registered on the way, as chatbot add does).",
        metavar="ID|FILE",
        show_default=False,
    ),
]
CampaignNameOption = Annotated[
    str | None,
    typer.Option("--name", help="A name for people. Default: chatbot name · file name."),
]
LaunchRateOption = Annotated[
    float | None,
    typer.Option(
        "--rate",
        help="Messages per second. Default: $SMARTCHAT_DEFAULT_SEND_RATE.",
        metavar="N",
    ),
]
SeparateOption = Annotated[
    bool,
    typer.Option(
        "--separate",
        help="Launch even though a running campaign of this chatbot came from another file "
        "of the same name (without it, that is refused as an attempt to change that "
        "campaign's contacts: relaunch it instead).",
    ),
]
AgainOption = Annotated[
    bool,
    typer.Option(
        "--again",
        help="Launch even though a running campaign of this chatbot has this very file "
        "(without it, that is refused: its contacts would be texted twice).",
    ),
]
CampaignArgument = Annotated[
    str, typer.Argument(help="The campaign's id.", metavar="CAMPAIGN", show_default=False)
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings the `smartchat` callback loaded for this invocation."""
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings), "the smartchat callback loads the settings"
    return settings


def store_of(ctx: typer.Context, db: Path | None) -> StoreSettings:
    """The store to use: --db when given, else SMARTCHAT_DB's."""
    return settings_of(ctx).store.at(db)
