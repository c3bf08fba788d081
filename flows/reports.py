"""The campaign report as the flows publish it: written beside the store, linked from artifacts.

A report that can't be written (a full disk, say) is a warning in the run's log, never a failed
run: the campaign itself went fine, and `smartchat report` can write it later.
"""

from __future__ import annotations

from logging import Logger, LoggerAdapter
from pathlib import Path
from typing import Any

from smartchat.errors import SmartChatError
from smartchat.settings import StoreSettings
from tasks.campaign_report import report_beside_store


def write_report_or_warn(
    store: StoreSettings, campaign_id: str, logger: Logger | LoggerAdapter[Any]
) -> str | None:
    """The report's absolute path (a string: flow results must serialise), or None, logged."""
    try:
        return str(report_beside_store(store, campaign_id))
    except (OSError, SmartChatError) as exc:
        logger.warning("The campaign report of %s could not be written: %s", campaign_id, exc)
        return None


def report_link(path: str) -> str:
    """A markdown link to the report, for an artifact (the UI opens file:// links as-is)."""
    report = Path(path)
    return f"[{report.name}]({report.as_uri()})"
