-- MySQL's TEXT columns of containers became MEDIUMTEXT (migrations/mysql/0036_widen_containers_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
