-- Dashboard and customer-portal sessions (SPEC §7). The cookie carries a random token; only its
-- SHA-256 is stored, so reading this table does not let anyone sign in. Stored in the database so
-- a session works on every node and signing out (or deleting its key, agent or organization) ends
-- it at once.

CREATE TABLE ui_sessions (
    token_hash  BYTEA PRIMARY KEY NOT NULL,
    org_id      UUID NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    -- Portal sessions: the one agent they may see. NULL: the whole organization (dashboard).
    agent_id    UUID REFERENCES agents (id) ON DELETE CASCADE,
    -- Dashboard sessions: the API key that signed in; revoking it ends them.
    api_key_id  UUID REFERENCES api_keys (id) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,                     -- synchronizer token of this session's forms
    expires_at  BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);
