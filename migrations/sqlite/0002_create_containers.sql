-- A logical container: what people think of as "the web container" of a host. Its identity
-- (compose project/service/number, else the name) survives re-creation, so its history is one
-- series even though Docker ids change. Removed containers keep their row and history.
CREATE TABLE containers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id INTEGER NOT NULL,
    identity TEXT NOT NULL,
    docker_id TEXT NOT NULL,
    name TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    image_id TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    health TEXT NULL,
    restart_count INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER NULL,
    created_ns INTEGER NOT NULL,
    started_ns INTEGER NULL,
    finished_ns INTEGER NULL,
    compose_project TEXT NULL,
    compose_service TEXT NULL,
    compose_number INTEGER NULL,
    -- The whole container record (labels, ports, mounts, networks) as JSON.
    detail TEXT NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    last_seen_ns INTEGER NOT NULL,
    removed_ns INTEGER NULL,
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX containers_identity ON containers (host_id, identity);
CREATE INDEX containers_host_name ON containers (host_id, name);
CREATE INDEX containers_host_compose ON containers (host_id, compose_project, compose_service);
