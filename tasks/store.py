"""The DuckDB store: one file holding chatbots, campaigns, contacts, messages and replies.

DuckDB lets one process open a file read-write, or many processes open it read-only, never both
at once. So that an analyst can query while a campaign launches or sends, every smartchat process
holds the file only for one short unit of work (open, one transaction, close) and never across a
long operation; `open_store` retries with backoff while another process holds the lock, for up
to `settings.store_lock_timeout` seconds, then raises `StoreError`.

The schema is created and upgraded on open by `MIGRATIONS`: versioned SQL steps applied in order
inside one transaction, each recorded in `schema_migrations`, so a newer release opens a file
written by an older one without losing data (and an older release refuses a newer file).

Every statement the program builds is parameterised; bulk rows arrive as a polars frame read by
`INSERT ... SELECT ... FROM <frame>` (0.2 s per million rows), never row by row.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from smartchat.errors import StoreError
from smartchat.settings import get_settings

Connection = duckdb.DuckDBPyConnection


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


# Never edit a released step: files in the field were built by it. Add a new one instead.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "chatbots, campaigns and their frozen contact lists",
        (
            """
            CREATE TABLE chatbots (
                id            VARCHAR NOT NULL,
                version       INTEGER NOT NULL,
                name          VARCHAR NOT NULL,
                language      VARCHAR NOT NULL,
                content_hash  VARCHAR NOT NULL,
                definition    JSON NOT NULL,
                source        VARCHAR,
                created_at    TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                PRIMARY KEY (id, version),
                UNIQUE (id, content_hash)
            )
            """,
            """
            CREATE TABLE campaigns (
                id               VARCHAR PRIMARY KEY,
                name             VARCHAR NOT NULL,
                chatbot_id       VARCHAR NOT NULL,
                chatbot_version  INTEGER NOT NULL,
                status           VARCHAR NOT NULL,
                contacts_file    VARCHAR NOT NULL,
                contacts_sha256  VARCHAR NOT NULL,
                contact_count    BIGINT NOT NULL,
                send_rate        DOUBLE NOT NULL,
                send_enabled     BOOLEAN NOT NULL,
                replaces         VARCHAR,
                created_at       TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                launched_at      TIMESTAMPTZ,
                stopped_at       TIMESTAMPTZ,
                completed_at     TIMESTAMPTZ
            )
            """,
            # No primary key on (campaign_id, phone): validation already refuses a repeated
            # phone, and an index over millions of rows made loads 2x slower and the file 5x
            # bigger (measured). Custom data is a MAP so one table serves every chatbot's columns.
            """
            CREATE TABLE campaign_contacts (
                campaign_id   VARCHAR NOT NULL,
                row_number    INTEGER NOT NULL,
                phone         VARCHAR NOT NULL,
                country       VARCHAR NOT NULL,
                calling_code  SMALLINT NOT NULL,
                custom_data   MAP(VARCHAR, VARCHAR) NOT NULL
            )
            """,
        ),
    ),
    Migration(
        2,
        "messages, replies and the analyst views",
        (
            # One row per outbound SMS. (campaign_id, phone, seq) is the sender's idempotency
            # key: seq numbers a contact's messages in a campaign (1 = the opening message), so a
            # retried batch finds its rows instead of texting people twice. It is kept unique by
            # `insert_messages` inside the single writer's transaction, not by an index (an ART
            # index over 30M rows: 4.5x the file size, 2x slower inserts, measured).
            # `country` is copied from the frozen contact list so per-country views need no join.
            """
            CREATE TABLE messages (
                campaign_id   VARCHAR NOT NULL,
                phone         VARCHAR NOT NULL,
                seq           INTEGER NOT NULL,
                step          VARCHAR NOT NULL,
                kind          VARCHAR NOT NULL,
                country       VARCHAR NOT NULL,
                body          VARCHAR NOT NULL,
                segments      SMALLINT NOT NULL,
                status        VARCHAR NOT NULL,
                attempts      SMALLINT NOT NULL DEFAULT 0,
                provider_id   VARCHAR,
                error         VARCHAR,
                queued_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
                sent_at       TIMESTAMPTZ,
                delivered_at  TIMESTAMPTZ,
                failed_at     TIMESTAMPTZ
            )
            """,
            # seq = 1 marks a contact's first reply in the campaign: "replied" is then a count,
            # not a COUNT(DISTINCT) over millions of phones (1 s per 5M rows, measured).
            """
            CREATE TABLE replies (
                campaign_id     VARCHAR NOT NULL,
                phone           VARCHAR NOT NULL,
                seq             INTEGER NOT NULL,
                country         VARCHAR NOT NULL,
                body            VARCHAR NOT NULL,
                step            VARCHAR NOT NULL,
                matched_option  VARCHAR,
                goto_step       VARCHAR,
                opt_out         BOOLEAN NOT NULL DEFAULT false,
                provider_id     VARCHAR,
                received_at     TIMESTAMPTZ NOT NULL,
                recorded_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
            )
            """,
            # The counts read the status timestamps (sent_at, delivered_at, failed_at: set when
            # a message enters that state), not the status text: counting non-NULLs is 2x
            # faster than comparing strings over 30M rows. Opt-outs are counted over DISTINCT
            # rows first: COUNT(DISTINCT ...) FILTER took 6.6 s on 19M replies (measured).
            """
            CREATE VIEW campaign_summary AS
            WITH m AS (
                SELECT campaign_id,
                       count(CASE WHEN seq = 1 THEN sent_at END) AS reached,
                       count(sent_at) AS sent,
                       count(delivered_at) AS delivered,
                       count(failed_at) AS failed,
                       sum(CASE WHEN sent_at IS NOT NULL THEN segments END) AS segments
                FROM messages
                GROUP BY campaign_id
            ), r AS (
                SELECT campaign_id, count(*) AS replies,
                       count(CASE WHEN seq = 1 THEN 1 END) AS replied
                FROM replies
                GROUP BY campaign_id
            ), o AS (
                SELECT campaign_id, count(*) AS opted_out
                FROM (SELECT DISTINCT campaign_id, phone FROM replies WHERE opt_out)
                GROUP BY campaign_id
            )
            SELECT c.id AS campaign_id, c.name, c.chatbot_id, c.chatbot_version, c.status,
                   c.contact_count AS contacts,
                   coalesce(m.reached, 0)::BIGINT AS reached,
                   coalesce(m.sent, 0)::BIGINT AS sent,
                   coalesce(m.delivered, 0)::BIGINT AS delivered,
                   coalesce(m.failed, 0)::BIGINT AS failed,
                   coalesce(r.replied, 0)::BIGINT AS replied,
                   coalesce(r.replies, 0)::BIGINT AS replies,
                   round(coalesce(r.replied, 0) / nullif(m.reached, 0), 4) AS reply_rate,
                   coalesce(o.opted_out, 0)::BIGINT AS opted_out,
                   coalesce(m.segments, 0)::BIGINT AS segments,
                   c.launched_at, c.stopped_at, c.completed_at
            FROM campaigns c
            LEFT JOIN m ON m.campaign_id = c.id
            LEFT JOIN r ON r.campaign_id = c.id
            LEFT JOIN o ON o.campaign_id = c.id
            """,
            """
            CREATE VIEW campaign_country_summary AS
            WITH k AS (
                SELECT campaign_id, country, count(*) AS contacts
                FROM campaign_contacts
                GROUP BY ALL
            ), m AS (
                SELECT campaign_id, country,
                       count(CASE WHEN seq = 1 THEN sent_at END) AS reached,
                       count(sent_at) AS sent,
                       count(delivered_at) AS delivered,
                       count(failed_at) AS failed,
                       sum(CASE WHEN sent_at IS NOT NULL THEN segments END) AS segments
                FROM messages
                GROUP BY ALL
            ), r AS (
                SELECT campaign_id, country, count(CASE WHEN seq = 1 THEN 1 END) AS replied
                FROM replies
                GROUP BY ALL
            ), o AS (
                SELECT campaign_id, country, count(*) AS opted_out
                FROM (SELECT DISTINCT campaign_id, country, phone FROM replies WHERE opt_out)
                GROUP BY ALL
            )
            SELECT k.campaign_id, k.country, k.contacts,
                   coalesce(m.reached, 0)::BIGINT AS reached,
                   coalesce(m.sent, 0)::BIGINT AS sent,
                   coalesce(m.delivered, 0)::BIGINT AS delivered,
                   coalesce(m.failed, 0)::BIGINT AS failed,
                   coalesce(r.replied, 0)::BIGINT AS replied,
                   round(coalesce(r.replied, 0) / nullif(m.reached, 0), 4) AS reply_rate,
                   coalesce(o.opted_out, 0)::BIGINT AS opted_out,
                   coalesce(m.segments, 0)::BIGINT AS segments
            FROM k
            LEFT JOIN m USING (campaign_id, country)
            LEFT JOIN r USING (campaign_id, country)
            LEFT JOIN o USING (campaign_id, country)
            """,
            """
            CREATE VIEW step_funnel AS
            WITH s AS (
                SELECT campaign_id, step,
                       count(CASE WHEN kind = 'say' THEN sent_at END) AS reached,
                       count(CASE WHEN kind = 'otherwise' THEN sent_at END) AS fallbacks_sent
                FROM messages
                GROUP BY ALL
            ), a AS (
                SELECT campaign_id, step, matched_option, count(*) AS n,
                       count(CASE WHEN matched_option IS NULL AND NOT opt_out THEN 1 END)
                           AS fallbacks
                FROM replies
                GROUP BY ALL
            ), f AS (
                SELECT campaign_id, step,
                       sum(n)::BIGINT AS replies,
                       coalesce(sum(n) FILTER (WHERE matched_option IS NOT NULL), 0)::BIGINT
                           AS answered,
                       coalesce(map_from_entries(list((matched_option, n::BIGINT))
                           FILTER (WHERE matched_option IS NOT NULL)), MAP {}) AS answers,
                       sum(fallbacks)::BIGINT AS fallbacks
                FROM a
                GROUP BY ALL
            )
            SELECT campaign_id, step,
                   coalesce(s.reached, 0)::BIGINT AS reached,
                   coalesce(f.replies, 0)::BIGINT AS replies,
                   coalesce(f.answered, 0)::BIGINT AS answered,
                   coalesce(f.answers, MAP {})::MAP(VARCHAR, BIGINT) AS answers,
                   coalesce(f.fallbacks, 0)::BIGINT AS fallbacks,
                   coalesce(s.fallbacks_sent, 0)::BIGINT AS fallbacks_sent,
                   round(coalesce(f.answered, 0) / nullif(s.reached, 0), 4) AS answer_rate
            FROM s
            FULL JOIN f USING (campaign_id, step)
            """,
            """
            CREATE VIEW step_answers AS
            SELECT campaign_id, step, matched_option AS option, goto_step,
                   count(*) AS replies
            FROM replies
            WHERE matched_option IS NOT NULL
            GROUP BY ALL
            """,
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version

_MIGRATIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version      INTEGER PRIMARY KEY,
        description  VARCHAR NOT NULL,
        applied_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
    )
"""
_LOCK_CONFLICT = re.compile(r"Could not set lock|Conflicting lock", re.IGNORECASE)
_LOCK_HOLDER = re.compile(r"\(PID (\d+)\)")
# Polling a file lock has no wake-up: short sleeps so a waiter starts soon after the holder
# closes, capped so several waiters don't spin, jittered so they don't retry in lockstep.
_FIRST_DELAY, _MAX_DELAY = 0.02, 0.25
_STAGED = "_smartchat_staged_rows"


