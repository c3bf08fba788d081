"""The `messages` table: every outbound SMS, and the one way its status moves.

(campaign_id, phone, seq) identifies a message for life: `insert` skips a key the campaign already
has, so a batch re-run after a crash texts nobody twice. `apply_status_changes` moves statuses
forward only (schemas.messages): whatever order the sender and the aggregator's callbacks report
them in, a message ends in the furthest state anyone reported, with each state's time set once.

The sender's moves (tasks.sending) are the other functions: `unplanned_contacts` (who has no
opening message yet), `claim` (queued → sending, in the transaction before any request),
`in_flight` (what a crash left sending), `requeue` (sending → queued: only for messages known not
to be at the aggregator), `fail_opted_out` and `recorded_provider_ids`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import polars as pl

from schemas.messages import MessageStatus
from tasks.store.connection import Connection, insert_frame

MESSAGE_COLUMNS = ("phone", "seq", "step", "kind", "country", "body", "segments", "status")
KEY = ("campaign_id", "phone", "seq")
# The number a contact opted out from is every number: opted out while a row has no opt-in.
_OPTED_OUT = "SELECT phone FROM opt_outs WHERE opted_in_at IS NULL"
OPTED_OUT_ERROR = "Not sent: the number opted out of messages (opt_outs)."


def insert(conn: Connection, campaign_id: str, messages: pl.DataFrame) -> int:
    """Add a batch of outbound messages, skipping any (phone, seq) the campaign already has.

    The idempotency primitive for the sender: re-running a batch after a crash inserts nothing
    twice. Safe because only one process can hold the file read-write, inside a transaction.
    Returns how many rows were new. An optional `sender` column records the number (or
    messaging service) each message goes from; an optional `not_before` holds a message until
    then (quiet hours).
    """
    sender = pl.col("sender") if "sender" in messages.columns else pl.lit(None, pl.String)
    not_before = (
        pl.col("not_before")
        if "not_before" in messages.columns
        else pl.lit(None, pl.Datetime("us", "UTC"))
    )
    staged = messages.select(
        *MESSAGE_COLUMNS, sender.alias("sender"), not_before.alias("not_before")
    ).unique(subset=["phone", "seq"], keep="first")
    return insert_frame(
        conn,
        """
        INSERT INTO messages
            (campaign_id, phone, seq, step, kind, country, body, segments, status, sender,
             not_before)
        SELECT ?, s.phone, s.seq, s.step, s.kind, s.country, s.body, s.segments, s.status,
               s.sender, s.not_before
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
_OPTIONAL_CHANGES: dict[str, pl.DataType] = {
    "provider_id": pl.String(),
    "error": pl.String(),
    "error_code": pl.Int32(),
    "attempts": pl.Int16(),
}
_FAILED = [MessageStatus.FAILED, MessageStatus.UNDELIVERED]


