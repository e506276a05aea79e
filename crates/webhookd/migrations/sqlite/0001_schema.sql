-- webhookd schema, SQLite flavour. Ids are UUIDs stored as 16-byte BLOBs; every time is unix
-- milliseconds in an INTEGER so comparisons are plain integer comparisons on both backends.
-- Log and attempt ids are UUIDv7, so ordering by id is ordering by creation time.

CREATE TABLE organizations (
    id                          BLOB PRIMARY KEY NOT NULL,
    name                        TEXT NOT NULL,
    signing_secret              TEXT NOT NULL,
    previous_signing_secret     TEXT,
    previous_secret_expires_at  INTEGER,
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    key_hash    BLOB NOT NULL UNIQUE,
    key_prefix  TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX api_keys_org ON api_keys (org_id);

CREATE TABLE agents (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX agents_org ON agents (org_id, id);

CREATE TABLE webhooks (
    id                          BLOB PRIMARY KEY NOT NULL,
    org_id                      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id                    BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    name                        TEXT NOT NULL,
    url                         TEXT NOT NULL,
    events                      TEXT NOT NULL,      -- JSON array of event type names
    timeout_secs                INTEGER NOT NULL,
    max_retries                 INTEGER NOT NULL,
    enabled                     INTEGER NOT NULL,
    disabled_reason             TEXT,
    http_method                 TEXT NOT NULL,
    auth_config                 TEXT NOT NULL,      -- JSON: authorization scheme and credentials
    custom_headers              TEXT NOT NULL,      -- JSON array of {key, value}
    signing_secret              TEXT NOT NULL,
    previous_signing_secret     TEXT,
    previous_secret_expires_at  INTEGER,
    failing_since               INTEGER,            -- first failure of the current failure streak
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
) STRICT;
CREATE INDEX webhooks_agent ON webhooks (agent_id, id);

CREATE TABLE events (
    id           BLOB PRIMARY KEY NOT NULL,
    org_id       BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id     BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    event_type   TEXT NOT NULL,
    call_id      TEXT,
    payload      BLOB NOT NULL,                     -- the `data` bytes, delivered verbatim
    webhook_url  TEXT,                              -- one-off per-call destination
    created_at   INTEGER NOT NULL
) STRICT;
CREATE INDEX events_org_call ON events (org_id, call_id, event_type) WHERE call_id IS NOT NULL;
CREATE INDEX events_created ON events (created_at);

CREATE TABLE idempotency_keys (
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    idempotency_key  TEXT NOT NULL,
    event_id         BLOB NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, idempotency_key)
) STRICT;
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

CREATE TABLE delivery_logs (
    id               BLOB PRIMARY KEY NOT NULL,
    org_id           BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    agent_id         BLOB NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    webhook_id       BLOB REFERENCES webhooks (id) ON DELETE CASCADE,  -- NULL: per-call webhook_url
    event_id         BLOB NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    event_type       TEXT NOT NULL,
    call_id          TEXT,
    url              TEXT NOT NULL,
    status           TEXT NOT NULL,                 -- pending | success | failed | skipped
    first_send_type  TEXT NOT NULL,                 -- send_type of the log's first attempt
    attempt_count    INTEGER NOT NULL DEFAULT 0,      -- every attempt of this log
    retries          INTEGER NOT NULL DEFAULT 0,      -- automatic retries used (send_type retry)
    http_status      INTEGER,
    response_body    TEXT,
    response_headers TEXT,
    duration_ms      INTEGER,
    delivered_at     INTEGER,
    error            TEXT,
    original_log_id  BLOB,
    next_attempt_at  INTEGER,                       -- due time; while claimed, the lease expiry
    claimed_at       INTEGER,                       -- set while an attempt is in flight
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
) STRICT;
CREATE INDEX delivery_logs_due ON delivery_logs (next_attempt_at) WHERE status = 'pending';
CREATE INDEX delivery_logs_webhook ON delivery_logs (webhook_id, id);
CREATE INDEX delivery_logs_org_call ON delivery_logs (org_id, call_id, event_type) WHERE call_id IS NOT NULL;
CREATE INDEX delivery_logs_event ON delivery_logs (event_id);

CREATE TABLE attempts (
    id                BLOB PRIMARY KEY NOT NULL,
    log_id            BLOB NOT NULL REFERENCES delivery_logs (id) ON DELETE CASCADE,
    number            INTEGER NOT NULL,
    send_type         TEXT NOT NULL,
    sent_at           INTEGER NOT NULL,
    response_code     INTEGER,
    duration_ms       INTEGER NOT NULL,
    response_body     TEXT,
    response_headers  TEXT,
    error             TEXT
) STRICT;
CREATE INDEX attempts_log ON attempts (log_id, number);

CREATE TABLE recoveries (
    id          BLOB PRIMARY KEY NOT NULL,
    org_id      BLOB NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    webhook_id  BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    since       INTEGER NOT NULL,
    until       INTEGER NOT NULL,
    status      TEXT NOT NULL,                      -- running | completed
    total       INTEGER NOT NULL,
    queued      INTEGER NOT NULL,
    cursor      BLOB,                               -- last log id queued: resume point after a restart
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX recoveries_running ON recoveries (status) WHERE status = 'running';
