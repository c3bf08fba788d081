-- quiet hours: an opening message waits until its recipient's local morning
-- Never edit a released migration: files in the field were built by it. Add a new one.

-- Set when the message is planned, from the quiet hours in each of the number's time zones
-- (tasks/quiet_hours.py): the sender claims it only from then on. NULL: send at once (answers
-- to a contact's own reply never wait).
ALTER TABLE messages ADD COLUMN not_before TIMESTAMPTZ;
