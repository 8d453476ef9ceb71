CREATE TABLE profile_samples (
    session_id BIGINT NOT NULL,
    time_ns BIGINT NOT NULL,
    cpu_percent DOUBLE NULL,
    memory_usage_bytes BIGINT NOT NULL,
    memory_working_set_bytes BIGINT NOT NULL,
    net_rx_bytes_per_s DOUBLE NULL,
    net_tx_bytes_per_s DOUBLE NULL,
    block_read_bytes_per_s DOUBLE NULL,
    block_write_bytes_per_s DOUBLE NULL,
    pids BIGINT NOT NULL,
    PRIMARY KEY (session_id, time_ns),
    CONSTRAINT profile_samples_session FOREIGN KEY (session_id) REFERENCES profile_sessions (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
