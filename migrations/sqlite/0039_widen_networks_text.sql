-- MySQL's TEXT columns of networks became MEDIUMTEXT (migrations/mysql/0039_widen_networks_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
