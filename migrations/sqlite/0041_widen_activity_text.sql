-- MySQL's TEXT columns of activity became MEDIUMTEXT (migrations/mysql/0041_widen_activity_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
