"""The read side, for analysts: campaign progress, read-only SQL, Parquet exports.

Every function opens the store read-only for as short a time as it can (a streamed query holds
it while its rows are read), so launches and sender batches wait at most that long.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from smartchat.errors import OutputFileError, QueryError
from smartchat.settings import StoreSettings
from tasks.store import Connection, open_store
from tasks.store import campaigns as campaign_rows
from tasks.store.campaigns import CampaignProgress
from tasks.store.rows import columns_of

_COMMENTS = re.compile(r"/\*.*?\*/|--[^\n]*", re.DOTALL)


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass(frozen=True)
class QueryRows:
    """An analyst query's result, read in batches so a 30M-row answer never sits in memory."""

    columns: list[str]
    _cursor: Connection

    def fetch(self, limit: int) -> list[tuple[Any, ...]]:
        """Up to `limit` more rows (fewer at the end)."""
        try:
            return self._cursor.fetchmany(limit)
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {exc}") from None

    def batches(self, size: int = 10_000) -> Iterator[list[tuple[Any, ...]]]:
        """The remaining rows, `size` at a time."""
        while rows := self.fetch(size):
            yield rows


def campaign_status(store: StoreSettings, campaign_id: str | None = None) -> list[CampaignProgress]:
    """Progress of one campaign, or of all of them, newest first (the `campaign_summary` view)."""
    with open_store(store, read_only=True) as conn:
        if campaign_id is not None:
            campaign_rows.get(conn, campaign_id)
        return campaign_rows.progress(conn, campaign_id)


def country_status(store: StoreSettings, campaign_id: str) -> QueryResult:
    """One campaign's progress per country (the `campaign_country_summary` view)."""
    with open_store(store, read_only=True) as conn:
        campaign_rows.get(conn, campaign_id)
        cursor = conn.execute(
            "SELECT * EXCLUDE (campaign_id) FROM campaign_country_summary "
            "WHERE campaign_id = ? ORDER BY contacts DESC, country",
            [campaign_id],
        )
        return QueryResult([d[0] for d in cursor.description], cursor.fetchall())


def step_funnel(store: StoreSettings, campaign_id: str) -> QueryResult:
    """One campaign's `step_funnel` rows, the most reached step first."""
    with open_store(store, read_only=True) as conn:
        cursor = conn.execute(
            "SELECT * EXCLUDE (campaign_id) FROM step_funnel WHERE campaign_id = ? "
            "ORDER BY reached DESC, step",
            [campaign_id],
        )
        return QueryResult([d[0] for d in cursor.description], cursor.fetchall())


def check_read_only(sql: str) -> None:
    """Refuse anything but one SELECT, before the store is even opened."""
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"The query can't be parsed: {exc}") from None
    if not statements:
        raise QueryError("The query is empty: write one SELECT statement.")
    if len(statements) > 1:
        raise QueryError(f"One statement at a time, please: this query has {len(statements)}.")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        kind = _statement_name(statement)
        raise QueryError(
            f"Queries are read-only: {kind} statements are refused. Campaigns change only "
            "through their own commands (launch, stop, relaunch); to work on the data "
            "elsewhere, export it to Parquet files."
        )


def _statement_name(statement: duckdb.Statement) -> str:
    """The statement as the person wrote it: DuckDB files INSTALL under LOAD, BEGIN under
    TRANSACTION... A WITH clause says nothing, so the type names those."""
    words = _COMMENTS.sub(" ", statement.query).split()
    first = words[0].upper() if words else ""
    return first if first.isalpha() and first != "WITH" else statement.type.name


@contextmanager
def open_query(store: StoreSettings, sql: str) -> Iterator[QueryRows]:
    """An analyst's SELECT, run read-only and sandboxed (no file access, no settings changes).

    The rows stream from DuckDB as they are read, so memory stays flat whatever the result's
    size; the store stays open (read-only) until the block ends, so read what you need and leave.
    """
    check_read_only(sql)
    with open_store(store, read_only=True, sandbox=True) as conn:
        try:
            cursor = conn.execute(sql)
        except duckdb.Error as exc:
            raise QueryError(f"The query failed: {exc}") from None
        yield QueryRows([d[0] for d in cursor.description or []], cursor)


def run_query(store: StoreSettings, sql: str) -> QueryResult:
    """`open_query` with every row in memory: for small results."""
    with open_query(store, sql) as result:
        return QueryResult(result.columns, [row for batch in result.batches() for row in batch])


# Each export is a static, parameterised query: the campaign id is never spliced into SQL.
# No ORDER BY: sorting 3M messages doubled the time the file is held (rows come in load order).
_EXPORTS: dict[str, str] = {
    "campaigns": f"SELECT {columns_of(campaign_rows.Campaign)} FROM campaigns WHERE id = ?",
    "chatbots": (
        "SELECT b.* FROM chatbots b JOIN campaigns c "
        "ON c.chatbot_id = b.id AND c.chatbot_version = b.version WHERE c.id = ?"
    ),
    "campaign_contacts": "SELECT * FROM campaign_contacts WHERE campaign_id = ?",
    "messages": "SELECT * FROM messages WHERE campaign_id = ?",
    "replies": "SELECT * FROM replies WHERE campaign_id = ?",
    "campaign_summary": "SELECT * FROM campaign_summary WHERE campaign_id = ?",
    "campaign_country_summary": (
        "SELECT * FROM campaign_country_summary WHERE campaign_id = ? ORDER BY country"
    ),
    "step_funnel": "SELECT * FROM step_funnel WHERE campaign_id = ? ORDER BY step",
    "step_answers": "SELECT * FROM step_answers WHERE campaign_id = ? ORDER BY step, option",
}


def export_campaign(store: StoreSettings, campaign_id: str, out_dir: Path | str) -> list[Path]:
    """Parquet files of a campaign's rows in every table and view, in OUT_DIR/<campaign id>/.

    One short read per file (the file is released in between, so a sender batch never waits
    for a whole export: 3M messages take ~2 s). Each file is written under a temporary name and
    renamed, so a BI tool never reads half of one.
    """
    with open_store(store, read_only=True) as conn:
        campaign_rows.get(conn, campaign_id)
    target = Path(out_dir) / campaign_id
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(target, exc) from None
    written = []
    for table, sql in _EXPORTS.items():
        path = target / f"{table}.parquet"
        partial = path.with_suffix(".parquet.partial")
        try:
            with open_store(store, read_only=True) as conn:
                conn.sql(sql, params=[campaign_id]).write_parquet(str(partial))
            partial.replace(path)
        except (OSError, duckdb.IOException) as exc:
            raise _unwritable(path, exc) from None
        written.append(path)
    return written


def _unwritable(path: Path, exc: OSError | duckdb.IOException) -> OutputFileError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return OutputFileError(
        f"Can't write the export to {path} ({reason}): choose a folder you can write to.", path
    )
