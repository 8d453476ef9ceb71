-- As 0035: TEXT (64 KiB) is too small for a bounded record; MEDIUMTEXT holds 16 MiB.
ALTER TABLE images MODIFY tags MEDIUMTEXT NOT NULL, MODIFY labels MEDIUMTEXT NOT NULL, MODIFY truncated MEDIUMTEXT NULL;
