-- "Latest stats of a host" now reads the newest raw sample of each container (one primary-key
-- lookup each), so ingest no longer upserts a second row per sample: at 500,000 containers
-- that upsert was most of the database's work (docs/ARCHITECTURE.md, "The newest sample").
DROP TABLE container_stats_latest;
