-- Raw samples (every sweep, 30 s by default). Clustered by (container, time): range
-- queries for one container read one contiguous stretch. No foreign key: the ingest path
-- is the hot path, and rows are only ever removed by retention or host deletion.
CREATE TABLE container_stats (
    container_id BIGINT NOT NULL,
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
    PRIMARY KEY (container_id, time_ns),
    KEY container_stats_time (time_ns)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
