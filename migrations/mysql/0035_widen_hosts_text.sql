-- TEXT holds at most 64 KiB, and a record within proto::limits can hold more (64 labels of
-- 1 KiB, 128 mounts, 128 tags): MySQL refused such a row in strict mode, and its frame could
-- never be stored. MEDIUMTEXT (16 MiB) holds anything a 16 MiB frame can carry. One table
-- per file, as every migration here.
ALTER TABLE hosts MODIFY info MEDIUMTEXT NULL;
