-- History at scale (SPEC §8): events, delivery logs and attempts partitioned by creation time,
-- one partition per UTC day, so retention drops whole days instead of deleting rows and its cost
-- does not grow with the history.
--
-- Ids are UUIDv7: their first 48 bits are the creation time in unix milliseconds, so a range of
-- ids is a range of time. Events are partitioned by `id`; logs and attempts by their event's id
-- (`event_id`, new on attempts). An event, its logs (a retry or a resend made later included) and
-- their attempts therefore share one day's partition and go together, as retention has always
-- taken them. Day D is the id range [D 00:00 UTC, D+1 00:00 UTC) written as UUIDs
-- (`webhookd_day_uuid`), its tables `events_pYYYYMMDD`, `delivery_logs_pYYYYMMDD`,
-- `attempts_pYYYYMMDD`, made ahead by the maintenance task (`webhookd_make_partitions`).
--
-- A row outside every day (a database left without a worker for days) lands in the `_default`
-- partition of its table, which retention empties row by row; nothing is ever refused for want of
-- a partition.
--
-- Keys: a partitioned table's unique key includes its partition key, so logs and attempts are
-- keyed (id, event_id); ids are UUIDv7 made by webhookd. The foreign keys among the three tables
-- go (a partition that a foreign key refers to cannot be dropped): webhookd deletes them together
-- (`store/retention.rs`, webhook and agent deletion). Their keys to organizations, agents and
-- webhooks stay.
--
-- Upgrade: the rows are copied into the partitioned tables inside this migration's transaction
-- (docs/BENCHMARKS.md gives the time it takes per million logs).

CREATE FUNCTION webhookd_day_uuid(ms BIGINT) RETURNS UUID
    IMMUTABLE LANGUAGE sql
    AS $$ SELECT (lpad(to_hex(ms), 12, '0') || '00000000000000000000')::uuid $$;

-- Makes the day partitions of the three tables covering [from_ms, until_ms) that do not exist
-- yet; answers how many tables it made. A day whose rows already sit in a default partition is
-- left to it (its rows are removed row by row at retention). Two nodes making the same day at
-- once is harmless: the second one finds it made.
CREATE FUNCTION webhookd_make_partitions(from_ms BIGINT, until_ms BIGINT) RETURNS INTEGER
    LANGUAGE plpgsql AS $$
DECLARE
    day BIGINT := from_ms - (from_ms % 86400000);
    made INTEGER := 0;
    parent TEXT;
    partition TEXT;
BEGIN
    WHILE day < until_ms LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'delivery_logs', 'attempts'] LOOP
            partition := parent || '_p'
                || to_char(to_timestamp(day / 1000) AT TIME ZONE 'UTC', 'YYYYMMDD');
            IF to_regclass(partition) IS NULL THEN
                BEGIN
                    EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                        partition, parent, webhookd_day_uuid(day),
                        webhookd_day_uuid(day + 86400000));
                    made := made + 1;
                EXCEPTION
                    WHEN check_violation THEN
                        RAISE NOTICE 'partition % not made: rows of that day are in %_default',
                            partition, parent;
                    WHEN duplicate_table OR unique_violation THEN
                        NULL;
                END;
            END IF;
        END LOOP;
        day := day + 86400000;
    END LOOP;
    RETURN made;
END $$;

ALTER TABLE events RENAME TO events_unpartitioned;
ALTER TABLE delivery_logs RENAME TO delivery_logs_unpartitioned;
ALTER TABLE attempts RENAME TO attempts_unpartitioned;

CREATE TABLE events (LIKE events_unpartitioned INCLUDING DEFAULTS) PARTITION BY RANGE (id);
CREATE TABLE delivery_logs (LIKE delivery_logs_unpartitioned INCLUDING DEFAULTS)
    PARTITION BY RANGE (event_id);
CREATE TABLE attempts (LIKE attempts_unpartitioned INCLUDING DEFAULTS, event_id UUID NOT NULL)
    PARTITION BY RANGE (event_id);
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TABLE delivery_logs_default PARTITION OF delivery_logs DEFAULT;
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;

-- The days of the existing history, today and tomorrow (the maintenance task makes the rest
-- ahead as soon as a worker starts). At most the last 35 days (the default
-- retention and some): each day is three tables and their indexes, all locked by this one
-- transaction. Older rows go to the default partitions, which retention empties row by row.
SELECT webhookd_make_partitions(
    GREATEST(
        COALESCE((SELECT min(created_at) FROM events_unpartitioned), now_ms),
        now_ms - 35 * 86400000::BIGINT),
    now_ms + 2 * 86400000::BIGINT)
FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT AS now_ms) AS now;

-- Copied before the keys and indexes exist: building them once is faster than keeping them up to
-- date row by row.
INSERT INTO events SELECT * FROM events_unpartitioned;
INSERT INTO delivery_logs SELECT * FROM delivery_logs_unpartitioned;
INSERT INTO attempts
    SELECT a.*, l.event_id FROM attempts_unpartitioned a
    JOIN delivery_logs_unpartitioned l ON l.id = a.log_id;
DROP TABLE attempts_unpartitioned, delivery_logs_unpartitioned, events_unpartitioned;

ALTER TABLE events ADD PRIMARY KEY (id),
    ADD FOREIGN KEY (org_id) REFERENCES organizations (id) ON DELETE CASCADE,
    ADD FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE CASCADE;
CREATE INDEX events_org_call ON events (org_id, call_id, event_type) WHERE call_id IS NOT NULL;
CREATE INDEX events_created ON events (created_at);
CREATE INDEX events_payload_present ON events (created_at) WHERE payload_state = 'present';

ALTER TABLE delivery_logs ADD PRIMARY KEY (id, event_id),
    ADD FOREIGN KEY (org_id) REFERENCES organizations (id) ON DELETE CASCADE,
    ADD FOREIGN KEY (agent_id) REFERENCES agents (id) ON DELETE CASCADE,
    ADD FOREIGN KEY (webhook_id) REFERENCES webhooks (id) ON DELETE CASCADE;
CREATE INDEX delivery_logs_webhook ON delivery_logs (webhook_id, id);
CREATE INDEX delivery_logs_org_call ON delivery_logs (org_id, call_id, event_type)
    WHERE call_id IS NOT NULL;
CREATE INDEX delivery_logs_event ON delivery_logs (event_id);
CREATE INDEX delivery_logs_lane_due ON delivery_logs (lane_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX delivery_logs_ordered ON delivery_logs (lane_id, order_key, id)
    WHERE status = 'pending' AND order_key IS NOT NULL;
CREATE INDEX delivery_logs_claimed ON delivery_logs (lane_id, next_attempt_at)
    WHERE claimed_at IS NOT NULL;
CREATE INDEX delivery_logs_unhooked ON delivery_logs (lane_id, id) WHERE webhook_id IS NULL;
CREATE INDEX delivery_logs_webhook_status ON delivery_logs (webhook_id, status, id);
CREATE INDEX delivery_logs_webhook_event ON delivery_logs (webhook_id, event_type, id);
CREATE INDEX delivery_logs_webhook_status_event
    ON delivery_logs (webhook_id, status, event_type, id);
CREATE INDEX delivery_logs_webhook_call ON delivery_logs (webhook_id, call_id, id);

ALTER TABLE attempts ADD PRIMARY KEY (id, event_id);
CREATE INDEX attempts_log ON attempts (log_id, number);
