-- On-demand 1-second profiles of one container.
CREATE TABLE profile_sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id INTEGER NOT NULL,
    container_id INTEGER NOT NULL,
    docker_id TEXT NOT NULL,
    requested_by INTEGER NULL,
    status TEXT NOT NULL,
    reason TEXT NULL,
    duration_s INTEGER NOT NULL,
    started_ns INTEGER NOT NULL,
    ended_ns INTEGER NULL,
    FOREIGN KEY (host_id) REFERENCES hosts (id) ON DELETE CASCADE
);
CREATE INDEX profile_sessions_container ON profile_sessions (container_id, started_ns);
CREATE INDEX profile_sessions_started ON profile_sessions (started_ns);
