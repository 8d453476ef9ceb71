-- The newest sample of each container, kept at ingest, so "latest stats of every container
-- on a host" reads one row per container instead of searching the raw table.
CREATE TABLE container_stats_latest (
    container_id BIGINT NOT NULL,
    host_id BIGINT NOT NULL,
    time_ns BIGINT NOT NULL,
    cpu_percent DOUBLE NULL,
    cpu_total_ns BIGINT NOT NULL,
    memory_usage_bytes BIGINT NOT NULL,
    memory_working_set_bytes BIGINT NOT NULL,
    memory_limit_bytes BIGINT NOT NULL,
    net_rx_bytes BIGINT NOT NULL,
    net_tx_bytes BIGINT NOT NULL,
    net_rx_bytes_per_s DOUBLE NULL,
    net_tx_bytes_per_s DOUBLE NULL,
    block_read_bytes BIGINT NOT NULL,
    block_write_bytes BIGINT NOT NULL,
    block_read_bytes_per_s DOUBLE NULL,
    block_write_bytes_per_s DOUBLE NULL,
    pids BIGINT NOT NULL,
    PRIMARY KEY (container_id),
    KEY container_stats_latest_host (host_id),
    CONSTRAINT container_stats_latest_container FOREIGN KEY (container_id) REFERENCES containers (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
