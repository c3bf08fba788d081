"""Sending commands: `send` (built with the sender, tasks/sending)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing yet: the sender's commands register here."""
