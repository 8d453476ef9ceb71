-- As 0035: TEXT (64 KiB) is too small for a bounded record; MEDIUMTEXT holds 16 MiB.
ALTER TABLE host_usage MODIFY detail MEDIUMTEXT NOT NULL;
