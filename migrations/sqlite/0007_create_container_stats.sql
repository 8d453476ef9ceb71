-- Raw samples (every sweep, 30 s by default). Clustered by (container, time): range
-- queries for one container read one contiguous stretch. No foreign key: the ingest path
-- is the hot path, and rows are only ever removed by retention or host deletion.
CREATE TABLE container_stats (
    container_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    cpu_percent REAL NULL,
    cpu_total_ns INTEGER NOT NULL,
    memory_usage_bytes INTEGER NOT NULL,
    memory_working_set_bytes INTEGER NOT NULL,
    memory_limit_bytes INTEGER NOT NULL,
    net_rx_bytes INTEGER NOT NULL,
    net_tx_bytes INTEGER NOT NULL,
    net_rx_bytes_per_s REAL NULL,
    net_tx_bytes_per_s REAL NULL,
    block_read_bytes INTEGER NOT NULL,
    block_write_bytes INTEGER NOT NULL,
    block_read_bytes_per_s REAL NULL,
    block_write_bytes_per_s REAL NULL,
    pids INTEGER NOT NULL,
    PRIMARY KEY (container_id, time_ns)
) WITHOUT ROWID;
CREATE INDEX container_stats_time ON container_stats (time_ns);
