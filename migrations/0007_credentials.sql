-- Each database's own login: the role its URL names and that role's password
-- (random, never shown outside `info` and the attachments of that database),
-- with the SCRAM verifier handed to servers and PgBouncer. After a rotation
-- the previous login keeps working until `retire_at` (or until every attached
-- app restarted), then it is retired and its columns cleared.
CREATE TABLE credentials (
    database_id      bigint PRIMARY KEY REFERENCES databases(id) ON DELETE CASCADE,
    login_role       text NOT NULL,
    password         text NOT NULL,
    verifier         text NOT NULL,
    retired_role     text,
    retired_verifier text,
    retire_at        timestamptz,
    rotated_at       timestamptz,
    CHECK ((retired_role IS NULL) = (retire_at IS NULL) AND (retired_role IS NULL) = (retired_verifier IS NULL))
);
