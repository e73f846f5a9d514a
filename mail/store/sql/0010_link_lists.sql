-- Each tracked email's rewritten links in one row, written when the email is composed: their
-- positions, original URLs and texts as parallel arrays. The click redirect reads its target
-- here. tracking_links keeps a row (with its counters) only for a link that was clicked, made by
-- the EventWriter on the first click: a campaign of 8 links no longer writes 8 rows and 24 index
-- entries per recipient before sending, most of them for links nobody clicks.
CREATE TABLE tracked_email_links (
    email_id bigint PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    positions integer[] NOT NULL,
    urls text[] NOT NULL,
    texts text[] NOT NULL,
    CHECK (cardinality(urls) = cardinality(positions) AND cardinality(texts) = cardinality(positions))
);

INSERT INTO tracked_email_links (email_id, workspace_id, positions, urls, texts)
SELECT email_id, workspace_id, array_agg(position ORDER BY position), array_agg(url ORDER BY position),
       array_agg(link_text ORDER BY position)
FROM tracking_links WHERE email_id IS NOT NULL
GROUP BY email_id, workspace_id;
