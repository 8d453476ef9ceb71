-- One-time join tokens; only a hash of the secret is stored.
CREATE TABLE join_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash TEXT NOT NULL,
    host_name TEXT NOT NULL,
    created_by INTEGER NULL,
    created_ns INTEGER NOT NULL,
    expires_ns INTEGER NOT NULL,
    used_ns INTEGER NULL
);
CREATE UNIQUE INDEX join_tokens_hash ON join_tokens (token_hash);
