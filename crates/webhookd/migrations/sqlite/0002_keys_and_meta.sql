-- Facts about the database itself, one row per name. `sealing_check` holds a value sealed with the
-- server key on first start, so a later start with another key is refused before it serves
-- anything (see store/meta.rs).
CREATE TABLE meta (
    name   TEXT PRIMARY KEY NOT NULL,
    value  TEXT NOT NULL
) STRICT;

-- `webhookd key revoke --key-prefix` and `key list` find keys by their shown prefix.
CREATE INDEX api_keys_prefix ON api_keys (key_prefix);
