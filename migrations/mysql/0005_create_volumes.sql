CREATE TABLE volumes (
    host_id BIGINT NOT NULL,
    name VARCHAR(256) NOT NULL,
    driver VARCHAR(256) NOT NULL,
    mountpoint TEXT NOT NULL,
    scope VARCHAR(16) NOT NULL,
    created_ns BIGINT NULL,
    labels TEXT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    PRIMARY KEY (host_id, name),
    CONSTRAINT volumes_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
