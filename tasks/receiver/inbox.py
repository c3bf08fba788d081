"""The receiver's inbox: an SQLite file where every signed webhook post is durable before its 2xx.

DuckDB allows one writer process or many readers, never both, and an analyst may hold the store
for minutes; the aggregator must get its answer in seconds, so a post never waits for DuckDB. It
is committed here (WAL, `synchronous=FULL`: on disk when the commit returns, even across a power
cut) and moved into DuckDB later by `tasks.receiver.drain`.

Concurrent posts share commits: each request queues its event and awaits a future; one writer
task commits whatever is waiting (one fsync for the whole group) and resolves every future after
the commit, so an acknowledged post is always on disk. MEASURED.md: 5,800 commits/s one record
each, 108,000 records/s in commits of 50 on this disk.

    events                        one row per webhook post, in arrival order (`id`)
      kind         'status' (a status callback) or 'inbound' (a reply)
      sid          MessageSid
      status       Twilio's MessageStatus; 'received' for an inbound message
      phone        the contact: To of a status callback, From of an inbound message
      sender       our number: From of a status callback (absent while `accepted`), To inbound
      service_sid  MessagingServiceSid, when our number belongs to a messaging service
      body         the inbound text
      error_code   ErrorCode of a status callback; error_message ErrorMessage when sent
      received_us  when we received it, microseconds since the epoch (UTC)
      form         every posted field as JSON [[name, value], ...]: nothing said is lost
      drained_at   when it was moved into DuckDB (microseconds); NULL while pending
      retry_at     a pending event whose message is not in the store yet waits until then
      tries        how many drains found it waiting

A redelivered post is recorded once: (kind, sid, status) is unique, so a callback is one per
message and status, an inbound message one per MessageSid.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

Kind = Literal["status", "inbound"]

SCHEMA_VERSION = 1  # PRAGMA user_version: a later release that changes `events` migrates by it
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id            INTEGER PRIMARY KEY,
    kind          TEXT NOT NULL CHECK (kind IN ('status', 'inbound')),
    sid           TEXT NOT NULL,
    status        TEXT NOT NULL,
    phone         TEXT,
    sender        TEXT,
    service_sid   TEXT,
    body          TEXT,
    error_code    INTEGER,
    error_message TEXT,
    received_us   INTEGER NOT NULL,
    form          TEXT NOT NULL,
    drained_at    INTEGER,
    retry_at      INTEGER NOT NULL DEFAULT 0,
    tries         INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS events_once ON events (kind, sid, status);
CREATE INDEX IF NOT EXISTS events_pending ON events (id) WHERE drained_at IS NULL;
CREATE INDEX IF NOT EXISTS events_drained ON events (drained_at) WHERE drained_at IS NOT NULL;
"""

# The longest a waiting event goes between two looks: its message may be recorded any moment.
_MAX_RETRY_SECONDS = 60


class Event(NamedTuple):
    """One webhook post as the inbox records it (the columns of `events` before draining)."""

    kind: Kind
    sid: str
    status: str
    phone: str | None
    sender: str | None
    service_sid: str | None
    body: str | None
    error_code: int | None
    error_message: str | None
    received_us: int
    form: str

    @classmethod
    def from_form(cls, kind: Kind, form: Sequence[tuple[str, str]], received_us: int) -> Event:
        """The event a posted form describes; ValueError naming a missing or malformed field."""
        fields = dict(form)
        sid = fields.get("MessageSid") or fields.get("SmsSid")
        service_sid = fields.get("MessagingServiceSid") or None
        if not sid:
            raise ValueError("MessageSid is missing")
        if kind == "status":
            status = (fields.get("MessageStatus") or fields.get("SmsStatus") or "").strip()
            if not status:
                raise ValueError("MessageStatus is missing")
            code = fields.get("ErrorCode", "").strip()
            if code and not code.isdigit():
                raise ValueError(f"ErrorCode is not a number: {code!r}")
            return cls(
                kind,
                sid,
                status.lower(),
                fields.get("To") or None,
                fields.get("From") or None,
                service_sid,
                None,
                int(code) if code else None,
                fields.get("ErrorMessage") or None,
                received_us,
                json.dumps(form, ensure_ascii=False),
            )
        phone = fields.get("From")
        if not phone:
            raise ValueError("From is missing")
        return cls(
            kind,
            sid,
            "received",
            phone,
            fields.get("To") or None,
            service_sid,
            fields.get("Body", ""),
            None,
            None,
            received_us,
            json.dumps(form, ensure_ascii=False),
        )


class StoredEvent(NamedTuple):
    """A pending event read back for draining."""

    id: int
    kind: Kind
    sid: str
    status: str
    phone: str | None
    sender: str | None
    service_sid: str | None
    body: str | None
    error_code: int | None
    error_message: str | None
    received_us: int


def now_us() -> int:
    return time.time_ns() // 1000


