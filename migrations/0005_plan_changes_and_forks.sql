-- Plan changes and follower switchover.
--
-- The PostgreSQL database a pgmaint database serves inside its servers. A
-- follower serves its leader's, and keeps serving it after `unfollow` makes
-- it a primary of its own, so it is recorded rather than derived.
ALTER TABLE databases ADD COLUMN dbname text;
WITH RECURSIVE origin (id, dbname) AS (
    SELECT id, name FROM databases WHERE following_id IS NULL
    UNION ALL
    SELECT d.id, o.dbname FROM databases d JOIN origin o ON d.following_id = o.id
)
UPDATE databases d SET dbname = o.dbname FROM origin o WHERE o.id = d.id;
UPDATE databases SET dbname = name WHERE dbname IS NULL;
ALTER TABLE databases ALTER COLUMN dbname SET NOT NULL;

-- The plan a `plan-change` maintenance moves the database to; its
-- replacement is built with that plan's settings and the database takes
-- the plan when the switch completes.
ALTER TABLE maintenances ADD COLUMN target_plan text;

-- What a long preparation is doing, as its runner last saw it (the
-- replacement's base backup and catch-up, an essential plan change's copy),
-- shown by `info` and `maintenance show`.
ALTER TABLE maintenances ADD COLUMN progress text;
