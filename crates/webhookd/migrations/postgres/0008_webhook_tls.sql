-- Mutual TLS (SPEC §9): a webhook's client certificate and key and its trusted CA, as one JSON
-- value sealed like the other credentials (`enc:v1:…`); NULL (the default) presents no
-- certificate and trusts the public roots only.
ALTER TABLE webhooks ADD COLUMN tls_config TEXT;
