-- MySQL's TEXT columns of images became MEDIUMTEXT (migrations/mysql/0037_widen_images_text.sql); SQLite's TEXT
-- has no such limit. Kept so both backends share one migration history.
SELECT 1;
