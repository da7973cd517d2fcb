-- Releases of an app's config: each new release rewrites the app's env file
-- (when it has one) and then runs its restart hook (when it has one).
ALTER TABLE apps ADD COLUMN env_file text;
ALTER TABLE apps ADD COLUMN restart_hook text;