def open_inbox(path: Path) -> sqlite3.Connection:
    """A connection to the inbox, created if missing; every commit is on disk when it returns.

    Autocommit mode (`isolation_level=None`): each write says BEGIN and COMMIT itself. A
    writer waits up to 10 s for another one (the drainer marking a batch takes milliseconds).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{path} was written by a newer SmartChat release")
        conn.executescript(SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


# The columns are the Event's fields, in its order: an Event is the row it inserts.
_INSERT = (
    f"INSERT OR IGNORE INTO events ({', '.join(Event._fields)}) "
    f"VALUES ({', '.join('?' for _ in Event._fields)})"
)


def record(conn: sqlite3.Connection, events: Iterable[Event]) -> int:
    """Commit `events` in one transaction, skipping redeliveries; returns how many were new."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = conn.total_changes
        conn.executemany(_INSERT, events)
        new = conn.total_changes - before
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return new


class InboxWriter:
    """Group commit for an asyncio server: `await writer.record(event)` returns once it is durable.

    One writer task commits every event waiting when it gets to them (up to `max_group`) in one
    transaction, on a thread of its own, so the event loop keeps serving while SQLite syncs; the
    requests that arrive meanwhile make the next group. A failed commit fails every request of
    its group (the server answers 503 and the aggregator retries).
    """

    def __init__(self, path: Path, *, max_group: int = 2000) -> None:
        self.path = path
        self.max_group = max_group
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="inbox-writer")
        self._conn: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[tuple[Event, asyncio.Future[None]] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, open_inbox, self.path)
        self._task = loop.create_task(self._commit_forever(), name="inbox-writer")

    async def record(self, event: Event) -> None:
        if self._task is None or self._task.done():
            raise RuntimeError("the inbox writer is not running")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((event, done))
        await done

    async def close(self) -> None:
        """Commit what is queued, then close the file."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def _commit_forever(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            group = [first]
            while len(group) < self.max_group and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                group.append(item)
            try:
                await loop.run_in_executor(self._executor, self._commit, [e for e, _ in group])
            except Exception as exc:  # every waiting request learns its post was not recorded
                for _, done in group:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _, done in group:
                    if not done.done():  # a request cancelled meanwhile: recorded all the same
                        done.set_result(None)

    def _commit(self, events: list[Event]) -> None:
        assert self._conn is not None
        record(self._conn, events)


# --- draining -----------------------------------------------------------------------------------


def pending(conn: sqlite3.Connection, *, limit: int, now: int) -> list[StoredEvent]:
    """The oldest `limit` events not drained yet and not waiting past `now` (microseconds)."""
    rows = conn.execute(
        """
        SELECT id, kind, sid, status, phone, sender, service_sid, body, error_code,
               error_message, received_us
        FROM events
        WHERE drained_at IS NULL AND retry_at <= ?
        ORDER BY id
        LIMIT ?
        """,
        (now, limit),
    ).fetchall()
    return [StoredEvent(*row) for row in rows]


def settle(
    conn: sqlite3.Connection,
    drained: Sequence[int],
    waiting: Sequence[int],
    now: int,
    *,
    reply_wait_us: int,
    status_wait_us: int,
) -> None:
    """After the DuckDB commit, in one inbox transaction: mark `drained` as moved (never again
    drained), and leave `waiting` pending for a later drain, 1 s, 2 s, 4 s... (at most a minute)
    from `now` (microseconds), but never past the moment it stops waiting (its arrival plus
    `reply_wait_us` for a reply, `status_wait_us` for a status): then it is settled at once."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if drained:
            conn.execute(
                "UPDATE events SET drained_at = ? WHERE id IN (SELECT value FROM json_each(?))",
                (now, json.dumps(list(drained))),
            )
        if waiting:
            conn.execute(
                f"""
                UPDATE events
                SET tries = tries + 1,
                    retry_at = min(
                        ? + 1000000 * min({_MAX_RETRY_SECONDS}, 1 << min(tries, 6)),
                        received_us + CASE kind WHEN 'inbound' THEN ? ELSE ? END + 1)
                WHERE id IN (SELECT value FROM json_each(?))
                """,
                (now, reply_wait_us, status_wait_us, json.dumps(list(waiting))),
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def prune(conn: sqlite3.Connection, drained_before: int) -> int:
    """Forget events drained before `drained_before`: DuckDB dedupes their redeliveries now."""
    return conn.execute(
        "DELETE FROM events WHERE drained_at IS NOT NULL AND drained_at < ?", (drained_before,)
    ).rowcount


def count_pending(conn: sqlite3.Connection) -> int:
    """How many events are not in DuckDB yet."""
    return int(conn.execute("SELECT count(*) FROM events WHERE drained_at IS NULL").fetchone()[0])


@dataclass(frozen=True)
class InboxCounts:
    events: int  # every event the inbox holds
    pending: int  # not yet in DuckDB


def counts(path: Path) -> InboxCounts:
    """How many events the inbox holds and how many are still to drain (0, 0 if no inbox yet)."""
    if not path.exists():
        return InboxCounts(0, 0)
    conn = open_inbox(path)
    try:
        total = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        return InboxCounts(total, count_pending(conn))
    finally:
        conn.close()
