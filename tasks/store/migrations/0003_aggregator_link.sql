-- the aggregator link: who sent each message and what the aggregator said, replies without a campaign, opt-outs
-- Never edit a released migration: files in the field were built by it. Add a new one.

-- `sender` is the From number (or messaging service SID) a message went from: a reply is
-- attributed to the campaign that last wrote to that phone from the number it was sent to.
-- `sending_at` marks the moment a request left for the aggregator: a message still `sending`
-- after a crash may or may not be there, and is reconciled with the aggregator, never resent blind.
ALTER TABLE messages ADD COLUMN sender VARCHAR;
ALTER TABLE messages ADD COLUMN error_code INTEGER;
ALTER TABLE messages ADD COLUMN sending_at TIMESTAMPTZ;

-- A reply from a number no campaign wrote to is kept (unsolicited): no campaign, step or country.
ALTER TABLE replies ALTER COLUMN campaign_id DROP NOT NULL;
ALTER TABLE replies ALTER COLUMN step DROP NOT NULL;
ALTER TABLE replies ALTER COLUMN country DROP NOT NULL;
ALTER TABLE replies ADD COLUMN sender VARCHAR;
-- What the reply was, once read: 'unsolicited' (nobody wrote to that number), later the engine's
-- verdicts (an option, a fallback, an opt-out...). NULL: recorded, not yet read.
ALTER TABLE replies ADD COLUMN outcome VARCHAR;

-- Numbers that asked not to be texted: by a reply (STOP, BAJA...) or at the aggregator (Twilio
-- 21610). Every send consults it; START (ALTA) sets opted_in_at and the number may be texted again.
CREATE TABLE opt_outs (
    phone         VARCHAR NOT NULL,
    opted_out_at  TIMESTAMPTZ NOT NULL,
    campaign_id   VARCHAR,
    keyword       VARCHAR,
    source        VARCHAR NOT NULL,
    opted_in_at   TIMESTAMPTZ
);
