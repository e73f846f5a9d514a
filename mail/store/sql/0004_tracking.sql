-- Tracking. A tracked email is one outgoing message whose opens, clicks and unsubscribes are
-- recorded; its id is what tracking tokens carry, and what tracking_links, tracking_events and
-- email_engagement call email_id (not emails.id: a sent message may never be synced back).
CREATE TABLE tracked_emails (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    owner_id uuid REFERENCES users (id) ON DELETE SET NULL,
    account_id uuid REFERENCES email_accounts (id) ON DELETE SET NULL,
    campaign_id uuid REFERENCES campaigns (id) ON DELETE CASCADE,
    variant_id uuid REFERENCES campaign_variants (id) ON DELETE SET NULL,
    recipient_id bigint,
    contact_id uuid REFERENCES contacts (id) ON DELETE SET NULL,
    recipient_email text NOT NULL,
    -- RFC 5322 Message-ID: replies in synced mail name it in In-Reply-To or References.
    message_id text,
    subject text,
    status text NOT NULL DEFAULT 'sent'
        CHECK (status IN ('queued', 'sent', 'delivered', 'bounced', 'failed')),
    sent_at timestamptz,
    delivered_at timestamptz,
    bounced_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tracked_emails_workspace ON tracked_emails (workspace_id, created_at DESC);
CREATE INDEX tracked_emails_campaign ON tracked_emails (campaign_id) WHERE campaign_id IS NOT NULL;
CREATE INDEX tracked_emails_message_id ON tracked_emails (workspace_id, message_id);

-- Replies: synced mail whose In-Reply-To names a tracked message.
CREATE INDEX emails_in_reply_to ON emails (workspace_id, in_reply_to) WHERE in_reply_to IS NOT NULL;

ALTER TABLE tracking_links ADD COLUMN clicks integer NOT NULL DEFAULT 0;
ALTER TABLE tracking_links ADD COLUMN human_clicks integer NOT NULL DEFAULT 0;

ALTER TABLE email_engagement ADD COLUMN unique_clicked_links integer NOT NULL DEFAULT 0;
ALTER TABLE email_engagement ADD COLUMN human_unique_clicked_links integer NOT NULL DEFAULT 0;
ALTER TABLE email_engagement ADD COLUMN first_human_open_at timestamptz;
ALTER TABLE email_engagement ADD COLUMN unsubscribes integer NOT NULL DEFAULT 0;

-- Per-campaign counters, kept by the event writer in the transaction that stores the events.
-- unique_* count tracked emails (recipients) with at least one such event.
CREATE TABLE campaign_engagement (
    campaign_id uuid PRIMARY KEY REFERENCES campaigns (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL,
    opens integer NOT NULL DEFAULT 0,
    human_opens integer NOT NULL DEFAULT 0,
    unique_opens integer NOT NULL DEFAULT 0,
    human_unique_opens integer NOT NULL DEFAULT 0,
    clicks integer NOT NULL DEFAULT 0,
    human_clicks integer NOT NULL DEFAULT 0,
    unique_clicks integer NOT NULL DEFAULT 0,
    human_unique_clicks integer NOT NULL DEFAULT 0,
    unsubscribes integer NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaign_engagement_hourly (
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    hour timestamptz NOT NULL,
    opens integer NOT NULL DEFAULT 0,
    human_opens integer NOT NULL DEFAULT 0,
    clicks integer NOT NULL DEFAULT 0,
    human_clicks integer NOT NULL DEFAULT 0,
    PRIMARY KEY (campaign_id, hour)
);
