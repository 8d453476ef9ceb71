-- The hourly rollup is computed from the 5-minute buckets instead of the raw rows (a tenth
-- of the rows at 30-second sweeps). An hour's average of a figure is the average of its
-- 5-minute averages weighted by how many samples measured it, so each bucket now keeps that
-- count: it differs from `samples` for CPU and the rates (not in a container's first
-- sample) and for a group Docker omitted from some samples (`absent`). Buckets rolled up
-- before this migration get `samples` for every figure they hold: their exact counts are
-- not known, as the raw rows may be gone.
ALTER TABLE container_stats_5m
    ADD COLUMN cpu_percent_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN memory_usage_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN memory_working_set_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN net_rx_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN net_tx_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN block_read_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN block_write_bytes_per_s_samples BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN pids_samples BIGINT NOT NULL DEFAULT 0;
UPDATE container_stats_5m SET
    cpu_percent_samples = CASE WHEN cpu_percent_avg IS NOT NULL THEN samples ELSE 0 END,
    memory_usage_samples = CASE WHEN absent & 4 = 0 THEN samples ELSE 0 END,
    memory_working_set_samples = CASE WHEN absent & 4 = 0 THEN samples ELSE 0 END,
    net_rx_bytes_per_s_samples = CASE WHEN net_rx_bytes_per_s_avg IS NOT NULL THEN samples ELSE 0 END,
    net_tx_bytes_per_s_samples = CASE WHEN net_tx_bytes_per_s_avg IS NOT NULL THEN samples ELSE 0 END,
    block_read_bytes_per_s_samples = CASE WHEN block_read_bytes_per_s_avg IS NOT NULL THEN samples ELSE 0 END,
    block_write_bytes_per_s_samples = CASE WHEN block_write_bytes_per_s_avg IS NOT NULL THEN samples ELSE 0 END,
    pids_samples = CASE WHEN absent & 8 = 0 THEN samples ELSE 0 END;
