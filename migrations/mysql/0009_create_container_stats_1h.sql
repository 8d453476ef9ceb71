-- 1h rollup of container_stats: per bucket, the number of samples and the average and
-- maximum of each gauge and rate, exactly as computed from the raw rows.
CREATE TABLE container_stats_1h (
    container_id BIGINT NOT NULL,
    bucket_ns BIGINT NOT NULL,
    samples BIGINT NOT NULL,
    cpu_percent_avg DOUBLE NULL,
    cpu_percent_max DOUBLE NULL,
    memory_usage_avg DOUBLE NOT NULL,
    memory_usage_max BIGINT NOT NULL,
    memory_working_set_avg DOUBLE NOT NULL,
    memory_working_set_max BIGINT NOT NULL,
    memory_limit_max BIGINT NOT NULL,
    net_rx_bytes_per_s_avg DOUBLE NULL,
    net_rx_bytes_per_s_max DOUBLE NULL,
    net_tx_bytes_per_s_avg DOUBLE NULL,
    net_tx_bytes_per_s_max DOUBLE NULL,
    block_read_bytes_per_s_avg DOUBLE NULL,
    block_read_bytes_per_s_max DOUBLE NULL,
    block_write_bytes_per_s_avg DOUBLE NULL,
    block_write_bytes_per_s_max DOUBLE NULL,
    pids_avg DOUBLE NOT NULL,
    pids_max BIGINT NOT NULL,
    PRIMARY KEY (container_id, bucket_ns),
    KEY container_stats_1h_bucket (bucket_ns)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
