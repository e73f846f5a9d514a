-- mailray's schema for the whole mission: tenancy, accounts, mail, contacts, tracking, campaigns,
-- deliverability and audit. Later migrations add columns, not redesigns.
--
-- Conventions: uuid ids for tenant-visible records; bigint ids from sequences for high-volume rows
-- (emails, tracking events, outbox) so batch jobs can read them in id ranges. Email addresses
-- are stored as written and matched through lower(email). Columns ending in _enc hold
-- AES-256-GCM envelope ciphertext (mail.crypto), bound to their table, column and row.

CREATE TABLE workspaces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    settings jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email text NOT NULL CHECK (position('@' IN email) > 1),
    display_name text,
    role text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member')),
    is_active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_workspace_email ON users (workspace_id, lower(email));

-- API keys are shown once; only a SHA-256 of the secret part is kept. `lookup_id` is the public
-- part of the key that finds the row without scanning.
CREATE TABLE api_keys (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text NOT NULL DEFAULT '',
    lookup_id text NOT NULL UNIQUE,
    secret_sha256 bytea NOT NULL CHECK (length(secret_sha256) = 32),
    scopes text[] NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    expires_at timestamptz,
    revoked_at timestamptz
);
CREATE INDEX api_keys_user ON api_keys (workspace_id, user_id);

CREATE TABLE email_accounts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id),
    email text NOT NULL,
    display_name text,
    provider text NOT NULL CHECK (provider IN ('gmail', 'outlook', 'smtp')),
    access_token_enc bytea,
    refresh_token_enc bytea,
    token_expires_at timestamptz,
    granted_scopes text[] NOT NULL DEFAULT '{}',
    gmail_history_id numeric(20, 0),
    gmail_sync_token text,
    is_primary boolean NOT NULL DEFAULT false,
    sync_enabled boolean NOT NULL DEFAULT true,
    signature text,
    last_sync_at timestamptz,
    sync_status text NOT NULL DEFAULT 'pending'
        CHECK (sync_status IN ('pending', 'syncing', 'synced', 'error', 'reauth_required', 'disabled')),
    error_message text,
    watch_expires_at timestamptz,
    smtp_settings jsonb NOT NULL DEFAULT '{}',
    daily_send_cap integer NOT NULL DEFAULT 2000 CHECK (daily_send_cap >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX email_accounts_workspace_email ON email_accounts (workspace_id, lower(email));
CREATE INDEX email_accounts_owner ON email_accounts (workspace_id, user_id);
CREATE INDEX email_accounts_email ON email_accounts (lower(email));

CREATE TABLE contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email text NOT NULL,
    first_name text,
    last_name text,
    display_name text,
    company text,
    phone text,
    time_zone text,
    attributes jsonb NOT NULL DEFAULT '{}',
    status text NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'unsubscribed', 'bounced', 'complained', 'invalid')),
    source text NOT NULL DEFAULT 'api' CHECK (source IN ('sync', 'import', 'api')),
    first_seen_at timestamptz,
    last_contacted_at timestamptz,
    last_opened_at timestamptz,
    last_clicked_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_workspace_email ON contacts (workspace_id, lower(email));
CREATE INDEX contacts_created ON contacts (workspace_id, created_at);
CREATE INDEX contacts_attributes ON contacts USING gin (attributes jsonb_path_ops);

CREATE TABLE contact_tags (
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    tag text NOT NULL CHECK (length(tag) BETWEEN 1 AND 100),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, tag)
);
CREATE INDEX contact_tags_tag ON contact_tags (workspace_id, tag);

CREATE TABLE labels (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES email_accounts (id) ON DELETE CASCADE,
    provider_label_id text NOT NULL,
    name text NOT NULL,
    label_type text NOT NULL DEFAULT 'user' CHECK (label_type IN ('system', 'user')),
    color jsonb,
    messages_total integer,
    messages_unread integer,
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, provider_label_id)
);

CREATE TABLE threads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    account_id uuid NOT NULL REFERENCES email_accounts (id) ON DELETE CASCADE,
    provider_thread_id text NOT NULL,
    subject text NOT NULL DEFAULT '',
    snippet text NOT NULL DEFAULT '',
    participants text[] NOT NULL DEFAULT '{}',
    labels text[] NOT NULL DEFAULT '{}',
    message_count integer NOT NULL DEFAULT 0,
    unread_count integer NOT NULL DEFAULT 0,
    first_message_at timestamptz,
    last_message_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, provider_thread_id)
);
CREATE INDEX threads_recent ON threads (workspace_id, last_message_at DESC);

