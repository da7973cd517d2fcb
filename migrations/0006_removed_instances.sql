-- A retired server is removed (its files deleted by the provider) once
-- [maintenance] retire_grace has passed; the row stays, for the history.
ALTER TABLE instances ADD COLUMN removed_at timestamptz;
