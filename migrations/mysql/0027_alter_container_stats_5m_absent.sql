-- Which counter groups were not measured in any sample of the bucket (Docker omitted
-- them): a bitmask, 1 network, 2 block IO, 4 memory, 8 pids, as in container_stats. Their
-- columns then read 0 (or NULL for rates) but are not data, and the API shows no value.
ALTER TABLE container_stats_5m ADD COLUMN absent BIGINT NOT NULL DEFAULT 0;
