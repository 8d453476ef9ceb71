-- What the profiler needs of a session: its sampling interval, where it was started (an API
-- request runs until stopped or its duration; a WebSocket subscription until nobody
-- watches), who stopped it, how many samples the agent read, what failed, and a guard that
-- makes "one running session per container" hold across collector replicas: a running
-- session holds its container's id in `running_container`, which is unique, and gives it
-- up (NULL) when it ends.
ALTER TABLE profile_sessions
    ADD COLUMN interval_ms BIGINT NOT NULL DEFAULT 1000,
    ADD COLUMN origin VARCHAR(16) NOT NULL DEFAULT 'api',
    ADD COLUMN stopped_by BIGINT NULL,
    ADD COLUMN samples_read BIGINT NULL,
    ADD COLUMN message VARCHAR(1024) NULL,
    ADD COLUMN running_container BIGINT NULL,
    ADD UNIQUE KEY profile_sessions_running (running_container),
    ADD KEY profile_sessions_host_started (host_id, started_ns);
