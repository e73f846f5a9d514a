-- Campaigns: where a campaign may send from, why it paused, and the lookups recipient filters make.

-- A domain the workspace proved it owns (DNS), so campaigns may send as any address in it.
CREATE TABLE sending_domains (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    domain text NOT NULL CHECK (domain = lower(domain) AND domain <> ''),
    verified_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, domain)
);

-- Set when a guardrail (bounce or complaint rate) or a person pauses the campaign.
ALTER TABLE campaigns ADD COLUMN pause_reason text;

-- hasOpenedInLast / hasClickedInLast: a contact's tracked emails by address.
CREATE INDEX tracked_emails_recipient ON tracked_emails (workspace_id, lower(recipient_email));

-- An A/B test's rest cohort is held until the decision names its variant, then queued.
ALTER TABLE campaign_recipients DROP CONSTRAINT campaign_recipients_state_check;
ALTER TABLE campaign_recipients ADD CONSTRAINT campaign_recipients_state_check
    CHECK (state IN ('held', 'queued', 'sending', 'sent', 'failed', 'bounced', 'suppressed', 'cancelled'));

-- A row taken back from a sender that died while it was sending: it may have been delivered.
ALTER TABLE campaign_recipients ADD COLUMN uncertain boolean NOT NULL DEFAULT false;
CREATE INDEX campaign_recipients_claimed ON campaign_recipients (claimed_at) WHERE state = 'sending';
