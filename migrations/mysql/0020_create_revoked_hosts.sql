-- Hosts that were deleted: their agents are refused whatever certificate they present,
-- until a new join token is created for the name.
CREATE TABLE revoked_hosts (
    name VARCHAR(253) NOT NULL,
    revoked_ns BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