-- Emails are partitioned by month of `email_date` (the provider's internal date: when the
-- message reached the mailbox, or was sent). Months inside the maintained window get their own
-- partition; older mail lands in emails_default. Unique keys include the partition key, as
-- Postgres requires; a provider message always has the same internal date.
CREATE SEQUENCE emails_id_seq AS bigint;
CREATE TABLE emails (
    id bigint NOT NULL DEFAULT nextval('emails_id_seq'),
    workspace_id uuid NOT NULL,
    account_id uuid NOT NULL,
    provider_message_id text,
    provider_thread_id text,
    history_id numeric(20, 0),
    message_id text,
    thread_id uuid,
    in_reply_to text,
    reference_ids text[] NOT NULL DEFAULT '{}',
    subject text NOT NULL DEFAULT '',
    from_email text,
    from_name text,
    to_emails text[] NOT NULL DEFAULT '{}',
    cc_emails text[] NOT NULL DEFAULT '{}',
    bcc_emails text[] NOT NULL DEFAULT '{}',
    reply_to text,
    body_html_enc bytea,
    body_text_enc bytea,
    snippet text NOT NULL DEFAULT '',
    folder text NOT NULL DEFAULT 'inbox'
        CHECK (folder IN ('inbox', 'sent', 'drafts', 'spam', 'trash', 'archive', 'other')),
    labels text[] NOT NULL DEFAULT '{}',
    is_read boolean NOT NULL DEFAULT false,
    is_starred boolean NOT NULL DEFAULT false,
    is_important boolean NOT NULL DEFAULT false,
    is_draft boolean NOT NULL DEFAULT false,
    is_sent boolean NOT NULL DEFAULT false,
    has_attachments boolean NOT NULL DEFAULT false,
    tracking_id text,
    track_opens boolean NOT NULL DEFAULT false,
    track_clicks boolean NOT NULL DEFAULT false,
    campaign_id uuid,
    campaign_recipient_id bigint,
    contact_id uuid,
    deal_id uuid,
    ai_analysis jsonb,
    sentiment text CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    sentiment_score real CHECK (sentiment_score BETWEEN -1 AND 1),
    category text,
    priority text CHECK (priority IN ('high', 'medium', 'low')),
    analyzed_at timestamptz,
    sent_at timestamptz,
    received_at timestamptz,
    email_date timestamptz NOT NULL,
    raw_size integer,
    raw_enc bytea,
    raw_ref text,
    parse_errors text[] NOT NULL DEFAULT '{}',
    search_vector tsvector,
    deleted_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, email_date)
) PARTITION BY RANGE (email_date);
CREATE TABLE emails_default PARTITION OF emails DEFAULT;

CREATE UNIQUE INDEX emails_provider_message ON emails (account_id, provider_message_id, email_date);
-- The design document's indexes.
CREATE INDEX idx_emails_thread ON emails (workspace_id, thread_id);
CREATE INDEX idx_emails_received ON emails (workspace_id, received_at DESC);
CREATE INDEX idx_emails_contact ON emails (workspace_id, contact_id);
CREATE INDEX idx_emails_folder ON emails (workspace_id, folder);
-- Full-text search. Bodies are stored encrypted, so the tsvector is computed from the plaintext
-- at write time (mail.store.bulk) instead of from the columns.
CREATE INDEX idx_emails_search ON emails USING gin (search_vector);
-- Reply matching (In-Reply-To / References -> tracked message), tracking lookups, mailbox order.
CREATE INDEX emails_message_id ON emails (workspace_id, message_id);
CREATE INDEX emails_tracking ON emails (tracking_id) WHERE tracking_id IS NOT NULL;
CREATE INDEX emails_account_date ON emails (account_id, email_date DESC);
CREATE INDEX emails_id ON emails (id);

