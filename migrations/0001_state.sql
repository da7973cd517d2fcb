-- pgmaint's state store: the fleet, its maintenances and their step logs,
-- apps and their releases, the owners' mail outbox, and daemon leases.
-- Migrations only move forward.

CREATE TABLE databases (
    id            bigserial PRIMARY KEY,
    name          text NOT NULL UNIQUE,
    plan          text NOT NULL,
    -- The database this one follows (a read-only streaming follower), if any.
    following_id  bigint REFERENCES databases(id),
    forked_from   text,
    owners        text[] NOT NULL DEFAULT '{}',
    status        text NOT NULL DEFAULT 'creating',
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_maintained_at timestamptz
);

-- The weekly window, one per database: `Sunday 14:30 Asia/Tokyo`, 4 h by default.
CREATE TABLE windows (
    database_id   bigint PRIMARY KEY REFERENCES databases(id) ON DELETE CASCADE,
    spec          text NOT NULL,
    length_secs   integer NOT NULL DEFAULT 14400 CHECK (length_secs > 0)
);

CREATE TABLE blackouts (
    id            bigserial PRIMARY KEY,
    database_id   bigint REFERENCES databases(id) ON DELETE CASCADE,
    starts_at     timestamptz NOT NULL,
    ends_at       timestamptz NOT NULL CHECK (ends_at >= starts_at)
);

-- A PostgreSQL server that serves (or will serve, or did serve) a database.
CREATE TABLE instances (
    id            bigserial PRIMARY KEY,
    database_id   bigint NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    -- current: the server clients reach; ha_standby; replacement: being prepared
    -- for a switchover; retired: stopped, kept for a grace period.
    role          text NOT NULL CHECK (role IN ('current', 'ha_standby', 'replacement', 'retired')),
    -- Where the provider keeps it (for `local`, the cluster directory).
    location      text NOT NULL UNIQUE,
    slot_name     text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE UNIQUE INDEX one_current_instance ON instances (database_id) WHERE role = 'current';

CREATE TABLE maintenances (
    id              bigserial PRIMARY KEY,
    database_id     bigint NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    reason          text NOT NULL,
    strategy        text NOT NULL,
    required_by     timestamptz NOT NULL,
    scheduled_for   timestamptz,
    forced          boolean NOT NULL DEFAULT false,
    forced_reason   text,
    state           text NOT NULL DEFAULT 'pending',
    step            text,
    candidate_id    bigint REFERENCES instances(id),
    old_instance_id bigint REFERENCES instances(id),
    claimed_by      text,
    lease_until     timestamptz,
    fencing_token   bigint NOT NULL DEFAULT 0,
    started_at      timestamptz,
    finished_at     timestamptz,
    write_pause_ms  double precision,
    outcome         text,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX one_open_maintenance ON maintenances (database_id)
    WHERE state NOT IN ('completed', 'failed', 'cancelled');

-- Every step's intent is written before it acts, and its result after.
CREATE TABLE maintenance_steps (
    id              bigserial PRIMARY KEY,
    maintenance_id  bigint NOT NULL REFERENCES maintenances(id) ON DELETE CASCADE,
    step            text NOT NULL,
    status          text NOT NULL CHECK (status IN ('intent', 'done', 'failed', 'skipped')),
    detail          jsonb NOT NULL DEFAULT '{}',
    at              timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX maintenance_steps_by_maintenance ON maintenance_steps (maintenance_id, id);

CREATE TABLE apps (
    id                bigserial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    maintenance_mode  boolean NOT NULL DEFAULT false,
    created_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE attachments (
    app_id       bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    database_id  bigint NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    name         text NOT NULL DEFAULT 'DATABASE_URL',
    PRIMARY KEY (app_id, name)
);

CREATE TABLE releases (
    app_id      bigint NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    version     integer NOT NULL,
    change      text NOT NULL,
    made_by     text NOT NULL,
    config      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, version)
);

-- Owner mail: each (maintenance, event, recipient) is sent exactly once.
CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    maintenance_id  bigint REFERENCES maintenances(id) ON DELETE CASCADE,
    event           text NOT NULL,
    recipient       text NOT NULL,
    subject         text NOT NULL,
    body            text NOT NULL,
    calendar        text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    sent_at         timestamptz,
    UNIQUE (maintenance_id, event, recipient)
);

-- Named leases (the scheduler's leadership), with a fencing token that only grows.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    token       bigint NOT NULL,
    expires_at  timestamptz NOT NULL
);
