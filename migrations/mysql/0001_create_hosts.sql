-- A monitored Docker host, known across the fleet by its name (its certificate's name).
CREATE TABLE hosts (
    id BIGINT NOT NULL AUTO_INCREMENT,
    name VARCHAR(253) NOT NULL,
    engine_id VARCHAR(255) NOT NULL DEFAULT '',
    docker_version VARCHAR(64) NOT NULL DEFAULT '',
    agent_version VARCHAR(64) NOT NULL DEFAULT '',
    -- The latest host record from the agent, as JSON.
    info TEXT NULL,
    created_ns BIGINT NOT NULL,
    last_seen_ns BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY hosts_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
