-- A logical container: what people think of as "the web container" of a host. Its identity
-- (compose project/service/number, else the name) survives re-creation, so its history is one
-- series even though Docker ids change. Removed containers keep their row and history.
CREATE TABLE containers (
    id BIGINT NOT NULL AUTO_INCREMENT,
    host_id BIGINT NOT NULL,
    identity VARCHAR(600) NOT NULL,
    docker_id VARCHAR(128) NOT NULL,
    name VARCHAR(256) NOT NULL,
    image VARCHAR(256) NOT NULL DEFAULT '',
    image_id VARCHAR(128) NOT NULL DEFAULT '',
    state VARCHAR(16) NOT NULL,
    health VARCHAR(16) NULL,
    restart_count BIGINT NOT NULL DEFAULT 0,
    exit_code BIGINT NULL,
    created_ns BIGINT NOT NULL,
    started_ns BIGINT NULL,
    finished_ns BIGINT NULL,
    compose_project VARCHAR(256) NULL,
    compose_service VARCHAR(256) NULL,
    compose_number BIGINT NULL,
    -- The whole container record (labels, ports, mounts, networks) as JSON.
    detail TEXT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    removed_ns BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY containers_identity (host_id, identity),
    KEY containers_host_name (host_id, name),
    KEY containers_host_compose (host_id, compose_project, compose_service),
    CONSTRAINT containers_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
