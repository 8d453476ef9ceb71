-- The activity log: Docker events and user actions. Each entry has a stable key (a hash of
-- the host and the event's identity) so a re-delivered event is stored once.
CREATE TABLE activity (
    id BIGINT NOT NULL AUTO_INCREMENT,
    entry_key CHAR(64) NOT NULL,
    host_id BIGINT NULL,
    time_ns BIGINT NOT NULL,
    kind VARCHAR(32) NOT NULL,
    action VARCHAR(1024) NOT NULL,
    action_name VARCHAR(64) NOT NULL,
    actor_id VARCHAR(256) NOT NULL,
    actor_name VARCHAR(256) NULL,
    container_id BIGINT NULL,
    user_id BIGINT NULL,
    attributes TEXT NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY activity_entry_key (entry_key),
    KEY activity_time (time_ns),
    KEY activity_host_time (host_id, time_ns),
    KEY activity_container_time (container_id, time_ns),
    KEY activity_user_time (user_id, time_ns),
    KEY activity_kind_action_time (kind, action_name, time_ns)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
