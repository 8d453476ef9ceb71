-- Certificates issued to agents by the built-in CA. Revoking a host revokes its certificates.
CREATE TABLE agent_certificates (
    serial TEXT NOT NULL,
    host_name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    not_before_ns INTEGER NOT NULL,
    not_after_ns INTEGER NOT NULL,
    issued_ns INTEGER NOT NULL,
    revoked_ns INTEGER NULL,
    PRIMARY KEY (serial)
) WITHOUT ROWID;
CREATE INDEX agent_certificates_host ON agent_certificates (host_name);
CREATE UNIQUE INDEX agent_certificates_fingerprint ON agent_certificates (fingerprint);
