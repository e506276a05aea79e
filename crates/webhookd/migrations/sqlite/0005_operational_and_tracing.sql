-- Operational webhooks (SPEC §3, §4): where an organization's own endpoint gets the events about
-- its webhooks (disabled, circuit opened/closed, delivery failed), and the trace context of
-- events (SPEC §4 "Tracing").

-- One per organization. `events` is a JSON array of the operational event types it wants.
CREATE TABLE operational_webhooks (
    org_id      BLOB PRIMARY KEY NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;

-- Operational events and their delivery logs belong to an internal agent of the organization
-- (events and logs need an agent). It is never listed nor reachable under /agents.
ALTER TABLE agents ADD COLUMN internal INTEGER NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX agents_internal ON agents (org_id) WHERE internal;

-- Logs without a webhook (per-call URLs and operational deliveries) by lane, newest first: the
-- listing of operational logs. Logs of webhooks, the bulk, are not in it.
CREATE INDEX delivery_logs_unhooked ON delivery_logs (lane_id, id) WHERE webhook_id IS NULL;

-- W3C traceparent of the span its attempts continue: set when the ingest request carried one or
-- when spans are exported; NULL otherwise (attempts then use the event id as the trace id).
ALTER TABLE events ADD COLUMN traceparent TEXT;
