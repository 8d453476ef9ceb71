-- Leases for scheduled work: only the replica holding a lease runs that job.
CREATE TABLE leases (
    name VARCHAR(64) NOT NULL,
    holder VARCHAR(128) NOT NULL,
    expires_ns BIGINT NOT NULL,
    PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
