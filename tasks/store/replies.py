"""The `replies` table: every inbound SMS, numbered per contact and campaign as it is stored."""

from __future__ import annotations

import polars as pl

from tasks.store.connection import Connection, insert_frame

REPLY_COLUMNS = (
    "campaign_id",
    "phone",
    "country",
    "body",
    "step",
    "matched_option",
    "goto_step",
    "opt_out",
    "provider_id",
    "received_at",
)


def insert(conn: Connection, replies: pl.DataFrame) -> int:
    """Add replies, numbering each contact's after those already stored (`seq`, 1 = first).

    A reply whose `provider_id` is already stored is skipped: the aggregator redelivers webhooks,
    and a redelivered reply is one reply. Returns how many rows were new.
    """
    staged = replies.select(REPLY_COLUMNS).with_row_index("_order")
    return insert_frame(
        conn,
        """
        INSERT INTO replies (campaign_id, phone, seq, country, body, step, matched_option,
                             goto_step, opt_out, provider_id, received_at)
        WITH new AS (
            SELECT * FROM _smartchat_staged_rows s
            WHERE s.provider_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM replies r WHERE r.provider_id = s.provider_id
            )
            QUALIFY s.provider_id IS NULL
                OR row_number() OVER (PARTITION BY s.provider_id ORDER BY s._order) = 1
        ), last AS (
            SELECT campaign_id, phone, max(seq) AS seq FROM replies
            WHERE (campaign_id, phone) IN (SELECT (campaign_id, phone) FROM new)
            GROUP BY ALL
        )
        SELECT n.campaign_id, n.phone,
               coalesce(l.seq, 0)
                   + row_number() OVER (PARTITION BY n.campaign_id, n.phone ORDER BY n._order),
               n.country, n.body, n.step, n.matched_option, n.goto_step, n.opt_out,
               n.provider_id, n.received_at
        FROM new n LEFT JOIN last l USING (campaign_id, phone)
        """,
        staged,
    )
