-- messages, replies and the analyst views
-- Never edit a released migration: files in the field were built by it. Add a new one.

-- One row per outbound SMS. (campaign_id, phone, seq) is the sender's idempotency key: seq numbers
-- a contact's messages in a campaign (1 = the opening message), so a retried batch finds its rows
-- instead of texting people twice. It is kept unique by tasks.store.messages.insert_messages
-- inside the single writer's transaction, not by an index (an ART index over 30M rows: 4.5x the
-- file size, 2x slower inserts, measured). `country` is copied from the frozen contact list so
-- per-country views need no join.
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
);

-- seq = 1 marks a contact's first reply in the campaign: "replied" is then a count, not a
-- COUNT(DISTINCT) over millions of phones (1 s per 5M rows, measured).
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
);

-- The counts read the status timestamps (sent_at, delivered_at, failed_at: set when a message
-- enters that state), not the status text: counting non-NULLs is 2x faster than comparing strings
-- over 30M rows. Opt-outs are counted over DISTINCT rows first: COUNT(DISTINCT ...) FILTER took
-- 6.6 s on 19M replies (measured).
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
LEFT JOIN o ON o.campaign_id = c.id;

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
LEFT JOIN o USING (campaign_id, country);

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
FULL JOIN f USING (campaign_id, step);

CREATE VIEW step_answers AS
SELECT campaign_id, step, matched_option AS option, goto_step,
       count(*) AS replies
FROM replies
WHERE matched_option IS NOT NULL
GROUP BY ALL;
