-- Fleet rollouts: a reason applied to a selection of databases in waves, a
-- canary first, each wave after the previous one completed and baked, halted
-- by the first failure beyond max_failures.
CREATE TABLE rollouts (
    id              bigserial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    reason          text NOT NULL,
    -- As given: `1,10%,50%,100%` (cumulative sizes).
    waves_spec      text NOT NULL,
    bake_secs       bigint NOT NULL CHECK (bake_secs >= 0),
    required_by     timestamptz NOT NULL,
    max_failures    integer NOT NULL DEFAULT 0 CHECK (max_failures >= 0),
    -- Told (with the failed database's owners) when the rollout halts.
    watchers        text[] NOT NULL DEFAULT '{}',
    state           text NOT NULL DEFAULT 'running'
                    CHECK (state IN ('running', 'baking', 'halted', 'paused', 'completed', 'aborted')),
    -- The wave whose maintenances are required (0-based).
    wave            integer NOT NULL DEFAULT 0,
    -- While baking: when the next wave may be required.
    bake_until      timestamptz,
    halted_because  text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- The selection, in order: which wave each database is in.
CREATE TABLE rollout_members (
    rollout_id   bigint NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    database_id  bigint NOT NULL REFERENCES databases(id) ON DELETE CASCADE,
    wave         integer NOT NULL,
    position     integer NOT NULL,
    PRIMARY KEY (rollout_id, database_id)
);

-- The rollout a maintenance was required by. `held`: not run while its
-- rollout is halted or paused; `cancelled`: its rollout was aborted.
ALTER TABLE maintenances ADD COLUMN rollout_id bigint REFERENCES rollouts(id) ON DELETE SET NULL;
CREATE INDEX maintenances_by_rollout ON maintenances (rollout_id) WHERE rollout_id IS NOT NULL;
