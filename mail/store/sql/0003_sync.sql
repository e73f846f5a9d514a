-- Sync bookkeeping. A full sync (first, or after an expired history cursor) runs as a numbered
-- generation: every message the provider lists is stamped with it, so when the listing ends,
-- stored messages of the account with an older stamp are the ones the provider no longer has.
ALTER TABLE emails ADD COLUMN sync_generation integer NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN generation integer NOT NULL DEFAULT 0;
ALTER TABLE sync_state ADD COLUMN sync_enabled boolean NOT NULL DEFAULT true;
ALTER TABLE sync_state ADD COLUMN last_reconciled_at timestamptz;
ALTER TABLE sync_state ADD COLUMN last_reconcile_report jsonb;
-- Recent errors for diagnostics, newest first, bounded by the writer.
ALTER TABLE sync_state ADD COLUMN recent_errors jsonb NOT NULL DEFAULT '[]';

-- Where a message shows, from its Gmail labels: one rule, used by every write path.
CREATE FUNCTION mailray_folder(labels text[]) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN 'TRASH' = ANY(labels) THEN 'trash'
        WHEN 'SPAM' = ANY(labels) THEN 'spam'
        WHEN 'DRAFT' = ANY(labels) THEN 'drafts'
        WHEN 'INBOX' = ANY(labels) THEN 'inbox'
        WHEN 'SENT' = ANY(labels) THEN 'sent'
        ELSE 'archive'
    END
$$;
