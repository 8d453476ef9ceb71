CREATE TABLE images (
    host_id BIGINT NOT NULL,
    image_id VARCHAR(128) NOT NULL,
    tags TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    labels TEXT NOT NULL,
    last_seen_ns BIGINT NOT NULL,
    PRIMARY KEY (host_id, image_id),
    CONSTRAINT images_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
