-- One tracked email per outbox row (mail.sending.campaign_compose): composing a row again finds
-- it, so the message carries the same tokens every time it is composed.
CREATE UNIQUE INDEX tracked_emails_outbox_row ON tracked_emails (recipient_id) WHERE recipient_id IS NOT NULL;
