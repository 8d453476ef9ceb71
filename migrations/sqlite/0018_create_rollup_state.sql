-- Where each rollup must recompute from. Ingest lowers dirty_from_ns to the oldest sample it
-- wrote and bumps version; the rollup job clears dirty_from_ns only if version is unchanged,
-- so a sample written while it ran is never skipped.
CREATE TABLE rollup_state (
    name TEXT NOT NULL,
    dirty_from_ns INTEGER NOT NULL,
    version INTEGER NOT NULL,
    PRIMARY KEY (name)
) WITHOUT ROWID;