def db_path(path: Path | str | None = None) -> Path:
    """The store's file: the argument, else `SMARTCHAT_DB`, else `data/smartchat.duckdb`."""
    return Path(path) if path is not None else get_settings().db


@contextmanager
def open_store(
    path: Path | str | None = None,
    *,
    read_only: bool = False,
    timeout: float | None = None,
    sandbox: bool = False,
) -> Iterator[Connection]:
    """A connection for one short unit of work; closed (and the file released) on exit.

    Read-write opens create the file and bring its schema up to date. Read-only opens need an
    existing file; `sandbox` also denies any file-system access (for SQL typed by a person).
    """
    path = db_path(path)
    wait = get_settings().store_lock_timeout if timeout is None else timeout
    conn = _open_read_only(path, wait, sandbox) if read_only else _open_read_write(path, wait)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def write_transaction(
    path: Path | str | None = None, *, timeout: float | None = None
) -> Iterator[Connection]:
    """Open, one transaction, close: the only way smartchat writes, so it never holds the lock."""
    with open_store(path, timeout=timeout) as conn, transaction(conn):
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
        raise StoreError(
            f"No SmartChat database at {path} yet: `smartchat chatbot add FILE.yaml` creates it "
            "(or point --db / SMARTCHAT_DB at the right file)."
        )
    started = time.monotonic()
    conn = _connect(path, read_only=True, wait=wait, sandbox=sandbox)
    version = _checked_version(conn, path)
    if version == SCHEMA_VERSION:
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
            if not _LOCK_CONFLICT.search(str(exc)):
                raise StoreError(f"{path} can't be opened as a SmartChat database: {exc}") from None
            if time.monotonic() + delay > deadline:
                raise StoreError(_busy_message(path, wait, str(exc))) from None
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
        f"{path} is busy: {who} has held it for more than {wait:g} s. SmartChat commands hold it "
        "for seconds at most, so this is probably a long-lived connection (a notebook, a SQL "
        "client, a `duckdb` shell): close it, or query a copy (`smartchat export`). "
        "SMARTCHAT_STORE_LOCK_TIMEOUT sets how long to wait."
    )


