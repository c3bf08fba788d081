"""The `campaign_contacts` table: each campaign's frozen contact list."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from smartchat.errors import StoreError
from tasks.store.connection import Connection, insert_frame


def insert(
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
        return insert_frame(conn, _INSERT_NO_DATA, contacts.select(columns), [campaign_id])
    # The Unique IDs travel as a struct's field names, so no identifier is spliced into SQL.
    staged = contacts.select(*columns, pl.struct(list(custom_data)).alias("custom_data"))
    return insert_frame(conn, _INSERT, staged, [campaign_id])


# A strict CAST, no TRY_CAST/coalesce: custom data that can't become a map fails the launch (the
# NOT NULL column refuses a NULL map) instead of being stored as an empty map.
_INSERT = """
    INSERT INTO campaign_contacts
        (campaign_id, row_number, phone, country, calling_code, custom_data)
    SELECT ?, "row", phone, country, calling_code, CAST(custom_data AS MAP(VARCHAR, VARCHAR))
    FROM _smartchat_staged_rows
"""
_INSERT_NO_DATA = """
    INSERT INTO campaign_contacts
        (campaign_id, row_number, phone, country, calling_code, custom_data)
    SELECT ?, "row", phone, country, calling_code, MAP {}::MAP(VARCHAR, VARCHAR)
    FROM _smartchat_staged_rows
"""
