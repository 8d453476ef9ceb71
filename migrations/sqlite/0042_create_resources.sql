-- Kubernetes-style resources (DockerHost, ProfileSession) when no Kubernetes API server
-- holds them: `dockermon-collector apply -f` and `/api/v1/resources`. Spec, status,
-- labels and annotations are JSON. `generation` counts spec changes, `resource_version`
-- every change; `deleting_ns` is a deletion waiting for its cleanup (a finalizer).
CREATE TABLE resources (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    uid TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    spec TEXT NOT NULL,
    status TEXT NULL,
    generation INTEGER NOT NULL,
    resource_version INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    deleting_ns INTEGER NULL
);
CREATE UNIQUE INDEX resources_key ON resources (kind, namespace, name);
