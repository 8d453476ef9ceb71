-- The newest sample of each container, kept at ingest, so "latest stats of every container
-- on a host" reads one row per container instead of searching the raw table.
CREATE TABLE container_stats_latest (
    container_id INTEGER NOT NULL,
    host_id INTEGER NOT NULL,
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
    PRIMARY KEY (container_id),
    FOREIGN KEY (container_id) REFERENCES containers (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX container_stats_latest_host ON container_stats_latest (host_id);
