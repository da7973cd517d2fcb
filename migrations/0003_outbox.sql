-- The outbox gives up on a mail the relay keeps refusing for good (a 5xx reply,
-- an unusable address) once it has been failing long enough; such mail no longer
-- counts as waiting. Due mail is found through a partial index.
ALTER TABLE outbox ADD COLUMN given_up_at timestamptz;

CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE sent_at IS NULL AND given_up_at IS NULL;
