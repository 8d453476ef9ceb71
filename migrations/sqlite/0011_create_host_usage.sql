-- Disk usage (docker system df) over time.
CREATE TABLE host_usage (
    host_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    layers_bytes INTEGER NOT NULL,
    images_count INTEGER NOT NULL,
    images_active INTEGER NOT NULL,
    images_bytes INTEGER NOT NULL,
    images_reclaimable_bytes INTEGER NOT NULL,
    containers_count INTEGER NOT NULL,
    containers_active INTEGER NOT NULL,
    containers_bytes INTEGER NOT NULL,
    containers_reclaimable_bytes INTEGER NOT NULL,
    volumes_count INTEGER NOT NULL,
    volumes_active INTEGER NOT NULL,
    volumes_bytes INTEGER NOT NULL,
    volumes_reclaimable_bytes INTEGER NOT NULL,
    build_cache_count INTEGER NOT NULL,
    build_cache_active INTEGER NOT NULL,
    build_cache_bytes INTEGER NOT NULL,
    build_cache_reclaimable_bytes INTEGER NOT NULL,
    -- The largest container layers and volumes, as JSON.
    detail TEXT NOT NULL,
    PRIMARY KEY (host_id, time_ns),
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX host_usage_time ON host_usage (time_ns);
