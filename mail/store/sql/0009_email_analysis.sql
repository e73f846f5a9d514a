-- Email AI (mail.ai). The classifier's labels are plain columns: the priority inbox filters and
-- sorts on them. What the analysis says about the content (entities, summary, key points,
-- action items, questions, suggested replies) is content, so it is stored encrypted, as the
-- bodies are, in ai_analysis_enc; the plaintext ai_analysis column is never written.
ALTER TABLE emails
    ADD COLUMN ai_analysis_enc bytea,
    ADD COLUMN intents text[] NOT NULL DEFAULT '{}',
    ADD COLUMN primary_intent text,
    ADD COLUMN analysis_model text,
    -- An email whose body could not be read is marked analyzed with the reason, not retried forever.
    ADD COLUMN analysis_error text;

-- What the AnalysisWorker has still to do, and the priority inbox.
CREATE INDEX emails_unanalyzed ON emails (id) WHERE analyzed_at IS NULL AND deleted_at IS NULL;
CREATE INDEX emails_priority_inbox ON emails (workspace_id, received_at DESC)
    WHERE folder = 'inbox' AND deleted_at IS NULL;

-- Batch reprocessing (cluster/jobs/reprocess.py): a job covers an id interval cut into ranges;
-- a range is marked done in the transaction that stores its results, so a job started again
-- after a failure does only the ranges that are not.
CREATE TABLE reprocess_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    workspace_id uuid REFERENCES workspaces (id) ON DELETE CASCADE,  -- NULL: every workspace
    only_unanalyzed boolean NOT NULL DEFAULT false,
    min_id bigint NOT NULL,
    max_id bigint NOT NULL,
    range_size integer NOT NULL CHECK (range_size > 0),
    model text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

CREATE TABLE reprocess_ranges (
    job_id uuid NOT NULL REFERENCES reprocess_jobs (id) ON DELETE CASCADE,
    start_id bigint NOT NULL,
    end_id bigint NOT NULL,  -- exclusive
    emails integer,
    done_at timestamptz,
    PRIMARY KEY (job_id, start_id)
);
