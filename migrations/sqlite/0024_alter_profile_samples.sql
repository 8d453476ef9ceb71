-- Profile samples keep the counters as well as the rates, the interval the rates cover (so a
-- session's totals are exact: rate × interval is the counter's increase), and the memory
-- limit, so a chart can show usage against it.
ALTER TABLE profile_samples ADD COLUMN interval_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN memory_limit_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN cpu_total_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN net_rx_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN net_tx_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN block_read_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE profile_samples ADD COLUMN block_write_bytes INTEGER NOT NULL DEFAULT 0;