CREATE TABLE attachments (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email_id bigint NOT NULL,
    email_date timestamptz NOT NULL,
    provider_attachment_id text,
    part_id text,
    filename text NOT NULL DEFAULT '',
    content_type text NOT NULL DEFAULT 'application/octet-stream',
    size_bytes bigint NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    sha256 bytea CHECK (sha256 IS NULL OR length(sha256) = 32),
    content_id text,
    is_inline boolean NOT NULL DEFAULT false,
    content_enc bytea,
    storage_ref text,
    scan_status text NOT NULL DEFAULT 'pending'
        CHECK (scan_status IN ('pending', 'clean', 'infected', 'skipped', 'error')),
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (email_id, email_date) REFERENCES emails (id, email_date) ON DELETE CASCADE
);
CREATE INDEX attachments_email ON attachments (email_id);
CREATE INDEX attachments_sha256 ON attachments (workspace_id, sha256);

-- The sync state machine of one account. `history_cursor` only moves forward after the changes
-- it covers are stored.
CREATE TABLE sync_state (
    account_id uuid PRIMARY KEY REFERENCES email_accounts (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    phase text NOT NULL DEFAULT 'pending'
        CHECK (phase IN ('pending', 'full_sync', 'incremental', 'paused', 'error', 'reauth_required')),
    history_cursor numeric(20, 0),
    full_sync_page_token text,
    full_sync_history_id numeric(20, 0),
    full_sync_started_at timestamptz,
    full_sync_completed_at timestamptz,
    messages_listed bigint NOT NULL DEFAULT 0,
    messages_stored bigint NOT NULL DEFAULT 0,
    messages_failed bigint NOT NULL DEFAULT 0,
    last_incremental_at timestamptz,
    last_push_at timestamptz,
    watch_expires_at timestamptz,
    last_error text,
    last_error_at timestamptz,
    consecutive_failures integer NOT NULL DEFAULT 0,
    lease_owner text,
    lease_expires_at timestamptz,
    checkpoint jsonb NOT NULL DEFAULT '{}',
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE campaigns (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    created_by uuid REFERENCES users (id),
    account_id uuid REFERENCES email_accounts (id),
    name text NOT NULL,
    subject text NOT NULL DEFAULT '',
    preview_text text,
    from_name text NOT NULL DEFAULT '',
    from_email text NOT NULL DEFAULT '',
    reply_to text,
    body_html text NOT NULL DEFAULT '',
    body_text text NOT NULL DEFAULT '',
    recipient_filter jsonb NOT NULL DEFAULT '{}',
    exclude_filter jsonb,
    recipient_count integer NOT NULL DEFAULT 0,
    track_opens boolean NOT NULL DEFAULT true,
    track_clicks boolean NOT NULL DEFAULT true,
    enable_unsubscribe boolean NOT NULL DEFAULT true,
    send_at_local_time boolean NOT NULL DEFAULT false,
    scheduled_at timestamptz,
    sending_started_at timestamptz,
    sending_completed_at timestamptz,
    is_ab_test boolean NOT NULL DEFAULT false,
    ab_test jsonb NOT NULL DEFAULT '{}',
    winning_variant_id uuid,
    ab_decision jsonb,
    status text NOT NULL DEFAULT 'draft'
        CHECK (status IN ('draft', 'scheduled', 'sending', 'paused', 'sent', 'cancelled')),
    sent_count integer NOT NULL DEFAULT 0,
    analytics jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX campaigns_workspace ON campaigns (workspace_id, status);
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE status = 'scheduled';

CREATE TABLE campaign_variants (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name text NOT NULL,
    percentage numeric(5, 2) NOT NULL CHECK (percentage > 0 AND percentage <= 100),
    subject text,
    from_name text,
    preview_text text,
    body_html text,
    body_text text,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'testing', 'winner', 'loser', 'sending', 'sent')),
    sent_count integer NOT NULL DEFAULT 0,
    analytics jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (campaign_id, name)
);

-- The outbox: one row per campaign and recipient, claimed by senders with FOR UPDATE SKIP LOCKED.
-- The unique key is what makes "nobody gets a message twice" a database fact.
CREATE TABLE campaign_recipients (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id uuid NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    variant_id uuid REFERENCES campaign_variants (id),
    contact_id uuid REFERENCES contacts (id) ON DELETE SET NULL,
    email text NOT NULL,
    cohort text NOT NULL DEFAULT 'all' CHECK (cohort IN ('all', 'test', 'rest')),
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'sending', 'sent', 'failed', 'bounced', 'suppressed', 'cancelled')),
    send_after timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    claimed_by text,
    claimed_at timestamptz,
    message_id text,
    provider_message_id text,
    email_id bigint,
    last_error text,
    sent_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX campaign_recipients_once ON campaign_recipients (campaign_id, lower(email));
