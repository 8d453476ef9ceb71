-- Kubernetes-style resources (DockerHost, ProfileSession) when no Kubernetes API server
-- holds them: `dockermon-collector apply -f` and `/api/v1/resources`. Spec, status,
-- labels and annotations are JSON. `generation` counts spec changes, `resource_version`
-- every change; `deleting_ns` is a deletion waiting for its cleanup (a finalizer).
CREATE TABLE resources (
    id BIGINT NOT NULL AUTO_INCREMENT,
    kind VARCHAR(32) NOT NULL,
    namespace VARCHAR(63) NOT NULL,
    name VARCHAR(253) NOT NULL,
    uid VARCHAR(36) NOT NULL,
    labels MEDIUMTEXT NOT NULL,
    annotations MEDIUMTEXT NOT NULL,
    spec MEDIUMTEXT NOT NULL,
    status MEDIUMTEXT NULL,
    generation BIGINT NOT NULL,
    resource_version BIGINT NOT NULL,
    created_ns BIGINT NOT NULL,
    deleting_ns BIGINT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY resources_key (kind, namespace, name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
