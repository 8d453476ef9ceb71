-- Delivery bookkeeping per host: the newest data frame committed (written in the same
-- transaction as the frame's records) and what the agent's spool reported dropping.
CREATE TABLE agent_streams (
    host_id INTEGER NOT NULL,
    last_seq INTEGER NOT NULL,
    dropped_stats INTEGER NOT NULL DEFAULT 0,
    dropped_usage INTEGER NOT NULL DEFAULT 0,
    dropped_events INTEGER NOT NULL DEFAULT 0,
    dropped_other INTEGER NOT NULL DEFAULT 0,
    updated_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id),
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
);
