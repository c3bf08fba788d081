"""The `replies` table: every inbound SMS, numbered per contact and campaign as it is stored.

A reply belongs to the campaign that last wrote to that phone from the number the reply was sent
to (`attribute`); a reply to a number no campaign wrote to is kept as unsolicited (no campaign,
step or country; `outcome` 'unsolicited').
"""

from __future__ import annotations

from contextlib import suppress

import duckdb
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
# Added by migration 3: NULL when a frame doesn't carry them.
OPTIONAL_COLUMNS = ("sender", "outcome")
UNSOLICITED = "unsolicited"

_INBOUND = "_smartchat_inbound"


def insert(conn: Connection, replies: pl.DataFrame) -> int:
    """Add replies, numbering each contact's after those already stored (`seq`, 1 = first).

    A reply whose `provider_id` is already stored is skipped: the aggregator redelivers webhooks,
    and a redelivered reply is one reply. Unsolicited replies (no campaign) are numbered per
    phone among themselves. Returns how many rows were new.
    """
    missing = [pl.lit(None, pl.String).alias(c) for c in OPTIONAL_COLUMNS if c not in replies]
    staged = (
        replies.with_columns(missing)
        .select(*REPLY_COLUMNS, *OPTIONAL_COLUMNS)
        .with_row_index("_order")
    )
    return insert_frame(
        conn,
        """
        INSERT INTO replies (campaign_id, phone, seq, country, body, step, matched_option,
                             goto_step, opt_out, provider_id, received_at, sender, outcome)
        WITH new AS (
            SELECT * FROM _smartchat_staged_rows s
            WHERE s.provider_id IS NULL OR NOT EXISTS (
                SELECT 1 FROM replies r WHERE r.provider_id = s.provider_id
            )
            QUALIFY s.provider_id IS NULL
                OR row_number() OVER (PARTITION BY s.provider_id ORDER BY s._order) = 1
        ), last AS (
            SELECT campaign_id, phone, max(seq) AS seq FROM replies
            WHERE phone IN (SELECT phone FROM new)
            GROUP BY ALL
        )
        SELECT n.campaign_id, n.phone,
               coalesce(l.seq, 0)
                   + row_number() OVER (PARTITION BY n.campaign_id, n.phone ORDER BY n._order),
               n.country, n.body, n.step, n.matched_option, n.goto_step, n.opt_out,
               n.provider_id, n.received_at, n.sender, n.outcome
        FROM new n
        LEFT JOIN last l
            ON l.phone = n.phone AND l.campaign_id IS NOT DISTINCT FROM n.campaign_id
        """,
        staged,
    )


def attribute(conn: Connection, inbound: pl.DataFrame) -> pl.DataFrame:
    """`inbound` with the campaign each message answers: `campaign_id`, `step`, `country` added.

    `inbound` has `phone` (the contact: the message's From), `sender` (our number: its To),
    `received_at`, and optionally `service_sid` (the MessagingServiceSid our number belongs to:
    a message sent through a service has the service as its sender); other columns are kept.

    The campaign is the one that last wrote to that phone from that sender, among campaigns
    still running first (a reply to a stopped campaign is recorded there only when no running
    campaign wrote to the phone): of its messages that left for the aggregator (sent, or
    `sending`; a queued one, or one failed before sending, never reached the phone) and were
    queued before the reply arrived, the latest by sent_at (else sending_at, queued_at). Its
    step and country are copied. All three are NULL when no campaign wrote to the phone from
    that number.
    """
    numbered = inbound.drop("campaign_id", "step", "country", strict=False).with_row_index("_order")
    service = pl.col("service_sid") if "service_sid" in inbound else pl.lit(None, pl.String)
    staged = numbered.select("_order", "phone", "sender", "received_at", service.alias("service"))
    conn.register(_INBOUND, staged)
    try:
        found = conn.execute(
            f"""
            SELECT s._order, m.campaign_id, m.step, m.country
            FROM {_INBOUND} s
            JOIN messages m
                ON m.phone = s.phone AND (m.sender = s.sender OR m.sender = s.service)
                AND (m.sent_at IS NOT NULL OR m.status = 'sending')
                AND m.queued_at <= s.received_at
            LEFT JOIN campaigns c ON c.id = m.campaign_id
            QUALIFY row_number() OVER (
                PARTITION BY s._order
                ORDER BY coalesce(c.status = 'launched', false) DESC,
                         coalesce(m.sent_at, m.sending_at, m.queued_at) DESC, m.queued_at DESC
            ) = 1
            """
        ).fetchall()
    finally:
        # After a failed statement the aborted transaction refuses even `unregister`.
        with suppress(duckdb.Error):
            conn.unregister(_INBOUND)
    latest = pl.DataFrame(
        found,
        schema={
            "_order": numbered["_order"].dtype,
            "campaign_id": pl.String,
            "step": pl.String,
            "country": pl.String,
        },
        orient="row",
    )
    return numbered.join(latest, on="_order", how="left").sort("_order").drop("_order")
