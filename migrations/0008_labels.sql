-- Labels (`tier=gold`): what a rollout selects databases by.
ALTER TABLE databases ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';
