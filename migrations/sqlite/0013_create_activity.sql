-- The activity log: Docker events and user actions. Each entry has a stable key (a hash of
-- the host and the event's identity) so a re-delivered event is stored once.
CREATE TABLE activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_key TEXT NOT NULL,
    host_id INTEGER NULL,
    time_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    action_name TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NULL,
    container_id INTEGER NULL,
    user_id INTEGER NULL,
    attributes TEXT NOT NULL
);
CREATE UNIQUE INDEX activity_entry_key ON activity (entry_key);
CREATE INDEX activity_time ON activity (time_ns);
CREATE INDEX activity_host_time ON activity (host_id, time_ns);
CREATE INDEX activity_container_time ON activity (container_id, time_ns);
CREATE INDEX activity_user_time ON activity (user_id, time_ns);
CREATE INDEX activity_kind_action_time ON activity (kind, action_name, time_ns);
