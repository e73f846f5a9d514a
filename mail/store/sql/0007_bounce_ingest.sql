-- Bounce ingestion (mail.bounces.ingest): a report read twice (a maildir file read again after a
-- crash, a webhook delivered twice) is acted on once. The key is the report's (a hash of the
-- bounce message, or the provider's event id) with the recipient it names.
ALTER TABLE bounces ADD COLUMN report_key text;
CREATE UNIQUE INDEX bounces_report_once ON bounces (report_key, lower(recipient_email)) WHERE report_key IS NOT NULL;
-- Linking a bounce to the message it returns: the outbox row by Message-ID, else by address.
CREATE INDEX campaign_recipients_message_id ON campaign_recipients (message_id) WHERE message_id IS NOT NULL;
CREATE INDEX campaign_recipients_email_sent ON campaign_recipients (lower(email), sent_at DESC) WHERE state = 'sent';
