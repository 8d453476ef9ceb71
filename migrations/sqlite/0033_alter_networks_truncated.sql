-- What the bounds on Docker-provided text cut from the object (JSON: `name`, `labels`,
-- `tags`…), NULL when nothing: no bound applies silently.
ALTER TABLE networks ADD COLUMN truncated TEXT NULL;
