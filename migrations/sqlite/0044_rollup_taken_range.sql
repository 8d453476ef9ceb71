-- The rollup job takes the dirty range before recomputing it (dirty_from_ns moves to the end
-- of what it will compute; taken_from_ns keeps the start until the work is done), instead of
-- clearing the mark afterwards if a version had not changed: under steady ingest the version
-- always had, so the mark never cleared and every run recomputed everything since the start.
ALTER TABLE rollup_state ADD COLUMN taken_from_ns INTEGER NOT NULL DEFAULT 9223372036854775807;
ALTER TABLE rollup_state DROP COLUMN version;
