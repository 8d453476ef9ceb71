-- Leases for scheduled work: only the replica holding a lease runs that job.
CREATE TABLE leases (
    name TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_ns INTEGER NOT NULL,
    PRIMARY KEY (name)
) WITHOUT ROWID;
