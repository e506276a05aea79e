-- History at scale (SPEC §8): payloads that expire before their logs, and calls erased on
-- request.

-- Whether the event's payload is still stored: present | expired (--payload-retention passed) |
-- erased (DELETE /api/v1/calls/{call_id}). Without it, `payload` is empty and the response bodies
-- and headers of its logs and attempts are NULL; the rest of the history stays.
ALTER TABLE events ADD COLUMN payload_state TEXT NOT NULL DEFAULT 'present';
-- Payload expiry walks the events that still hold a payload, oldest first: an index of those
-- only, so expired events (kept until --retention) never make the walk longer.
CREATE INDEX events_payload_present ON events (created_at) WHERE payload_state = 'present';

-- The same state on each log of the event, written in the same transaction. The recorder's
-- update reads it from the log row it writes (PostgreSQL re-reads a row it waited for, but not
-- the other tables of its statement), so a result that arrives after an erasure or an expiry
-- never brings back a response body or a pending status.
ALTER TABLE delivery_logs ADD COLUMN payload_state TEXT NOT NULL DEFAULT 'present';

-- Log listings read from indexes (SPEC §8): one per filter a listing offers, each ending in `id`
-- so a page is a seek plus `LIMIT` in id order and a count reads index entries only. A time
-- range is also an id range (ids are UUIDv7), so it narrows any of them. No filter:
-- `delivery_logs_webhook (webhook_id, id)`. A status change rewrites its entries in the two
-- status indexes: the price of listing by status without a scan.
CREATE INDEX delivery_logs_webhook_status ON delivery_logs (webhook_id, status, id);
CREATE INDEX delivery_logs_webhook_event ON delivery_logs (webhook_id, event_type, id);
CREATE INDEX delivery_logs_webhook_status_event ON delivery_logs (webhook_id, status, event_type, id);
CREATE INDEX delivery_logs_webhook_call ON delivery_logs (webhook_id, call_id, id);
