-- Monthly range partitions for emails and tracking_events.
--
-- mailray_ensure_month_partition(parent, month) creates <parent>_YYYY_MM for the month that
-- contains `month`. It never moves rows: when the default partition already holds rows of that
-- month (old mail imported before the window reached it), it leaves them there and returns
-- 'skipped: default holds rows', because moving them would fire the foreign keys' ON DELETE
-- actions. Returns 'created', 'exists' or that message.
CREATE FUNCTION mailray_ensure_month_partition(parent regclass, month date)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    month_start date := date_trunc('month', month)::date;
    month_end date := (date_trunc('month', month) + interval '1 month')::date;
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    partition_name text := parent_name || '_' || to_char(month_start, 'YYYY_MM');
    default_name text := parent_name || '_default';
    key_column text;
    default_has_rows boolean;
BEGIN
    IF to_regclass(quote_ident(partition_name)) IS NOT NULL THEN
        RETURN 'exists';
    END IF;
    SELECT a.attname INTO key_column
    FROM pg_partitioned_table p
    JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
    WHERE p.partrelid = parent;
    IF key_column IS NULL THEN
        RAISE EXCEPTION '% is not range-partitioned on a column', parent_name;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE %I >= %L AND %I < %L)',
                   default_name, key_column, month_start, key_column, month_end)
        INTO default_has_rows;
    IF default_has_rows THEN
        RETURN 'skipped: default holds rows';
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                   partition_name, parent, month_start, month_end);
    RETURN 'created';
END;
$$;
