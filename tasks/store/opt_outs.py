"""The `opt_outs` table: numbers that asked not to be texted, and where they said it.

A number is opted out while it has a row with `opted_in_at` NULL. Recording an opt-out for a
number already opted out adds nothing, so a redelivered callback or a re-run drain is harmless.
"""

from __future__ import annotations

import polars as pl

from tasks.store.connection import Connection, insert_frame

AGGREGATOR = "aggregator"  # Twilio refused the number (error 21610: it unsubscribed there)
REPLY = "reply"  # the contact answered STOP, BAJA... to one of our messages

_OPTIONAL = {"campaign_id": pl.String, "keyword": pl.String, "provider_id": pl.String}


def record(conn: Connection, opt_outs: pl.DataFrame) -> int:
    """Record opt-outs: `phone`, `opted_out_at`, `source`; optional `campaign_id`, `keyword`.

    An optional `provider_id` (the aggregator's id of the message it refused) names the campaign
    when `campaign_id` doesn't. A number already opted out is skipped, and a number several times
    in `opt_outs` is recorded once (its earliest). Returns how many rows were new.
    """
    missing = [pl.lit(None, t).alias(c) for c, t in _OPTIONAL.items() if c not in opt_outs]
    staged = opt_outs.with_columns(missing).select("phone", "opted_out_at", "source", *_OPTIONAL)
    return insert_frame(
        conn,
        """
        INSERT INTO opt_outs (phone, opted_out_at, campaign_id, keyword, source)
        WITH sent AS (
            SELECT provider_id, any_value(campaign_id) AS campaign_id FROM messages
            WHERE provider_id IN (SELECT provider_id FROM _smartchat_staged_rows)
            GROUP BY provider_id
        )
        SELECT s.phone, s.opted_out_at, coalesce(s.campaign_id, m.campaign_id), s.keyword,
               s.source
        FROM _smartchat_staged_rows s
        LEFT JOIN sent m ON m.provider_id = s.provider_id
        WHERE NOT EXISTS (
            SELECT 1 FROM opt_outs o WHERE o.phone = s.phone AND o.opted_in_at IS NULL
        )
        QUALIFY row_number() OVER (PARTITION BY s.phone ORDER BY s.opted_out_at) = 1
        """,
        staged,
    )


def opt_in(conn: Connection, opt_ins: pl.DataFrame) -> int:
    """Numbers that asked to be texted again (`phone`, `opted_in_at`): their opt-outs end.

    Returns how many opt-outs ended (0 for a number that wasn't opted out).
    """
    return insert_frame(
        conn,
        """
        UPDATE opt_outs AS o SET opted_in_at = s.opted_in_at
        FROM (SELECT phone, min(opted_in_at) AS opted_in_at FROM _smartchat_staged_rows
              GROUP BY phone) AS s
        WHERE o.phone = s.phone AND o.opted_in_at IS NULL
        """,
        opt_ins.select("phone", "opted_in_at"),
    )
