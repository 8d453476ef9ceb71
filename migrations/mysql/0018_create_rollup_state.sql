-- Where each rollup must recompute from. Ingest lowers dirty_from_ns to the oldest sample it
-- wrote and bumps version; the rollup job clears dirty_from_ns only if version is unchanged,
-- so a sample written while it ran is never skipped.
CREATE TABLE rollup_state (
    name VARCHAR(16) NOT NULL,
    dirty_from_ns BIGINT NOT NULL,
    version BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
