-- Scheduling (SPEC §4): per-webhook limits, call ordering and the circuit breaker; delivery logs
-- grouped into lanes; the latest attempt of a log kept in the log row itself.

ALTER TABLE webhooks ADD COLUMN rate_limit INTEGER;                     -- per second over all nodes; NULL: none
ALTER TABLE webhooks ADD COLUMN max_concurrency INTEGER;                -- in flight over all nodes; NULL: adaptive
ALTER TABLE webhooks ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none'; -- none | call
ALTER TABLE webhooks ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed';  -- closed | open | half_open
ALTER TABLE webhooks ADD COLUMN circuit_retry_at INTEGER;               -- open: next probe; half_open: probe lease
ALTER TABLE webhooks ADD COLUMN circuit_failures INTEGER NOT NULL DEFAULT 0;    -- consecutive unavailable answers
ALTER TABLE webhooks ADD COLUMN circuit_level INTEGER NOT NULL DEFAULT 0;       -- failed probes: the cooldown doubles with each
ALTER TABLE webhooks ADD COLUMN rate_tat INTEGER;                       -- rate limiter state (unix µs), shared by nodes

-- A lane is a webhook, or for a per-call webhook_url its organization and host. (SQLite cannot add
-- a NOT NULL column to a filled table; webhookd always writes it.)
ALTER TABLE delivery_logs ADD COLUMN lane_id BLOB;
-- The call id of a log that must wait for the earlier pending logs of its call (ordering: call).
ALTER TABLE delivery_logs ADD COLUMN order_key TEXT;
-- The latest attempt; `attempts` holds the earlier ones, so a first attempt that succeeds is a
-- single row write and a response body is stored once.
ALTER TABLE delivery_logs ADD COLUMN last_attempt_id BLOB;
ALTER TABLE delivery_logs ADD COLUMN last_attempt_at INTEGER;
ALTER TABLE delivery_logs ADD COLUMN last_send_type TEXT;

UPDATE delivery_logs SET lane_id = COALESCE(webhook_id, org_id);
UPDATE delivery_logs SET
    last_attempt_id = (SELECT a.id FROM attempts a
                       WHERE a.log_id = delivery_logs.id AND a.number = delivery_logs.attempt_count),
    last_attempt_at = (SELECT a.sent_at FROM attempts a
                       WHERE a.log_id = delivery_logs.id AND a.number = delivery_logs.attempt_count),
    last_send_type = (SELECT a.send_type FROM attempts a
                      WHERE a.log_id = delivery_logs.id AND a.number = delivery_logs.attempt_count)
WHERE attempt_count > 0;
DELETE FROM attempts
WHERE number = (SELECT l.attempt_count FROM delivery_logs l WHERE l.id = attempts.log_id);
-- SQLite has one process per file: its claims live in that process, never in the database.
UPDATE delivery_logs SET claimed_at = NULL WHERE claimed_at IS NOT NULL;

DROP INDEX delivery_logs_due;
CREATE INDEX delivery_logs_lane_due ON delivery_logs (lane_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_logs_ordered ON delivery_logs (lane_id, order_key, id)
    WHERE status = 'pending' AND order_key IS NOT NULL;
