-- Delivery bookkeeping per host: the newest data frame committed (written in the same
-- transaction as the frame's records) and what the agent's spool reported dropping.
CREATE TABLE agent_streams (
    host_id BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    dropped_stats BIGINT NOT NULL DEFAULT 0,
    dropped_usage BIGINT NOT NULL DEFAULT 0,
    dropped_events BIGINT NOT NULL DEFAULT 0,
    dropped_other BIGINT NOT NULL DEFAULT 0,
    updated_ns BIGINT NOT NULL,
    PRIMARY KEY (host_id),
    CONSTRAINT agent_streams_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
