-- Login sessions. An access token names its session; logging out, changing the password
-- or disabling the user revokes the session, which ends the access token at once. Only a
-- hash of the refresh token is kept.
CREATE TABLE sessions (
    id VARCHAR(64) NOT NULL,
    user_id BIGINT NOT NULL,
    refresh_hash VARCHAR(64) NOT NULL,
    created_ns BIGINT NOT NULL,
    expires_ns BIGINT NOT NULL,
    revoked_ns BIGINT NULL,
    PRIMARY KEY (id),
    KEY sessions_user (user_id),
    KEY sessions_expires (expires_ns),
    CONSTRAINT sessions_user_fk FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
