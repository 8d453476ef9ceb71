-- State Docker keeps only in `docker inspect`, so that it is known whatever events were
-- missed: whether the kernel's OOM killer ended the last run (`State.OOMKilled`). And what
-- the bounds on container-controlled text cut from the record (`truncated`, JSON, NULL when
-- nothing), with the count of labels left out on its own so that a label filter can say it
-- may have missed containers.
ALTER TABLE containers
    ADD COLUMN oom_killed BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN truncated TEXT NULL,
    ADD COLUMN labels_dropped BIGINT NOT NULL DEFAULT 0;
