-- `webhookd key revoke --key-prefix` and `key list` find keys by their shown prefix.
CREATE INDEX api_keys_prefix ON api_keys (key_prefix);
