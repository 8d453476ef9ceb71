-- Docker writes the command line of `docker exec` and of health checks into the action of
-- exec events, and earlier versions stored it. Command lines may carry secrets and are no
-- longer kept (see proto/src/redact.rs): cut the stored ones to the action's name.
UPDATE activity SET action = action_name
WHERE action_name IN ('exec_create', 'exec_start', 'exec_detach') AND action <> action_name;
