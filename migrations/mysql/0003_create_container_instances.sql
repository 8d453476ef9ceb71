-- Every Docker id a logical container has had, so samples and events that name an old id
-- still land on the right history.
CREATE TABLE container_instances (
    host_id BIGINT NOT NULL,
    docker_id VARCHAR(128) NOT NULL,
    container_id BIGINT NOT NULL,
    first_seen_ns BIGINT NOT NULL,
    PRIMARY KEY (host_id, docker_id),
    KEY container_instances_container (container_id),
    CONSTRAINT container_instances_container FOREIGN KEY (container_id) REFERENCES containers (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
