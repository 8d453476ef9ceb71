CREATE TABLE volumes (
    host_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    mountpoint TEXT NOT NULL,
    scope TEXT NOT NULL,
    created_ns INTEGER NULL,
    labels TEXT NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id, name),
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) WITHOUT ROWID;
