-- As 0035: TEXT (64 KiB) is too small for a bounded record; MEDIUMTEXT holds 16 MiB.
ALTER TABLE volumes MODIFY labels MEDIUMTEXT NOT NULL, MODIFY truncated MEDIUMTEXT NULL;
