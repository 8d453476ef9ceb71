-- MySQL's TEXT columns of host_usage became MEDIUMTEXT (migrations/mysql/0040_widen_host_usage_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
