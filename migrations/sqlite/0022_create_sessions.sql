-- Login sessions. An access token names its session; logging out, changing the password
-- or disabling the user revokes the session, which ends the access token at once. Only a
-- hash of the refresh token is kept.
CREATE TABLE sessions (
    id TEXT NOT NULL,
    user_id INTEGER NOT NULL,
    refresh_hash TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    revoked_ns INTEGER NULL,
    PRIMARY KEY (id),
    FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_ns);
