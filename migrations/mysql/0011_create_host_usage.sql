-- Disk usage (docker system df) over time.
CREATE TABLE host_usage (
    host_id BIGINT NOT NULL,
    time_ns BIGINT NOT NULL,
    layers_bytes BIGINT NOT NULL,
    images_count BIGINT NOT NULL,
    images_active BIGINT NOT NULL,
    images_bytes BIGINT NOT NULL,
    images_reclaimable_bytes BIGINT NOT NULL,
    containers_count BIGINT NOT NULL,
    containers_active BIGINT NOT NULL,
    containers_bytes BIGINT NOT NULL,
    containers_reclaimable_bytes BIGINT NOT NULL,
    volumes_count BIGINT NOT NULL,
    volumes_active BIGINT NOT NULL,
    volumes_bytes BIGINT NOT NULL,
    volumes_reclaimable_bytes BIGINT NOT NULL,
    build_cache_count BIGINT NOT NULL,
    build_cache_active BIGINT NOT NULL,
    build_cache_bytes BIGINT NOT NULL,
    build_cache_reclaimable_bytes BIGINT NOT NULL,
    -- The largest container layers and volumes, as JSON.
    detail TEXT NOT NULL,
    PRIMARY KEY (host_id, time_ns),
    KEY host_usage_time (time_ns),
    CONSTRAINT host_usage_host FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
