-- On-demand 1-second profiles of one container.
CREATE TABLE profile_sessions (
    id BIGINT NOT NULL AUTO_INCREMENT,
    host_id BIGINT NOT NULL,
    container_id BIGINT NOT NULL,
    docker_id VARCHAR(128) NOT NULL,
    requested_by BIGINT NULL,
    status VARCHAR(16) NOT NULL,
    reason TEXT NULL,
    duration_s BIGINT NOT NULL,
    started_ns BIGINT NOT NULL,
    ended_ns BIGINT NULL,
    PRIMARY KEY (id),
    KEY profile_sessions_container (container_id, started_ns),
    KEY profile_sessions_started (started_ns),
    CONSTRAINT profile_sessions_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
