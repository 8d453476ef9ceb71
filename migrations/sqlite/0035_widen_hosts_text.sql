-- MySQL's TEXT columns of hosts became MEDIUMTEXT (migrations/mysql/0035_widen_hosts_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
