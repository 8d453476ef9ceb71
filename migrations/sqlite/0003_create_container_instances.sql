-- Every Docker id a logical container has had, so samples and events that name an old id
-- still land on the right history.
CREATE TABLE container_instances (
    host_id INTEGER NOT NULL,
    docker_id TEXT NOT NULL,
    container_id INTEGER NOT NULL,
    first_seen_ns INTEGER NOT NULL,
    PRIMARY KEY (host_id, docker_id),
    FOREIGN KEY (container_id) REFERENCES containers (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX container_instances_container ON container_instances (container_id);
