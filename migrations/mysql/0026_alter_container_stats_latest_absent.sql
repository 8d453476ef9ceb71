-- Which counter groups were not measured for a sample (Docker omitted them): a bitmask,
-- 1 network (a container on the host's network), 2 block IO, 4 memory, 8 pids. Their
-- columns then read 0 (or NULL for rates) but are not data, and the API shows no value.
ALTER TABLE container_stats_latest ADD COLUMN absent BIGINT NOT NULL DEFAULT 0;
