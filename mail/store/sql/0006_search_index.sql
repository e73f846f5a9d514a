-- Full-text search moves out of `emails` into a table of its own, filled after the mail is
-- stored. The tsvector of a body (stemmed English over up to 20,000 characters) costs Postgres
-- about twice what storing the message does, so a full sync stores first and indexes next
-- (mail.sync.search_index): storing a mailbox no longer waits for its index, and mail synced
-- incrementally is indexed in the same round. Every stored email has one row here; a NULL
-- vector means "not indexed yet", and the partial index finds those.
CREATE TABLE email_search (
    email_id bigint NOT NULL,
    email_date timestamptz NOT NULL,
    workspace_id uuid NOT NULL,
    account_id uuid NOT NULL,
    search_vector tsvector,
    PRIMARY KEY (email_id, email_date),
    FOREIGN KEY (email_id, email_date) REFERENCES emails (id, email_date) ON DELETE CASCADE
);
CREATE INDEX email_search_vector ON email_search USING gin (search_vector);
CREATE INDEX email_search_pending ON email_search (account_id, email_id) WHERE search_vector IS NULL;

INSERT INTO email_search (email_id, email_date, workspace_id, account_id, search_vector)
SELECT id, email_date, workspace_id, account_id, search_vector FROM emails;
ALTER TABLE emails DROP COLUMN search_vector;
