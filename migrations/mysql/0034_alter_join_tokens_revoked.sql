-- Join tokens can be revoked before they are used (`token revoke`, DELETE
-- /api/v1/join-tokens/{id}): an enrollment with one is refused as revoked.
ALTER TABLE join_tokens ADD COLUMN revoked_ns BIGINT NULL;
