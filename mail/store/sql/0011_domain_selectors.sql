-- A sending domain's DKIM selector: verifying the domain looks up <selector>._domainkey.<domain>
-- and compares it with the key mailray made for that selector. Rows from before have none and
-- are added again (`mailray domains add`) to get one.
ALTER TABLE sending_domains ADD COLUMN dkim_selector text
    CHECK (dkim_selector IS NULL OR (dkim_selector = lower(dkim_selector) AND dkim_selector <> ''));

-- A domain belongs to one workspace: its DKIM key is the domain's, so a second workspace could
-- otherwise be verified by the first one's DNS record.
CREATE UNIQUE INDEX sending_domains_domain_key ON sending_domains (domain);
