"""Server commands: `sandbox` (the local aggregator) and `serve` (the webhook receiver)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing yet: the servers' commands register here."""
