-- Hosts that were deleted: their agents are refused whatever certificate they present,
-- until a new join token is created for the name.
CREATE TABLE revoked_hosts (
    name TEXT NOT NULL,
    revoked_ns INTEGER NOT NULL,
    PRIMARY KEY (name)
) WITHOUT ROWID;
