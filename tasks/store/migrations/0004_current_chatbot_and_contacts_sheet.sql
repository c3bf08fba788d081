-- which chatbot version new campaigns use (the one added last), and the sheet a campaign was read from
-- Never edit a released migration: files in the field were built by it. Add a new one.

-- Re-adding an earlier definition makes it the one new campaigns use again (people revert an
-- edit by adding the old file back). The version numbers keep their meaning: one per content.
ALTER TABLE chatbots ADD COLUMN activated_at TIMESTAMPTZ;
UPDATE chatbots SET activated_at = created_at;

-- The .xlsx sheet a campaign's contacts were read from (NULL for .tsv): two sheets of one
-- workbook are two contact lists, though the file's bytes are the same.
ALTER TABLE campaigns ADD COLUMN contacts_sheet VARCHAR;
