-- Patroni clusters pgmaint adopted: the database's servers are the cluster's
-- members, run by Patroni; pgmaint reaches them through Patroni's REST API.
-- The database's one `current` instance is the leader, at a location
-- `patroni:<member>@<host>:<port>`, moved when Patroni's leader changes.
CREATE TABLE patroni_clusters (
    database_id        bigint PRIMARY KEY REFERENCES databases(id) ON DELETE CASCADE,
    scope              text NOT NULL,
    system_identifier  text NOT NULL,
    rest_urls          text[] NOT NULL CHECK (cardinality(rest_urls) > 0)
);