# --- schema ------------------------------------------------------------------------------------


def schema_version(conn: Connection) -> int:
    """The last migration applied to this file; 0 for a new, empty file."""
    tables = {
        name
        for (name,) in conn.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND schema_name = 'main'"
        ).fetchall()
    }
    if "schema_migrations" not in tables:
        return -1 if tables else 0
    # fetchall, not fetchone: DuckDB 2 refuses the next statement while a result is unfinished.
    rows = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()
    return int(rows[0][0])


def _checked_version(conn: Connection, path: Path) -> int:
    version = schema_version(conn)
    if version < 0:
        conn.close()
        raise StoreError(
            f"{path} is a DuckDB file but not a SmartChat database (it has no "
            "schema_migrations table): point --db / SMARTCHAT_DB at another file."
        )
    if version > SCHEMA_VERSION:
        conn.close()
        raise StoreError(
            f"{path} was written by a newer SmartChat (schema version {version}; this one knows "
            f"up to {SCHEMA_VERSION}): upgrade smartchat to use it."
        )
    return version


def migrate(conn: Connection, path: Path | str = "<store>") -> int:
    """Apply the missing migrations in one transaction; returns the schema version."""
    current = _checked_version(conn, Path(path))
    if current == SCHEMA_VERSION:
        return current
    with transaction(conn):
        conn.execute(_MIGRATIONS_TABLE)
        for migration in MIGRATIONS:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                [migration.version, migration.description],
            )
    return SCHEMA_VERSION


