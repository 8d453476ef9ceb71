-- What the profiler needs of a session: its sampling interval, where it was started (an API
-- request runs until stopped or its duration; a WebSocket subscription until nobody
-- watches), who stopped it, how many samples the agent read, what failed, and a guard that
-- makes "one running session per container" hold across collector replicas: a running
-- session holds its container's id in `running_container`, which is unique, and gives it
-- up (NULL) when it ends.
ALTER TABLE profile_sessions ADD COLUMN interval_ms INTEGER NOT NULL DEFAULT 1000;
ALTER TABLE profile_sessions ADD COLUMN origin TEXT NOT NULL DEFAULT 'api';
ALTER TABLE profile_sessions ADD COLUMN stopped_by INTEGER NULL;
ALTER TABLE profile_sessions ADD COLUMN samples_read INTEGER NULL;
ALTER TABLE profile_sessions ADD COLUMN message TEXT NULL;
ALTER TABLE profile_sessions ADD COLUMN running_container INTEGER NULL;
CREATE UNIQUE INDEX profile_sessions_running ON profile_sessions (running_container);
CREATE INDEX profile_sessions_host_started ON profile_sessions (host_id, started_ns);
