"""How flow runs name and tag themselves, so the Prefect UI reads as a list of campaigns.

    send · payment-reminder · c-20261201-3639      tags: c-20261201-3639, payment-reminder
    launch · payment-reminder · sample-contacts.tsv  tags: payment-reminder
    validate · payment-reminder · sample-contacts.tsv
    run · payment-reminder · sample-campaign.tsv
    replies · 2026-12-01 09:00 UTC

Each flow's decorator takes `flow_run_name=run_name(KIND)`: Prefect calls it as the run starts,
and it reads the run's parameters from `prefect.runtime`. Prefect 3 has no decorator option for
tags computed from parameters (`@flow` has none; `with tags(...)` tags only the runs started
inside the block), so the first line of each flow body calls `tag_run(...)`, which adds the
campaign and chatbot ids to the run's own tags through the API (keeping the deployment's).

A send's chatbot id is one read-only lookup in the store; when it fails (no store yet, the store
busy for more than a moment, an unknown campaign) the name and tags make do with the campaign id.
Naming and tagging never fail a flow run: they are labels, not work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

SEPARATOR = " · "
# Kinds, as the run names start: the first word of what the flow does.
KINDS = ("validate", "launch", "send", "replies", "run")
# A busy store must not hold a flow's start for the store's whole lock timeout.
LOOKUP_WAIT_SECONDS = 1.0

logger = logging.getLogger("smartchat.flows.naming")


def run_name(kind: str) -> Callable[[], str]:
    """The `flow_run_name` callable for a flow of this kind."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")

    def name() -> str:
        from prefect.runtime import flow_run

        try:
            return name_for(kind, dict(flow_run.parameters))
        except Exception:  # noqa: BLE001  (a label must never fail the run)
            logger.warning("Could not name the %s flow run", kind, exc_info=True)
            return kind

    name.__name__ = f"{kind}_run_name"
    return name


def name_for(kind: str, parameters: dict[str, Any]) -> str:
    """The run name for these parameters (no Prefect needed: testable on its own)."""
    campaign_id, chatbot_id, subject = _labels(kind, parameters)
    parts = [kind, chatbot_id, campaign_id or subject]
    if kind == "replies":
        parts = [kind, datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")]
    return SEPARATOR.join(p for p in parts if p)


def tags_for(kind: str, parameters: dict[str, Any]) -> list[str]:
    """The campaign id and chatbot id a run of this kind is about (those it knows at start)."""
    campaign_id, chatbot_id, _ = _labels(kind, parameters)
    return [t for t in (campaign_id, chatbot_id) if t]


def tag_run(kind: str, **parameters: Any) -> list[str]:
    """Add the run's campaign and chatbot ids to the current flow run's tags; returns them all.

    Call it first thing in a flow body with the flow's own parameters. Outside a flow run, or
    when the API can't be reached, it changes nothing (and says so in the log).
    """
    from prefect.runtime import flow_run

    wanted = tags_for(kind, parameters)
    run_id = flow_run.get_id()
    if not wanted or run_id is None:
        return wanted
    try:
        from uuid import UUID

        from prefect.client.orchestration import get_client

        current = list(flow_run.get_tags() or [])
        merged = _merged(current, wanted)
        if merged != current:
            with get_client(sync_client=True) as client:
                client.update_flow_run(UUID(str(run_id)), tags=merged)
        return merged
    except Exception:  # noqa: BLE001  (a label must never fail the run)
        logger.warning("Could not tag flow run %s with %s", run_id, wanted, exc_info=True)
        return wanted


def _merged(current: Iterable[str], wanted: Iterable[str]) -> list[str]:
    merged = list(current)
    merged.extend(t for t in wanted if t not in merged)
    return merged


def _labels(kind: str, parameters: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(campaign id, chatbot id, the file it is about) for a run of this kind."""
    if kind == "send":
        campaign_id = _text(parameters.get("campaign_id"))
        chatbot = chatbot_of_campaign(campaign_id, _text(parameters.get("db")))
        return campaign_id, chatbot, None
    if kind == "launch":
        contacts = _text(parameters.get("contacts_path"))
        return None, _text(parameters.get("chatbot_id")), _file_name(contacts)
    if kind in ("validate", "run"):
        contacts = _text(parameters.get("contacts_path"))
        chatbot = chatbot_of_file(_text(parameters.get("chatbot_path")))
        return None, chatbot, _file_name(contacts)
    return None, None, None


def chatbot_of_campaign(campaign_id: str | None, db: str | None) -> str | None:
    """The campaign's chatbot id, from the store (None when it can't be read quickly)."""
    if not campaign_id:
        return None
    try:
        from smartchat.settings import load_settings

        store = load_settings().store.at(db)
        return _chatbot_in_store(str(store.path), campaign_id)
    except Exception:  # noqa: BLE001  (no store, a busy one, an unknown campaign: no label)
        return None


@lru_cache(maxsize=256)  # a campaign's chatbot never changes
def _chatbot_in_store(path: str, campaign_id: str) -> str:
    from smartchat.settings import StoreSettings
    from tasks.store import campaigns, open_store

    store = StoreSettings(path=Path(path), lock_timeout=LOOKUP_WAIT_SECONDS)
    with open_store(store, read_only=True) as conn:
        return campaigns.get(conn, campaign_id).chatbot_id


def chatbot_of_file(path: str | None) -> str | None:
    """A chatbot file's `id` (its file name without extension when it can't be read)."""
    if not path:
        return None
    try:
        import yaml

        with open(path, encoding="utf-8") as f:
            document = yaml.safe_load(f)
        found = document.get("id") if isinstance(document, dict) else None
        if isinstance(found, str) and found.strip():
            return found.strip()
    except Exception:  # noqa: BLE001  (validation reports a bad file; the name makes do)
        pass
    return Path(path).stem


def _file_name(path: str | None) -> str | None:
    return Path(path).name if path else None


def _text(value: object) -> str | None:
    return None if value is None else str(value)
