CREATE TABLE images (
    host_id INTEGER NOT NULL,
    image_id TEXT NOT NULL,
    tags TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    labels TEXT NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id, image_id),
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
) WITHOUT ROWID;
