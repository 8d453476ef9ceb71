-- A monitored Docker host, known across the fleet by its name (its certificate's name).
CREATE TABLE hosts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    engine_id TEXT NOT NULL DEFAULT '',
    docker_version TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    -- The latest host record from the agent, as JSON.
    info TEXT NULL,
    created_ns INTEGER NOT NULL,
    last_seen_ns INTEGER NULL
);
CREATE UNIQUE INDEX hosts_name ON hosts (name);
