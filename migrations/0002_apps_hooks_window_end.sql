-- Commands run when an app's maintenance mode is turned on or off.
ALTER TABLE apps ADD COLUMN on_maintenance_on text;
ALTER TABLE apps ADD COLUMN on_maintenance_off text;

-- The end of the window a maintenance was planned into (NULL when forced),
-- so a daemon that was down through the whole window re-plans instead of
-- running outside it.
ALTER TABLE maintenances ADD COLUMN window_end timestamptz;
