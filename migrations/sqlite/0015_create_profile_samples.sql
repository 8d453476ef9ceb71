CREATE TABLE profile_samples (
    session_id INTEGER NOT NULL,
    time_ns INTEGER NOT NULL,
    cpu_percent REAL NULL,
    memory_usage_bytes INTEGER NOT NULL,
    memory_working_set_bytes INTEGER NOT NULL,
    net_rx_bytes_per_s REAL NULL,
    net_tx_bytes_per_s REAL NULL,
    block_read_bytes_per_s REAL NULL,
    block_write_bytes_per_s REAL NULL,
    pids INTEGER NOT NULL,
    PRIMARY KEY (session_id, time_ns),
    FOREIGN KEY (session_id) REFERENCES profile_sessions (id) ON DELETE CASCADE
) WITHOUT ROWID;
