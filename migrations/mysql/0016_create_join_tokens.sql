-- One-time join tokens; only a hash of the secret is stored.
CREATE TABLE join_tokens (
    id BIGINT NOT NULL AUTO_INCREMENT,
    token_hash CHAR(64) NOT NULL,
    host_name VARCHAR(253) NOT NULL,
    created_by BIGINT NULL,
    created_ns BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL,
    used_ns BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY join_tokens_hash (token_hash)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
