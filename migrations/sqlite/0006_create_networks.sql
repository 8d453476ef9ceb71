CREATE TABLE networks (
    host_id INTEGER NOT NULL,
    network_id TEXT NOT NULL,
    name TEXT NOT NULL,
    driver TEXT NOT NULL,
    scope TEXT NOT NULL,
    internal INTEGER NOT NULL,
    created_ns INTEGER NULL,
    labels TEXT NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id, network_id),
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX networks_host_name ON networks (host_id, name);
