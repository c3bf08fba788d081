"""The store's schema: versioned SQL files applied in order, each recorded in `schema_migrations`.

`migrations/NNNN_description.sql` ships as package data. A newer release opens a file written by
an older one and applies the missing steps in one transaction, keeping the data; an older
release refuses a file written by a newer one. Never edit a released file: add the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import duckdb

from smartchat.errors import StoreError

Connection = duckdb.DuckDBPyConnection

_MIGRATIONS_TABLE = """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version      INTEGER PRIMARY KEY,
        description  VARCHAR NOT NULL,
        applied_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
    )
"""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str


@cache
def migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this release, in version order."""
    found = []
    for entry in resources.files(__package__).joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        sql = entry.read_text("utf-8")
        # The first line is the description recorded in schema_migrations: `-- what it adds`.
        description = sql.splitlines()[0].removeprefix("--").strip()
        found.append(Migration(int(entry.name.partition("_")[0]), description, sql))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migration files are not numbered 1..n: {[m.version for m in found]}")
    return tuple(found)


def schema_version_shipped() -> int:
    return migrations()[-1].version


def schema_version(conn: Connection) -> int:
    """The last migration applied to this file; 0 for a new, empty file, -1 if not ours."""
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


def checked_version(conn: Connection, path: Path) -> int:
    """The file's schema version, or StoreError when it isn't a store this release can use."""
    version = schema_version(conn)
    if version < 0:
        conn.close()
        raise StoreError(
            f"{path} is a DuckDB file but not a SmartChat database (it has no "
            "schema_migrations table): point the store at another file."
        )
    shipped = schema_version_shipped()
    if version > shipped:
        conn.close()
        raise StoreError(
            f"{path} was written by a newer SmartChat (schema version {version}; this one knows "
            f"up to {shipped}): upgrade smartchat to use it."
        )
    return version


def migrate(conn: Connection, path: Path | str = "<store>") -> int:
    """Apply the missing migrations in one transaction; returns the schema version."""
    current = checked_version(conn, Path(path))
    shipped = schema_version_shipped()
    if current == shipped:
        return current
    conn.execute("BEGIN TRANSACTION")
    try:
        conn.execute(_MIGRATIONS_TABLE)
        for migration in migrations():
            if migration.version <= current:
                continue
            conn.execute(migration.sql)
            conn.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                [migration.version, migration.description],
            )
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return shipped
