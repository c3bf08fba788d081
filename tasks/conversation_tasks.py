"""Prefect tasks for conversations: drain the receiver's inbox, read replies, expire, complete.

Thin wrappers over tasks.receiver.drain and tasks.conversations: a task per batch of replies
(thousands), never per reply. Each is one short transaction (or a few), retried only when the
store was busy (the write never started then).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from schemas.keywords import load_keywords
from smartchat.settings import StoreSettings
from tasks import conversations
from tasks.campaign_tasks import retry_if_transient
from tasks.receiver.drain import drain_inbox


@task(name="drain-inbox", cache_policy=NO_CACHE)
def drain_inbox_task(
    store: StoreSettings, inbox: str, reply_wait: float | None = None
) -> dict[str, Any]:
    """Move what the webhook receiver recorded (statuses, replies) into the store.

    `reply_wait`: seconds a reply from a number nobody (yet) wrote to waits for its message to
    be recorded before it is kept as unsolicited (default: the drain's own).
    """
    if not Path(inbox).exists():
        return {"events": 0, "note": f"no inbox at {inbox}"}
    if reply_wait is None:
        return asdict(drain_inbox(store, Path(inbox)))
    return asdict(drain_inbox(store, Path(inbox), reply_wait=reply_wait))


@task(
    name="read-replies",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_if_transient,
)
def read_replies_task(
    store: StoreSettings,
    keywords_path: str | None,
    batch_size: int,
    expire_after: float | None = None,
) -> dict[str, Any]:
    """One batch of unread replies decided and answered (answers queued for the sender)."""
    keywords = load_keywords(keywords_path)
    result = conversations.process_batch(
        store, keywords, limit=batch_size, expire_after=expire_after
    )
    return asdict(result)


@task(name="campaigns-due", cache_policy=NO_CACHE)
def campaigns_due_task(store: StoreSettings) -> list[str]:
    """Campaigns with queued messages that may go now (held for quiet hours until now, or a
    send that ended early): the flow sends them with the answers."""
    from datetime import UTC, datetime

    from tasks.store import messages, open_store

    if not store.path.exists():
        return []
    with open_store(store, read_only=True) as conn:
        return messages.campaigns_due(conn, datetime.now(UTC))


@task(
    name="expire-and-complete",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=1,
    retry_condition_fn=retry_if_transient,
)
def expire_and_complete_task(
    store: StoreSettings, expire_after: float | None = None
) -> dict[str, Any]:
    """Conversations nobody answered in time end as expired; finished campaigns complete."""
    expired, completed = conversations.expire_and_complete(store, expire_after=expire_after)
    return {"expired": expired, "completed": completed}
