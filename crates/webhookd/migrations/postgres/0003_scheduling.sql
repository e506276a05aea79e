-- Scheduling (SPEC §4): per-webhook limits, call ordering and the circuit breaker; delivery logs
-- grouped into lanes; the latest attempt of a log kept in the log row itself.

ALTER TABLE webhooks
    ADD COLUMN rate_limit BIGINT,                                -- per second over all nodes; NULL: none
    ADD COLUMN max_concurrency BIGINT,                           -- in flight over all nodes; NULL: adaptive
    ADD COLUMN ordering TEXT NOT NULL DEFAULT 'none',            -- none | call
    ADD COLUMN circuit_state TEXT NOT NULL DEFAULT 'closed',     -- closed | open | half_open
    ADD COLUMN circuit_retry_at BIGINT,                          -- open: next probe; half_open: probe lease
    ADD COLUMN circuit_failures BIGINT NOT NULL DEFAULT 0,       -- consecutive unavailable answers
    ADD COLUMN circuit_level BIGINT NOT NULL DEFAULT 0,          -- failed probes: the cooldown doubles with each
    ADD COLUMN rate_tat BIGINT;                                  -- rate limiter state (unix µs), shared by nodes

-- A lane is a webhook, or for a per-call webhook_url its organization and host.
ALTER TABLE delivery_logs
    ADD COLUMN lane_id UUID,
    -- The call id of a log that must wait for the earlier pending logs of its call (ordering: call).
    ADD COLUMN order_key TEXT,
    -- The latest attempt; `attempts` holds the earlier ones, so a first attempt that succeeds is
    -- a single row write and a response body is stored once.
    ADD COLUMN last_attempt_id UUID,
    ADD COLUMN last_attempt_at BIGINT,
    ADD COLUMN last_send_type TEXT;

UPDATE delivery_logs SET lane_id = COALESCE(webhook_id, org_id);
ALTER TABLE delivery_logs ALTER COLUMN lane_id SET NOT NULL;
UPDATE delivery_logs l SET last_attempt_id = a.id, last_attempt_at = a.sent_at,
    last_send_type = a.send_type
FROM attempts a WHERE a.log_id = l.id AND a.number = l.attempt_count AND l.attempt_count > 0;
DELETE FROM attempts a USING delivery_logs l WHERE a.log_id = l.id AND a.number = l.attempt_count;

DROP INDEX delivery_logs_due;
CREATE INDEX delivery_logs_lane_due ON delivery_logs (lane_id, next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_logs_ordered ON delivery_logs (lane_id, order_key, id)
    WHERE status = 'pending' AND order_key IS NOT NULL;
-- Claims in flight, per lane: counted against max_concurrency, and found again when a dead
-- node's lease runs out.
CREATE INDEX delivery_logs_claimed ON delivery_logs (lane_id, next_attempt_at) WHERE claimed_at IS NOT NULL;
