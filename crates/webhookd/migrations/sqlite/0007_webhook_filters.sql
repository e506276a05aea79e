-- Content filters (SPEC §10): a webhook's filter on the `data` of the events it subscribes to,
-- as the JSON the API was given; NULL (the default) lets every subscribed event through. It is
-- parsed when the webhook row is read, never per event.
ALTER TABLE webhooks ADD COLUMN content_filter TEXT;
