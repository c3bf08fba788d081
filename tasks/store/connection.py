"""Opening the DuckDB store for one short unit of work, and writing in one transaction.

DuckDB lets one process open a file read-write, or many processes open it read-only, never both
at once. So that an analyst can query while a campaign launches or sends, every smartchat process
holds the file only for one short unit of work (open, one transaction, close) and never across a
long operation; `open_store` retries with backoff while another process holds the lock, for up
to `StoreSettings.lock_timeout` seconds, then raises `StoreBusy`.

Every statement the program builds is parameterised; bulk rows arrive as a polars frame read by
`INSERT ... SELECT ... FROM <frame>` (0.2 s per million rows), never row by row.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import polars as pl

from smartchat.errors import StoreBusy, StoreError, StoreMissing
from smartchat.settings import StoreSettings
from tasks.store.migrations import checked_version, migrate, schema_version_shipped

Connection = duckdb.DuckDBPyConnection

_LOCK_CONFLICT = re.compile(r"Could not set lock|Conflicting lock", re.IGNORECASE)
# Within one process DuckDB shares one open instance per file: a read-only open while a thread of
# this process has the file read-write (or the reverse) is refused with this message.
_OTHER_CONFIGURATION = re.compile(r"different configuration than existing", re.IGNORECASE)
_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")
# Polling a file lock has no wake-up: short sleeps so a waiter starts soon after the holder
# closes, capped so several waiters don't spin, jittered so they don't retry in lockstep.
_FIRST_DELAY, _MAX_DELAY = 0.02, 0.25
STAGED = "_smartchat_staged_rows"


@contextmanager
def open_store(
    store: StoreSettings, *, read_only: bool = False, sandbox: bool = False
) -> Iterator[Connection]:
    """A connection for one short unit of work; closed (and the file released) on exit.

    Read-write opens create the file and bring its schema up to date. Read-only opens need an
    existing file; `sandbox` also denies any file-system access (for SQL typed by a person).
    """
    path, wait = store.path, store.lock_timeout
    conn = _open_read_only(path, wait, sandbox) if read_only else _open_read_write(path, wait)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def write_transaction(store: StoreSettings) -> Iterator[Connection]:
    """Open, one transaction, close: the only way smartchat writes, so it never holds the lock."""
    with open_store(store) as conn, transaction(conn):
        yield conn


@contextmanager
def transaction(conn: Connection) -> Iterator[Connection]:
    """All or nothing: a crash or an error before COMMIT leaves no trace in the file."""
    conn.execute("BEGIN TRANSACTION")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def insert_frame(
    conn: Connection, sql: str, frame: pl.DataFrame, params: Sequence[object] = ()
) -> int:
    """Run an `INSERT ... SELECT ... FROM _smartchat_staged_rows` reading `frame` in bulk.

    Returns the number of rows inserted (or updated, for an UPDATE ... FROM).
    """
    conn.register(STAGED, frame)
    try:
        rows = conn.execute(sql, list(params)).fetchall()
    except BaseException:
        # A failed statement aborts the transaction, which then refuses even `unregister`:
        # let the real error through (the caller rolls back and closes the connection).
        with suppress(duckdb.Error):
            conn.unregister(STAGED)
        raise
    conn.unregister(STAGED)
    return int(rows[0][0]) if rows else 0


def _open_read_write(path: Path, wait: float) -> Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = _connect(path, read_only=False, wait=wait)
    try:
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn


def _open_read_only(path: Path, wait: float, sandbox: bool) -> Connection:
    if not path.exists():
        raise StoreMissing(f"No SmartChat database at {path} yet.", path)
    started = time.monotonic()
    conn = _connect(path, read_only=True, wait=wait, sandbox=sandbox)
    version = checked_version(conn, path)
    if version == schema_version_shipped():
        return conn
    # A file written by an older release: upgrade it once, briefly read-write, then read.
    conn.close()
    remaining = max(wait - (time.monotonic() - started), 0.0)
    _open_read_write(path, remaining).close()
    return _connect(path, read_only=True, wait=remaining, sandbox=sandbox)


def _connect(path: Path, *, read_only: bool, wait: float, sandbox: bool = False) -> Connection:
    deadline = time.monotonic() + wait
    delay = _FIRST_DELAY
    while True:
        try:
            conn = duckdb.connect(
                str(path),
                read_only=read_only,
                config={"enable_external_access": False} if sandbox else {},
            )
            break
        except duckdb.Error as exc:
            if _OTHER_CONFIGURATION.search(str(exc)) and read_only and not sandbox:
                # This process already holds the file read-write: reading through that same
                # instance costs no lock, and our own code only reads with it here.
                read_only = False
                continue
            if not (_LOCK_CONFLICT.search(str(exc)) or _OTHER_CONFIGURATION.search(str(exc))):
                raise StoreError(f"{path} can't be opened as a SmartChat database: {exc}") from None
            if time.monotonic() + delay > deadline:
                raise StoreBusy(_busy_message(path, wait, str(exc))) from None
        time.sleep(delay * random.uniform(0.5, 1.0))
        delay = min(delay * 2, _MAX_DELAY)
    # DuckDB draws a progress bar on long queries, into our --csv/--json output: never.
    conn.execute("SET enable_progress_bar = false")
    if sandbox:
        conn.execute("SET lock_configuration = true")  # no SET can undo the sandbox
    return conn


def _busy_message(path: Path, wait: float, detail: str) -> str:
    holder = _LOCK_HOLDER.search(detail)
    who = f"process {holder.group(1)}" if holder else "another process"
    return (
        f"{path} is busy: {who} has held it for more than {wait:g} s. SmartChat holds it for "
        "seconds at most, so this is probably a long-lived connection (a notebook, a SQL "
        "client, a `duckdb` shell): close it, or query a copy (an export). "
        "SMARTCHAT_STORE_LOCK_TIMEOUT sets how long to wait."
    )
