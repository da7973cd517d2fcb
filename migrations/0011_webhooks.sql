-- Webhooks share the owners' mail outbox: a row is a mail (recipient: an
-- address) or a POST of a JSON body to a URL (recipient: the URL), about a
-- maintenance or about a rollout. A rollout's own events (a wave started, a
-- bake, a halt, completion) are keyed by the rollout, event and URL as a
-- maintenance's are by the maintenance, event and recipient.
ALTER TABLE outbox ADD COLUMN channel text NOT NULL DEFAULT 'mail' CHECK (channel IN ('mail', 'webhook'));
ALTER TABLE outbox ADD COLUMN rollout_id bigint REFERENCES rollouts(id) ON DELETE CASCADE;
ALTER TABLE outbox ADD CONSTRAINT outbox_about_something CHECK (maintenance_id IS NOT NULL OR rollout_id IS NOT NULL);
CREATE UNIQUE INDEX outbox_rollout_event ON outbox (rollout_id, event, recipient) WHERE maintenance_id IS NULL;
