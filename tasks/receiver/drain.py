"""Moving the inbox into DuckDB, a batch per short write transaction.

    status callback  ──► messages: the status moves forward (apply_status_changes, by MessageSid);
                         Twilio's names through MessageStatus.from_provider, ErrorCode kept in
                         error_code and ErrorMessage (when sent) in error; error 21610 (the
                         number unsubscribed at the aggregator) also ──► opt_outs (source
                         'aggregator')
    inbound message  ──► replies: attributed to the campaign that last wrote to that phone from
                         the number it was sent to (tasks.store.replies.attribute), or kept as
                         unsolicited (campaign NULL, outcome 'unsolicited')

The inbox marks a batch drained only after its DuckDB commit, so a crash in between drains it
again, harmlessly: statuses only move forward, replies skip a MessageSid already stored and an
opt-out a number already opted out. A busy store (another process holds the file) stops the
drain: the inbox keeps everything for the next one.

An event can arrive before the message it speaks of is in the store: the sender records a
message's MessageSid after the aggregator answered, and a batch of sends takes a while. A status
callback for a MessageSid no message has yet, or a reply from a number no campaign wrote to from
that sender yet, waits in the inbox (looked at again 1 s, 2 s, 4 s... later) for `status_wait`
or `reply_wait` seconds after it arrived; then the callback is dropped (counted `unmatched`) and
the reply stored as unsolicited.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path

import polars as pl

from schemas.messages import MessageStatus
from smartchat.errors import StoreBusy
from smartchat.settings import StoreSettings
from tasks.receiver.inbox import (
    StoredEvent,
    count_pending,
    now_us,
    open_inbox,
    pending,
    prune,
    settle,
)
from tasks.store import Connection, opt_outs, replies, write_transaction
from tasks.store.messages import apply_status_changes, recorded_provider_ids

OPTED_OUT_AT_AGGREGATOR = 21610  # Twilio: "Attempt to send to unsubscribed recipient"

_EVENT_SCHEMA = {
    "id": pl.Int64,
    "kind": pl.String,
    "sid": pl.String,
    "status": pl.String,
    "phone": pl.String,
    "sender": pl.String,
    "service_sid": pl.String,
    "body": pl.String,
    "error_code": pl.Int64,
    "error_message": pl.String,
    "received_us": pl.Int64,
}
_SECOND = 1_000_000

# Two drains of one inbox at once in a process would both store the replies neither has marked
# (DuckDB shares one database between the connections of a process). Across processes the
# store's file lock already takes their transactions one after the other.
_ONE_AT_A_TIME = threading.Lock()


@dataclass(frozen=True)
class DrainResult:
    """What a drain did. Counts are of inbox events unless they say rows."""

    events: int = 0  # events moved into the store (marked drained)
    moved: int = 0  # messages whose status moved forward (rows)
    replies: int = 0  # new rows in replies
    unsolicited: int = 0  # inbound events stored with no campaign (none wrote to that number)
    opt_outs: int = 0  # new rows in opt_outs (Twilio 21610 callbacks)
    unmatched: int = 0  # status callbacks dropped: no message had their MessageSid in time
    waiting: int = 0  # events left pending: their message is not in the store yet
    left: int = 0  # events still pending in the inbox when the drain ended
    busy: str | None = None  # why the store couldn't be opened (StoreBusy): drain again later

    def __add__(self, other: DrainResult) -> DrainResult:
        summed = {
            f.name: getattr(self, f.name) + getattr(other, f.name)
            for f in fields(self)
            if f.name not in ("left", "busy")
        }
        return DrainResult(**summed, left=other.left, busy=other.busy or self.busy)

    def summary(self) -> str:
        """One line for a log or a terminal."""
        if not (self.events or self.waiting):
            return f"nothing new; {self.left} events left in the inbox"
        text = (
            f"{self.events} events into the store: {self.moved} messages moved on, "
            f"{self.replies} new replies ({self.unsolicited} unsolicited), "
            f"{self.opt_outs} opt-outs"
        )
        if self.unmatched:
            text += f", {self.unmatched} callbacks for unknown messages dropped"
        if self.waiting:
            text += f"; {self.waiting} waiting for their message"
        return text + f"; {self.left} left in the inbox"


def drain_inbox(
    store: StoreSettings,
    inbox: Path,
    *,
    batch: int = 5000,
    status_wait: float = 24 * 3600,
    reply_wait: float = 300,
    keep_drained: float = 2 * 24 * 3600,
) -> DrainResult:
    """Move every pending inbox event into the store, `batch` events per write transaction.

    Stops early (`busy` set) when another process holds the store past its lock timeout.
    Events drained more than `keep_drained` seconds ago are deleted from the inbox (the store
    dedupes their redeliveries by then). Another StoreError propagates; the batch it stopped
    stays pending.
    """
    if batch < 1:
        raise ValueError("batch is a number of events, 1 or more")
    if not inbox.exists():
        return DrainResult()
    with _ONE_AT_A_TIME:
        conn = open_inbox(inbox)
        try:
            result = _drain(store, conn, batch, status_wait, reply_wait)
            prune(conn, now_us() - int(keep_drained * _SECOND))
            return replace(result, left=count_pending(conn))
        finally:
            conn.close()


def _drain(
    store: StoreSettings,
    conn: sqlite3.Connection,
    batch: int,
    status_wait: float,
    reply_wait: float,
) -> DrainResult:
    total = DrainResult()
    while True:
        now = now_us()
        events = pending(conn, limit=batch, now=now)
        if not events:
            return total
        try:
            with write_transaction(store) as db:
                done = _store_batch(db, events, now, status_wait, reply_wait)
        except StoreBusy as exc:
            return total + DrainResult(busy=exc.message)
        settle(
            conn,
            done.drained,
            done.waiting,
            now_us(),
            reply_wait_us=int(reply_wait * _SECOND),
            status_wait_us=int(status_wait * _SECOND),
        )
        total += done.result
        if len(events) < batch:
            return total


@dataclass(frozen=True)
class _Batch:
    result: DrainResult
    drained: list[int]
    waiting: list[int]


def _store_batch(
    db: Connection, events: list[StoredEvent], now: int, status_wait: float, reply_wait: float
) -> _Batch:
    frame = pl.DataFrame(events, schema=_EVENT_SCHEMA, orient="row").with_columns(
        at=pl.from_epoch("received_us", time_unit="us").dt.replace_time_zone("UTC")
    )
    statuses = _store_statuses(db, frame.filter(kind="status"), now - int(status_wait * _SECOND))
    inbound = _store_inbound(db, frame.filter(kind="inbound"), now - int(reply_wait * _SECOND))
    waiting = statuses.waiting + inbound.waiting
    return _Batch(
        result=statuses.result + inbound.result + DrainResult(waiting=len(waiting)),
        drained=statuses.drained + inbound.drained,
        waiting=waiting,
    )


def _store_statuses(db: Connection, statuses: pl.DataFrame, wait_since: int) -> _Batch:
    if statuses.is_empty():
        return _Batch(DrainResult(), [], [])
    ours = {s: _our_status(s) for s in statuses["status"].unique().to_list()}
    statuses = statuses.with_columns(
        ours=pl.col("status").replace_strict(ours, default=None, return_dtype=pl.String)
    )
    changes = statuses.filter(pl.col("ours").is_not_null()).select(
        provider_id="sid",
        status="ours",
        at="at",
        error="error_message",
        error_code=pl.col("error_code").cast(pl.Int32),
    )
    moved = apply_status_changes(db, changes, by="provider_id") if changes.height else 0
    known = recorded_provider_ids(db, changes["provider_id"].unique().to_list())
    refused = statuses.filter(
        pl.col("error_code") == OPTED_OUT_AT_AGGREGATOR, pl.col("phone").is_not_null()
    )
    new_opt_outs = 0
    if refused.height:
        new_opt_outs = opt_outs.record(
            db,
            refused.select(
                "phone", opted_out_at="at", provider_id="sid", source=pl.lit(opt_outs.AGGREGATOR)
            ),
        )
    # A status that says nothing new (receiving...) needs no message: drained as it is.
    unknown = pl.col("ours").is_not_null() & ~pl.col("sid").is_in(list(known))
    late = unknown & (pl.col("received_us") >= wait_since)
    waiting = statuses.filter(late)["id"].to_list()
    return _Batch(
        DrainResult(
            events=statuses.height - len(waiting),
            moved=moved,
            opt_outs=new_opt_outs,
            unmatched=statuses.filter(unknown & ~late).height,
        ),
        drained=statuses.filter(~late)["id"].to_list(),
        waiting=waiting,
    )


def _store_inbound(db: Connection, inbound: pl.DataFrame, wait_since: int) -> _Batch:
    if inbound.is_empty():
        return _Batch(DrainResult(), [], [])
    attributed = replies.attribute(
        db,
        inbound.select(
            "id",
            "received_us",
            "phone",
            "sender",
            "service_sid",
            "body",
            provider_id="sid",
            received_at="at",
        ),
    )
    nobody = pl.col("campaign_id").is_null()
    late = nobody & (pl.col("received_us") >= wait_since)
    ready = attributed.filter(~late)
    new = replies.insert(
        db,
        ready.with_columns(
            matched_option=pl.lit(None, pl.String),
            goto_step=pl.lit(None, pl.String),
            opt_out=pl.lit(False),
            outcome=pl.when(nobody).then(pl.lit(replies.UNSOLICITED)),
        ),
    )
    waiting = attributed.filter(late)["id"].to_list()
    return _Batch(
        DrainResult(
            events=ready.height,
            replies=new,
            unsolicited=ready.filter(nobody).height,
        ),
        drained=ready["id"].to_list(),
        waiting=waiting,
    )


def _our_status(provider_status: str) -> str | None:
    status = MessageStatus.from_provider(provider_status)
    return None if status is None else status.value
