-- conversations: each contact's place in the chatbot, and their outcomes in the analyst views
-- Never edit a released migration: files in the field were built by it. Add a new one.

-- One row per campaign and contact whose conversation moved past its opening message: the
-- engine (tasks/conversations.py) writes it when a reply arrives, and its sweep when a
-- conversation expires. A contact without a row is waiting for a reply to the opening message
-- (or was never reached): the `conversations` view says which.
--   state       waiting | finished | expired | opted_out | stopped
--   end_reason  completed (a final step) | miss_limit | expired | opted_out | stopped
CREATE TABLE conversation_state (
    campaign_id       VARCHAR NOT NULL,
    phone             VARCHAR NOT NULL,
    country           VARCHAR,
    step              VARCHAR NOT NULL,
    state             VARCHAR NOT NULL,
    end_reason        VARCHAR,
    misses            INTEGER NOT NULL DEFAULT 0,
    turns             INTEGER NOT NULL DEFAULT 0,
    last_outbound_at  TIMESTAMPTZ,
    first_reply_at    TIMESTAMPTZ,
    last_reply_at     TIMESTAMPTZ,
    ended_at          TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);

-- One row per campaign and contact. `state` for contacts the engine has not touched: waiting
-- once the opening message was sent, not_reached before (or when it failed); a campaign that is
-- stopped stops its waiting conversations; an opted-out number's conversations are opted_out.
CREATE VIEW conversations AS
SELECT k.campaign_id, k.phone, k.country,
       coalesce(s.step, json_extract_string(b.definition, '$.start')) AS step,
       CASE
           WHEN s.state IS NOT NULL AND s.state <> 'waiting' THEN s.state
           WHEN o.phone IS NOT NULL THEN 'opted_out'
           WHEN c.status = 'stopped' THEN 'stopped'
           WHEN s.state IS NULL AND m.sent_at IS NULL THEN 'not_reached'
           WHEN coalesce(s.last_outbound_at, m.sent_at) + to_seconds(
                    coalesce(TRY_CAST(json_extract_string(b.definition, '$.expire_after')
                        AS DOUBLE), 86400)) < now() THEN 'expired'
           ELSE 'waiting'
       END AS state,
       s.end_reason,
       coalesce(s.turns, 0) AS turns,
       coalesce(s.misses, 0) AS misses,
       m.sent_at AS started_at,
       s.first_reply_at, s.last_reply_at, s.ended_at
FROM campaign_contacts k
JOIN campaigns c ON c.id = k.campaign_id
JOIN chatbots b ON b.id = c.chatbot_id AND b.version = c.chatbot_version
LEFT JOIN conversation_state s ON s.campaign_id = k.campaign_id AND s.phone = k.phone
LEFT JOIN messages m ON m.campaign_id = k.campaign_id AND m.phone = k.phone AND m.seq = 1
LEFT JOIN (SELECT DISTINCT phone FROM opt_outs WHERE opted_in_at IS NULL) o
    ON o.phone = k.phone;

DROP VIEW campaign_summary;
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
    WHERE campaign_id IS NOT NULL
    GROUP BY campaign_id
), o AS (
    SELECT campaign_id, count(*) AS opted_out
    FROM (SELECT DISTINCT campaign_id, phone FROM replies WHERE opt_out)
    GROUP BY campaign_id
), s AS (
    SELECT campaign_id,
           count(CASE WHEN state = 'finished' THEN 1 END) AS finished,
           count(CASE WHEN state = 'expired' THEN 1 END) AS expired
    FROM conversation_state
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
       coalesce(s.finished, 0)::BIGINT AS finished,
       coalesce(s.expired, 0)::BIGINT AS expired,
       coalesce(m.segments, 0)::BIGINT AS segments,
       c.launched_at, c.stopped_at, c.completed_at
FROM campaigns c
LEFT JOIN m ON m.campaign_id = c.id
LEFT JOIN r ON r.campaign_id = c.id
LEFT JOIN o ON o.campaign_id = c.id
LEFT JOIN s ON s.campaign_id = c.id;

DROP VIEW campaign_country_summary;
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
    WHERE campaign_id IS NOT NULL
    GROUP BY ALL
), o AS (
    SELECT campaign_id, country, count(*) AS opted_out
    FROM (SELECT DISTINCT campaign_id, country, phone FROM replies WHERE opt_out)
    GROUP BY ALL
), s AS (
    SELECT campaign_id, country,
           count(CASE WHEN state = 'finished' THEN 1 END) AS finished,
           count(CASE WHEN state = 'expired' THEN 1 END) AS expired
    FROM conversation_state
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
       coalesce(s.finished, 0)::BIGINT AS finished,
       coalesce(s.expired, 0)::BIGINT AS expired,
       coalesce(m.segments, 0)::BIGINT AS segments
FROM k
LEFT JOIN m USING (campaign_id, country)
LEFT JOIN r USING (campaign_id, country)
LEFT JOIN o USING (campaign_id, country)
LEFT JOIN s USING (campaign_id, country);

-- Per step: `fallbacks` are replies that matched no option (outcome 'fallback'); keyword
-- replies (opt-out, help...) are neither answers nor fallbacks. `expired`, `dropped` (the miss
-- limit) and `opted_out`: conversations that ended waiting at this step.
DROP VIEW step_funnel;
CREATE VIEW step_funnel AS
WITH s AS (
    SELECT campaign_id, step,
           count(CASE WHEN kind = 'say' THEN sent_at END) AS reached,
           count(CASE WHEN kind = 'otherwise' THEN sent_at END) AS fallbacks_sent
    FROM messages
    GROUP BY ALL
), a AS (
    SELECT campaign_id, step, matched_option, count(*) AS n,
           count(CASE WHEN outcome = 'fallback'
                        OR (outcome IS NULL AND matched_option IS NULL AND NOT opt_out)
                      THEN 1 END) AS fallbacks
    FROM replies
    WHERE campaign_id IS NOT NULL
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
), e AS (
    SELECT campaign_id, step,
           count(CASE WHEN state = 'expired' THEN 1 END) AS expired,
           count(CASE WHEN end_reason = 'miss_limit' THEN 1 END) AS dropped,
           count(CASE WHEN state = 'opted_out' THEN 1 END) AS opted_out
    FROM conversation_state
    GROUP BY ALL
)
SELECT campaign_id, step,
       coalesce(s.reached, 0)::BIGINT AS reached,
       coalesce(f.replies, 0)::BIGINT AS replies,
       coalesce(f.answered, 0)::BIGINT AS answered,
       coalesce(f.answers, MAP {})::MAP(VARCHAR, BIGINT) AS answers,
       coalesce(f.fallbacks, 0)::BIGINT AS fallbacks,
       coalesce(s.fallbacks_sent, 0)::BIGINT AS fallbacks_sent,
       round(coalesce(f.answered, 0) / nullif(s.reached, 0), 4) AS answer_rate,
       coalesce(e.expired, 0)::BIGINT AS expired,
       coalesce(e.dropped, 0)::BIGINT AS dropped,
       coalesce(e.opted_out, 0)::BIGINT AS opted_out
FROM s
FULL JOIN f USING (campaign_id, step)
LEFT JOIN e USING (campaign_id, step);

DROP VIEW step_answers;
CREATE VIEW step_answers AS
SELECT campaign_id, step, matched_option AS option, goto_step,
       count(*) AS replies
FROM replies
WHERE matched_option IS NOT NULL AND campaign_id IS NOT NULL
GROUP BY ALL;
