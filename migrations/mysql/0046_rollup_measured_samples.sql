-- The hourly rollup is computed from the 5-minute buckets instead of the raw rows (a tenth
-- of the rows at 30-second sweeps). An hour's average of a figure is the average of its
-- 5-minute averages weighted by how many samples measured it, so each bucket now keeps that
-- count: it differs from `samples` for CPU and the rates (not in a container's first
-- sample) and for a group Docker omitted from some samples (`absent`). Buckets written
-- without the counts (before this migration, or by a replica of the previous version during
-- a rolling upgrade) read 0, and the hourly rollup counts all their samples for each figure
-- they hold: their exact counts are not known, as the raw rows may be gone. No backfill, so
-- the migration only adds columns and takes no time on a large table.
ALTER TABLE container_stats_5m
    ADD COLUMN cpu_percent_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN memory_usage_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN memory_working_set_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN net_rx_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN net_tx_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN block_read_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN block_write_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pids_samples BIGINT NOT NULL DEFAULT 0;
