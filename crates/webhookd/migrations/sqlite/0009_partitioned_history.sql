-- History at scale (SPEC §8): each attempt names its event, as on PostgreSQL (where attempts are
-- partitioned by it, beside their event and its logs), so both backends share one statement.
ALTER TABLE attempts ADD COLUMN event_id BLOB;
UPDATE attempts SET event_id = (SELECT l.event_id FROM delivery_logs l WHERE l.id = attempts.log_id);