CREATE INDEX campaign_recipients_due ON campaign_recipients (send_after) WHERE state = 'queued';
CREATE INDEX campaign_recipients_state ON campaign_recipients (campaign_id, state);

CREATE TABLE tracking_links (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email_id bigint,
    campaign_id uuid,
    recipient_id bigint,
    position integer NOT NULL CHECK (position >= 0),
    url text NOT NULL,
    link_text text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX tracking_links_position ON tracking_links (email_id, position);
CREATE INDEX tracking_links_campaign ON tracking_links (campaign_id);

-- Tracking events are partitioned by month of occurred_at. event_id makes the writer idempotent.
CREATE SEQUENCE tracking_events_id_seq AS bigint;
CREATE TABLE tracking_events (
    id bigint NOT NULL DEFAULT nextval('tracking_events_id_seq'),
    event_id uuid NOT NULL,
    workspace_id uuid NOT NULL,
    email_id bigint,
    campaign_id uuid,
    variant_id uuid,
    recipient_id bigint,
    contact_id uuid,
    link_id bigint,
    link_url text,
    link_position integer,
    event_type text NOT NULL
        CHECK (event_type IN ('delivered', 'open', 'click', 'unsubscribe', 'bounce', 'complaint', 'reply')),
    occurred_at timestamptz NOT NULL,
    ip inet,
    user_agent text,
    device text,
    client text,
    os text,
    browser text,
    is_machine boolean NOT NULL DEFAULT false,
    machine_reason text,
    country text,
    city text,
    metadata jsonb NOT NULL DEFAULT '{}',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, occurred_at)
) PARTITION BY RANGE (occurred_at);
CREATE TABLE tracking_events_default PARTITION OF tracking_events DEFAULT;
CREATE UNIQUE INDEX tracking_events_event ON tracking_events (event_id, occurred_at);
CREATE INDEX tracking_events_email ON tracking_events (email_id, event_type);
CREATE INDEX tracking_events_campaign ON tracking_events (campaign_id, event_type, occurred_at);
CREATE INDEX tracking_events_workspace ON tracking_events (workspace_id, occurred_at DESC);

-- Aggregates the event writer keeps current, so analytics need not scan events.
CREATE TABLE email_engagement (
    email_id bigint PRIMARY KEY,
    workspace_id uuid NOT NULL,
    campaign_id uuid,
    opens integer NOT NULL DEFAULT 0,
    human_opens integer NOT NULL DEFAULT 0,
    clicks integer NOT NULL DEFAULT 0,
    human_clicks integer NOT NULL DEFAULT 0,
    first_open_at timestamptz,
    last_open_at timestamptz,
    first_click_at timestamptz,
    last_click_at timestamptz,
    replies integer NOT NULL DEFAULT 0,
    first_reply_at timestamptz,
    unsubscribed_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX email_engagement_campaign ON email_engagement (campaign_id);

CREATE TABLE suppressions (
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email text NOT NULL,
    reason text NOT NULL CHECK (reason IN ('unsubscribe', 'hard_bounce', 'complaint', 'manual', 'invalid')),
    source text,
    campaign_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, email),
    CHECK (email = lower(email))
);

CREATE TABLE bounces (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    email_id bigint,
    campaign_id uuid,
    recipient_id bigint,
    recipient_email text NOT NULL,
    bounce_type text NOT NULL CHECK (bounce_type IN ('hard', 'soft', 'blocked')),
    bounce_subtype text,
    status_code text,
    reply_code text,
    diagnostic_code text,
    action text CHECK (action IN ('failed', 'delayed', 'delivered')),
    reporting_mta text,
    bounced_at timestamptz NOT NULL DEFAULT now(),
    source_message_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bounces_recipient ON bounces (workspace_id, lower(recipient_email));
CREATE INDEX bounces_campaign ON bounces (campaign_id);

CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid,
    user_id uuid,
    api_key_id uuid,
    action text NOT NULL,
    resource_type text NOT NULL,
    resource_id text,
    ip inet,
    user_agent text,
    metadata jsonb NOT NULL DEFAULT '{}',
    occurred_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, occurred_at DESC);
CREATE INDEX audit_log_resource ON audit_log (resource_type, resource_id);
