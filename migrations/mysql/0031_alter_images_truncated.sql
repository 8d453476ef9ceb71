-- What the bounds on Docker-provided text cut from the object (JSON: `name`, `labels`,
-- `tags`…), NULL when nothing: no bound applies silently.
ALTER TABLE images ADD COLUMN truncated TEXT NULL;
