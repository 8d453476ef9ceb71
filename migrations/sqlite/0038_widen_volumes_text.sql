-- MySQL's TEXT columns of volumes became MEDIUMTEXT (migrations/mysql/0038_widen_volumes_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