# --- bulk loads --------------------------------------------------------------------------------


def insert_frame(
    conn: Connection, sql: str, frame: pl.DataFrame, params: Sequence[object] = ()
) -> int:
    """Run an `INSERT ... SELECT ... FROM _smartchat_staged_rows` reading `frame` in bulk.

    Returns the number of rows inserted.
    """
    conn.register(_STAGED, frame)
    try:
        rows = conn.execute(sql, list(params)).fetchall()
    except BaseException:
        # A failed statement aborts the transaction, which then refuses even `unregister`:
        # let the real error through (the caller rolls back and closes the connection).
        with suppress(duckdb.Error):
            conn.unregister(_STAGED)
        raise
    conn.unregister(_STAGED)
    return int(rows[0][0]) if rows else 0


def insert_contacts(
    conn: Connection, campaign_id: str, contacts: pl.DataFrame, custom_data: Sequence[str]
) -> int:
    """Store a validated contact list (tasks.validation's frame) under `campaign_id`."""
    duplicated = contacts["phone"].is_duplicated()
    if duplicated.any():
        # Validation refuses these first; this guards the invariant against any other caller.
        phone = contacts.filter(duplicated)["phone"][0]
        raise StoreError(f"Phone {phone} appears twice in one campaign's contacts.")
    columns = [
        pl.col("row").cast(pl.Int32),
        pl.col("phone"),
        pl.col("country"),
        pl.col("calling_code").cast(pl.Int16),
    ]
    if not custom_data:  # a chatbot without Custom Data: every contact gets an empty map
        return insert_frame(conn, _INSERT_CONTACTS_NO_DATA, contacts.select(columns), [campaign_id])
    # The Unique IDs travel as a struct's field names, so no identifier is spliced into SQL.
    staged = contacts.select(*columns, pl.struct(list(custom_data)).alias("custom_data"))
    return insert_frame(conn, _INSERT_CONTACTS, staged, [campaign_id])


# A strict CAST, no TRY_CAST/coalesce: custom data that can't become a map fails the launch (the
# NOT NULL column refuses a NULL map) instead of being stored as an empty map.
_INSERT_CONTACTS = """
    INSERT INTO campaign_contacts
        (campaign_id, row_number, phone, country, calling_code, custom_data)
    SELECT ?, "row", phone, country, calling_code, CAST(custom_data AS MAP(VARCHAR, VARCHAR))
    FROM _smartchat_staged_rows
"""
_INSERT_CONTACTS_NO_DATA = """
    INSERT INTO campaign_contacts
        (campaign_id, row_number, phone, country, calling_code, custom_data)
    SELECT ?, "row", phone, country, calling_code, MAP {}::MAP(VARCHAR, VARCHAR)
    FROM _smartchat_staged_rows
"""


MESSAGE_COLUMNS = ("phone", "seq", "step", "kind", "country", "body", "segments", "status")


def insert_messages(conn: Connection, campaign_id: str, messages: pl.DataFrame) -> int:
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
