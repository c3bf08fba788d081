"""Rows as typed objects, matched by column name: a new column is one edit (the dataclass)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypeVar

import duckdb

T = TypeVar("T")


def columns_of(row_type: type[Any]) -> str:
    """`a, b, c` for a dataclass's fields: the SELECT list that fills it."""
    return ", ".join(f.name for f in fields(row_type))


def fetch_all(
    conn: duckdb.DuckDBPyConnection, row_type: type[T], sql: str, params: Sequence[object] = ()
) -> list[T]:
    """Every row of `sql` as a `row_type`, each column given to the field of its name."""
    cursor = conn.execute(sql, list(params))
    names = [d[0] for d in cursor.description or []]
    return [row_type(**dict(zip(names, row, strict=True))) for row in cursor.fetchall()]
