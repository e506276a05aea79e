-- The dashboard's filter on the latest attempt's HTTP status answers from an index: one code
-- seeks `(webhook_id, http_status, id)`, "no response" reads a partial index of exactly those logs
-- (attempted, no status). Without them a filter that matches few logs walks the whole history.
CREATE INDEX delivery_logs_webhook_http_status ON delivery_logs (webhook_id, http_status, id)
    WHERE http_status IS NOT NULL;
CREATE INDEX delivery_logs_webhook_no_response ON delivery_logs (webhook_id, id)
    WHERE http_status IS NULL AND attempt_count > 0;
