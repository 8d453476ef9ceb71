-- 5m rollup of container_stats: per bucket, the number of samples and the average and
-- maximum of each gauge and rate, exactly as computed from the raw rows.
CREATE TABLE container_stats_5m (
    container_id INTEGER NOT NULL,
    bucket_ns INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    cpu_percent_avg REAL NULL,
    cpu_percent_max REAL NULL,
    memory_usage_avg REAL NOT NULL,
    memory_usage_max INTEGER NOT NULL,
    memory_working_set_avg REAL NOT NULL,
    memory_working_set_max INTEGER NOT NULL,
    memory_limit_max INTEGER NOT NULL,
    net_rx_bytes_per_s_avg REAL NULL,
    net_rx_bytes_per_s_max REAL NULL,
    net_tx_bytes_per_s_avg REAL NULL,
    net_tx_bytes_per_s_max REAL NULL,
    block_read_bytes_per_s_avg REAL NULL,
    block_read_bytes_per_s_max REAL NULL,
    block_write_bytes_per_s_avg REAL NULL,
    block_write_bytes_per_s_max REAL NULL,
    pids_avg REAL NOT NULL,
    pids_max INTEGER NOT NULL,
    PRIMARY KEY (container_id, bucket_ns)
) WITHOUT ROWID;
CREATE INDEX container_stats_5m_bucket ON container_stats_5m (bucket_ns);