def apply_status_changes(
    conn: Connection, changes: pl.DataFrame, *, by: Literal["key", "provider_id"] = "key"
) -> int:
    """Move messages forward to the statuses reported in `changes`; returns how many moved.

    `changes` has `status` (a MessageStatus value), `at` (when it happened, a UTC datetime) and
    either the message key (`campaign_id`, `phone`, `seq`; `by="key"`, the sender) or
    `provider_id` (`by="provider_id"`, the aggregator's status callbacks); optional `error` (the
    aggregator's code and text), `error_code` (its numeric code), `attempts` (send attempts so
    far: the stored count never goes down) and, by key, `provider_id` (the id the aggregator
    gave it).
    A change to a status no further along than the stored one is ignored, and final statuses
    (delivered, undelivered, failed) never change. Entering sent, delivered, undelivered or
    failed sets that state's time once; a delivery reported before the send sets both.
    """
    key = list(KEY) if by == "key" else ["provider_id"]
    unknown = set(changes["status"].unique().to_list()) - {s.value for s in MessageStatus}
    if unknown:
        raise ValueError(f"unknown message statuses {sorted(unknown)}")
    optional = [
        pl.col(c).cast(dtype) if c in changes.columns else pl.lit(None, dtype).alias(c)
        for c, dtype in _OPTIONAL_CHANGES.items()
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
        *[
            pl.col(c).drop_nulls().last()
            for c in ("provider_id", "error", "error_code")
            if c not in key
        ],
        pl.col("attempts").max(),
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
            error_code = coalesce(s.error_code, m.error_code),
            attempts = greatest(m.attempts, coalesce(s.attempts, m.attempts)),
            sent_at = coalesce(m.sent_at, s.sent_at),
            delivered_at = coalesce(m.delivered_at, s.delivered_at),
            failed_at = coalesce(m.failed_at, s.failed_at)
        FROM _smartchat_staged_rows AS s
        WHERE {match} AND s.rank > {_STORED_RANK}
        """,
        staged,
    )


# --- the sender's moves (tasks.sending) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    """A message marked `sending`: what a request needs, and when it was marked."""

    phone: str
    seq: int
    body: str
    sender: str | None
    attempts: int
    sending_at: datetime


_CLAIMED = "phone, seq, body, sender, attempts, sending_at"


def unplanned_contacts(
    conn: Connection, campaign_id: str, seq: int, custom_data: Sequence[str]
) -> pl.DataFrame:
    """The campaign's contacts with no message `seq` yet, opted-out numbers left out.

    Columns `phone`, `country`, then one per Unique ID of `custom_data` (named after it), in the
    contact file's row order. The IDs travel as parameters, never spliced into the SQL.
    """
    values = ", ".join(f"k.custom_data[${i + 4}] AS c{i}" for i in range(len(custom_data)))
    relation = conn.sql(
        f"""
        SELECT k.phone, k.country{", " + values if values else ""}
        FROM campaign_contacts k
        WHERE k.campaign_id = $1
          AND NOT EXISTS (
              SELECT 1 FROM messages m
              WHERE m.campaign_id = $2 AND m.phone = k.phone AND m.seq = $3)
          AND k.phone NOT IN ({_OPTED_OUT})
        ORDER BY k.row_number
        """,
        params=[campaign_id, campaign_id, seq, *custom_data],
    )
    frame = pl.from_arrow(relation.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.rename({f"c{i}": uid for i, uid in enumerate(custom_data)})


def opted_out_contacts(conn: Connection, campaign_id: str, seq: int) -> int:
    """Contacts of the campaign without message `seq` because their number opted out."""
    rows = conn.execute(
        f"""
        SELECT count(*) FROM campaign_contacts k
        WHERE k.campaign_id = ? AND k.phone IN ({_OPTED_OUT})
          AND NOT EXISTS (
              SELECT 1 FROM messages m
              WHERE m.campaign_id = ? AND m.phone = k.phone AND m.seq = ?)
        """,
        [campaign_id, campaign_id, seq],
    ).fetchall()
    return int(rows[0][0])


def claim(conn: Connection, campaign_id: str, limit: int, at: datetime) -> list[ClaimedMessage]:
    """Mark up to `limit` queued messages `sending` (attempts + 1, sending_at = `at`).

    In the contact file's order; a message held for quiet hours (`not_before` later than `at`)
    waits. Run it in the transaction that ends before the first request for them: after a
    crash, `sending` is exactly what may be at the aggregator.
    """
    picked = conn.execute(
        "SELECT rowid, phone, seq FROM messages WHERE campaign_id = ? AND status = ? "
        "AND (not_before IS NULL OR not_before <= ?) ORDER BY rowid LIMIT ?",
        [campaign_id, MessageStatus.QUEUED.value, at, limit],
    ).fetchall()
    if not picked:
        return []
    rows = conn.execute(
        f"""
        UPDATE messages SET status = ?, sending_at = ?, attempts = attempts + 1
        WHERE rowid IN (SELECT unnest(?::BIGINT[]))
        RETURNING {_CLAIMED}
        """,
        [MessageStatus.SENDING.value, at, [rowid for rowid, _, _ in picked]],
    ).fetchall()
    order = {(phone, seq): i for i, (_, phone, seq) in enumerate(picked)}
    claimed = [ClaimedMessage(*row) for row in rows]
    claimed.sort(key=lambda m: order[(m.phone, m.seq)])  # RETURNING keeps no order
    return claimed


def in_flight(conn: Connection, campaign_id: str) -> list[ClaimedMessage]:
    """The campaign's messages left `sending`: each may or may not be at the aggregator."""
    rows = conn.execute(
        f"SELECT {_CLAIMED} FROM messages WHERE campaign_id = ? AND status = ? ORDER BY rowid",
        [campaign_id, MessageStatus.SENDING.value],
    ).fetchall()
    return [ClaimedMessage(*row) for row in rows]


def requeue(conn: Connection, campaign_id: str, keys: pl.DataFrame) -> int:
    """Put `sending` messages (`phone`, `seq`) back to `queued`; returns how many moved.

    The one backward move, and only for messages known not to be at the aggregator: never
    requested, refused before being accepted (429, connection refused), or looked for in the
    aggregator's list and absent.
    """
    if keys.height == 0:
        return 0
    return insert_frame(
        conn,
        """
        UPDATE messages AS m SET status = ?, sending_at = NULL
        FROM _smartchat_staged_rows AS s
        WHERE m.campaign_id = ? AND m.phone = s.phone AND m.seq = s.seq AND m.status = ?
        """,
        keys.select("phone", "seq"),
        [MessageStatus.QUEUED.value, campaign_id, MessageStatus.SENDING.value],
    )


def fail_opted_out(conn: Connection, campaign_id: str, at: datetime) -> int:
    """Queued messages of the campaign to numbers that opted out since they were planned: failed.

    Every send consults opt_outs this way, so a STOP recorded mid-campaign holds from the next
    batch on. What still goes: the confirmation of that opt-out and the answer to a HELP (kinds
    `opt_out` and `help`, queued by the conversation engine), as carriers expect. Returns how
    many messages failed.
    """
    rows = conn.execute(
        f"""
        UPDATE messages SET status = ?, failed_at = ?, error = ?
        WHERE campaign_id = ? AND status = ? AND phone IN ({_OPTED_OUT})
          AND kind NOT IN ('opt_out', 'help')
        RETURNING 1
        """,
        [MessageStatus.FAILED.value, at, OPTED_OUT_ERROR, campaign_id, MessageStatus.QUEUED.value],
    ).fetchall()
    return len(rows)


def recorded_provider_ids(conn: Connection, provider_ids: Sequence[str]) -> set[str]:
    """Those of `provider_ids` that some message (of any campaign) already has."""
    if not provider_ids:
        return set()
    rows = conn.execute(
        "SELECT DISTINCT provider_id FROM messages WHERE provider_id IN (SELECT unnest(?))",
        [list(provider_ids)],
    ).fetchall()
    return {str(sid) for (sid,) in rows}


def campaigns_due(conn: Connection, at: datetime) -> list[str]:
    """Launched, sending campaigns with queued messages that may go now (say, once quiet hours
    ended): the process-replies schedule sends them."""
    rows = conn.execute(
        """
        SELECT DISTINCT m.campaign_id FROM messages m
        JOIN campaigns c ON c.id = m.campaign_id
        WHERE m.status = ? AND (m.not_before IS NULL OR m.not_before <= ?)
          AND c.status = 'launched' AND c.send_enabled
        ORDER BY 1
        """,
        [MessageStatus.QUEUED.value, at],
    ).fetchall()
    return [str(r[0]) for r in rows]


def held(conn: Connection, campaign_id: str, at: datetime) -> tuple[int, datetime | None]:
    """Queued messages waiting for quiet hours to end, and when the last of them may go."""
    rows = conn.execute(
        "SELECT count(*), max(not_before) FROM messages "
        "WHERE campaign_id = ? AND status = ? AND not_before > ?",
        [campaign_id, MessageStatus.QUEUED.value, at],
    ).fetchall()
    return int(rows[0][0]), rows[0][1]


def status_counts(conn: Connection, campaign_id: str) -> dict[MessageStatus, int]:
    """How many of the campaign's messages are in each status (every status present)."""
    rows = conn.execute(
        "SELECT status, count(*) FROM messages WHERE campaign_id = ? GROUP BY status",
        [campaign_id],
    ).fetchall()
    counts = dict.fromkeys(MessageStatus, 0)
    for status, count in rows:
        counts[MessageStatus(status)] = int(count)
    return counts
