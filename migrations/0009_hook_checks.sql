-- Why a completed maintenance's check failed (its after_maintenance hook
-- exited non-zero, with its last lines of output); NULL when it passed or
-- no hook is configured.
ALTER TABLE maintenances ADD COLUMN check_error text;
