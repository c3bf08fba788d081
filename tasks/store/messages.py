"""The `messages` table: every outbound SMS, and the one way its status moves.

(campaign_id, phone, seq) identifies a message for life: `insert` skips a key the campaign already
has, so a batch re-run after a crash texts nobody twice. `apply_status_changes` moves statuses
forward only (schemas.messages): whatever order the sender and the aggregator's callbacks report
them in, a message ends in the furthest state anyone reported, with each state's time set once.
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from schemas.messages import MessageStatus
from tasks.store.connection import Connection, insert_frame

MESSAGE_COLUMNS = ("phone", "seq", "step", "kind", "country", "body", "segments", "status")
KEY = ("campaign_id", "phone", "seq")


def insert(conn: Connection, campaign_id: str, messages: pl.DataFrame) -> int:
    """Add a batch of outbound messages, skipping any (phone, seq) the campaign already has.

    The idempotency primitive for the sender: re-running a batch after a crash inserts nothing
    twice. Safe because only one process can hold the file read-write, inside a transaction.
    Returns how many rows were new.
    """
    staged = messages.select(MESSAGE_COLUMNS).unique(subset=["phone", "seq"], keep="first")
    return insert_frame(
        conn,
        """
        INSERT INTO messages
            (campaign_id, phone, seq, step, kind, country, body, segments, status)
        SELECT ?, s.phone, s.seq, s.step, s.kind, s.country, s.body, s.segments, s.status
        FROM _smartchat_staged_rows s
        WHERE NOT EXISTS (
            SELECT 1 FROM messages m
            WHERE m.campaign_id = ? AND m.phone = s.phone AND m.seq = s.seq
        )
        """,
        staged,
        [campaign_id, campaign_id],
    )


# The rank of the stored status, as SQL built from the enum (constants, never user input).
_STORED_RANK = (
    "CASE m.status " + " ".join(f"WHEN '{s.value}' THEN {s.rank}" for s in MessageStatus) + " END"
)
_SENT = [MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.UNDELIVERED]
_FAILED = [MessageStatus.FAILED, MessageStatus.UNDELIVERED]


def apply_status_changes(
    conn: Connection, changes: pl.DataFrame, *, by: Literal["key", "provider_id"] = "key"
) -> int:
    """Move messages forward to the statuses reported in `changes`; returns how many moved.

    `changes` has `status` (a MessageStatus value), `at` (when it happened, a UTC datetime) and
    either the message key (`campaign_id`, `phone`, `seq`; `by="key"`, the sender) or
    `provider_id` (`by="provider_id"`, the aggregator's status callbacks); optional `error` (the
    aggregator's code and text) and, by key, `provider_id` (the id the aggregator gave it).
    A change to a status no further along than the stored one is ignored, and final statuses
    (delivered, undelivered, failed) never change. Entering sent, delivered, undelivered or
    failed sets that state's time once; a delivery reported before the send sets both.
    """
    key = list(KEY) if by == "key" else ["provider_id"]
    unknown = set(changes["status"].unique().to_list()) - {s.value for s in MessageStatus}
    if unknown:
        raise ValueError(f"unknown message statuses {sorted(unknown)}")
    optional = [
        pl.col(c) if c in changes.columns else pl.lit(None, pl.String).alias(c)
        for c in ("provider_id", "error")
        if c not in key
    ]
    ranked = changes.select(*key, "status", "at", *optional).with_columns(
        pl.col("status")
        .replace_strict({s.value: s.rank for s in MessageStatus}, return_dtype=pl.Int8)
        .alias("rank")
    )

    def first_at(statuses: list[MessageStatus]) -> pl.Expr:
        return pl.col("at").filter(pl.col("status").is_in([s.value for s in statuses])).min()

    # Several reports for one message in a batch: the furthest status wins, and each state's
    # time is the earliest report of it (or of a state past it).
    staged = ranked.group_by(key).agg(
        pl.col("status").sort_by("rank", descending=True).first(),
        pl.col("rank").max(),
        first_at(_SENT).alias("sent_at"),
        first_at([MessageStatus.DELIVERED]).alias("delivered_at"),
        first_at(_FAILED).alias("failed_at"),
        *[pl.col(c).drop_nulls().last() for c in ("provider_id", "error") if c not in key],
    )
    match = (
        "m.campaign_id = s.campaign_id AND m.phone = s.phone AND m.seq = s.seq"
        if by == "key"
        else "m.provider_id = s.provider_id"
    )
    provider = "m.provider_id" if by == "provider_id" else "coalesce(s.provider_id, m.provider_id)"
    return insert_frame(
        conn,
        f"""
        UPDATE messages AS m SET
            status = s.status,
            provider_id = {provider},
            error = coalesce(s.error, m.error),
            sent_at = coalesce(m.sent_at, s.sent_at),
            delivered_at = coalesce(m.delivered_at, s.delivered_at),
            failed_at = coalesce(m.failed_at, s.failed_at)
        FROM _smartchat_staged_rows AS s
        WHERE {match} AND s.rank > {_STORED_RANK}
        """,
        staged,
    )
