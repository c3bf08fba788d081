"""The `conversation_state` table and the replies the conversation engine has yet to read.

A reply is unread while its `outcome` is NULL (the receiver's drain stores it so); the engine
reads a batch of them with everything it needs in ONE query (campaign, chatbot version, the
conversation's state, the contact's Custom Data, the next message seq), decides in memory, and
writes its decisions in ONE transaction (`save`): the replies' outcomes, the new states, the
answers as queued messages. So a crash either leaves a reply unread (read again, answered once)
or read and answered in the queue (sent once by the sender).
"""

from __future__ import annotations

from datetime import datetime

import polars as pl

from schemas.campaigns import CampaignStatus
from tasks.store.connection import Connection, insert_frame

STATE_COLUMNS = (
    "campaign_id",
    "phone",
    "country",
    "step",
    "state",
    "end_reason",
    "misses",
    "turns",
    "last_outbound_at",
    "first_reply_at",
    "last_reply_at",
    "ended_at",
)
_ACTIVE_OPT_OUT = "SELECT phone FROM opt_outs WHERE opted_in_at IS NULL"


def unread_replies(conn: Connection, limit: int) -> pl.DataFrame:
    """Up to `limit` unread replies to campaigns, oldest first, with what deciding needs.

    Columns: the reply's key (`campaign_id`, `phone`, `seq`), `body`, `received_at`, `sender`,
    `country`; the campaign's `status`, `chatbot_id`, `chatbot_version`; the conversation's
    `state`, `step`, `misses`, `turns`, `last_outbound_at`, `first_reply_at` (NULL without a
    state row) and `opened_at` (the opening message's sent_at); `custom_data` as
    `{key, value}` pairs; `last_seq` (the contact's last message seq); `opted_out`.
    """
    relation = conn.sql(
        f"""
        WITH r AS (
            SELECT campaign_id, phone, seq, body, received_at, sender, country
            FROM replies
            WHERE outcome IS NULL AND campaign_id IS NOT NULL
            ORDER BY received_at, phone, seq
            LIMIT $1
        ), m AS (
            SELECT m.campaign_id, m.phone, max(m.seq) AS last_seq,
                   max(CASE WHEN m.seq = 1 THEN coalesce(m.sent_at, m.sending_at) END)
                       AS opened_at
            FROM messages m
            WHERE (m.campaign_id, m.phone) IN (SELECT (campaign_id, phone) FROM r)
            GROUP BY ALL
        )
        SELECT r.*, c.status, c.chatbot_id, c.chatbot_version,
               s.state, s.step, s.misses, s.turns, s.last_outbound_at, s.first_reply_at,
               m.opened_at, coalesce(m.last_seq, 0) AS last_seq,
               map_entries(k.custom_data) AS custom_data,
               r.phone IN ({_ACTIVE_OPT_OUT}) AS opted_out
        FROM r
        JOIN campaigns c ON c.id = r.campaign_id
        LEFT JOIN conversation_state s USING (campaign_id, phone)
        LEFT JOIN m USING (campaign_id, phone)
        LEFT JOIN campaign_contacts k USING (campaign_id, phone)
        ORDER BY r.received_at, r.phone, r.seq
        """,
        params=[limit],
    )
    frame = pl.from_arrow(relation.to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame


def save(
    conn: Connection,
    replies: pl.DataFrame,
    states: pl.DataFrame,
    opted_out_phones: pl.DataFrame,
    at: datetime,
) -> None:
    """Write a batch's decisions (call inside the transaction that also queues the answers).

    `replies`: key + `outcome`, `step`, `matched_option`, `goto_step`, `opt_out`. `states`:
    STATE_COLUMNS, one row per conversation the batch moved (replacing its row).
    `opted_out_phones` (`phone`): every other conversation of these numbers ends as opted out.
    """
    if replies.height:
        insert_frame(
            conn,
            """
            UPDATE replies AS r SET outcome = s.outcome, step = coalesce(s.step, r.step),
                matched_option = s.matched_option, goto_step = s.goto_step,
                opt_out = s.opt_out
            FROM _smartchat_staged_rows AS s
            WHERE r.campaign_id = s.campaign_id AND r.phone = s.phone AND r.seq = s.seq
            """,
            replies.select(
                "campaign_id", "phone", "seq", "outcome", "step", "matched_option", "goto_step",
                "opt_out",
            ),
        )  # fmt: skip
    if states.height:
        staged = states.select(STATE_COLUMNS)
        insert_frame(
            conn,
            """
            DELETE FROM conversation_state
            WHERE (campaign_id, phone) IN
                (SELECT (campaign_id, phone) FROM _smartchat_staged_rows)
            """,
            staged,
        )
        insert_frame(
            conn,
            f"INSERT INTO conversation_state ({', '.join(STATE_COLUMNS)}, updated_at) "
            f"SELECT {', '.join(STATE_COLUMNS)}, ? FROM _smartchat_staged_rows",
            staged,
            [at],
        )
    if opted_out_phones.height:
        end_for_numbers(conn, opted_out_phones, "opted_out", at)


def end_for_numbers(conn: Connection, phones: pl.DataFrame, reason: str, at: datetime) -> int:
    """End every waiting conversation of these numbers (`phone`), in every campaign."""
    return insert_frame(
        conn,
        """
        UPDATE conversation_state SET state = ?, end_reason = ?, ended_at = ?, updated_at = ?
        WHERE state = 'waiting' AND phone IN (SELECT phone FROM _smartchat_staged_rows)
        """,
        phones.select("phone"),
        [reason, reason, at, at],
    )


def expire(conn: Connection, at: datetime, expire_after: float | None = None) -> int:
    """End as expired every conversation with no reply for its chatbot's `expire_after`
    (or `expire_after` seconds for all, a run's override) since we last wrote. Returns how many.

    Conversations with a state row are updated; those still at their opening message get one.
    """
    limit = (
        "to_seconds(?::DOUBLE)"
        if expire_after is not None
        else "to_seconds(coalesce(TRY_CAST(json_extract_string(b.definition, '$.expire_after') "
        "AS DOUBLE), 86400))"
    )
    params = [expire_after] if expire_after is not None else []
    updated = conn.execute(
        f"""
        UPDATE conversation_state AS s
        SET state = 'expired', end_reason = 'expired', ended_at = ?, updated_at = ?
        FROM campaigns c JOIN chatbots b ON b.id = c.chatbot_id AND b.version = c.chatbot_version
        WHERE c.id = s.campaign_id AND s.state = 'waiting' AND c.status = ?
          AND s.last_outbound_at + {limit} < ?
        RETURNING 1
        """,
        [at, at, CampaignStatus.LAUNCHED.value, *params, at],
    ).fetchall()
    opened = conn.execute(
        f"""
        INSERT INTO conversation_state (campaign_id, phone, country, step, state, end_reason,
            last_outbound_at, ended_at, updated_at)
        SELECT m.campaign_id, m.phone, m.country, m.step, 'expired', 'expired', m.sent_at, ?, ?
        FROM messages m
        JOIN campaigns c ON c.id = m.campaign_id
        JOIN chatbots b ON b.id = c.chatbot_id AND b.version = c.chatbot_version
        WHERE m.seq = 1 AND m.sent_at IS NOT NULL AND c.status = ?
          AND m.sent_at + {limit} < ?
          AND NOT EXISTS (SELECT 1 FROM conversation_state s
                          WHERE s.campaign_id = m.campaign_id AND s.phone = m.phone)
          AND m.phone NOT IN ({_ACTIVE_OPT_OUT})
        RETURNING 1
        """,
        [at, at, CampaignStatus.LAUNCHED.value, *params, at],
    ).fetchall()
    return len(updated) + len(opened)


def complete(conn: Connection, at: datetime) -> list[str]:
    """Mark `completed` every launched campaign with nothing left to do: every contact's
    opening message sent or failed (or skipped for an opt-out), no message waiting to be sent,
    no conversation waiting for a reply. Returns their ids."""
    rows = conn.execute(
        f"""
        UPDATE campaigns SET status = ?, completed_at = ?
        WHERE status = ? AND send_enabled
          AND NOT EXISTS (
              SELECT 1 FROM campaign_contacts k
              WHERE k.campaign_id = campaigns.id AND k.phone NOT IN ({_ACTIVE_OPT_OUT})
                AND NOT EXISTS (SELECT 1 FROM messages m
                                WHERE m.campaign_id = k.campaign_id AND m.phone = k.phone
                                  AND m.seq = 1))
          AND NOT EXISTS (
              SELECT 1 FROM messages m
              WHERE m.campaign_id = campaigns.id AND m.status IN ('queued', 'sending'))
          AND NOT EXISTS (
              SELECT 1 FROM messages m
              WHERE m.campaign_id = campaigns.id AND m.seq = 1 AND m.sent_at IS NOT NULL
                AND m.phone NOT IN ({_ACTIVE_OPT_OUT})
                AND NOT EXISTS (SELECT 1 FROM conversation_state s
                                WHERE s.campaign_id = m.campaign_id AND s.phone = m.phone
                                  AND s.state <> 'waiting'))
        RETURNING id
        """,
        [CampaignStatus.COMPLETED.value, at, CampaignStatus.LAUNCHED.value],
    ).fetchall()
    return [str(r[0]) for r in rows]
