-- Certificates issued to agents by the built-in CA. Revoking a host revokes its certificates.
CREATE TABLE agent_certificates (
    serial VARCHAR(64) NOT NULL,
    host_name VARCHAR(253) NOT NULL,
    fingerprint CHAR(64) NOT NULL,
    not_before_ns BIGINT NOT NULL,
    not_after_ns BIGINT NOT NULL,
    issued_ns BIGINT NOT NULL,
    revoked_ns BIGINT NULL,
    PRIMARY KEY (serial),
    KEY agent_certificates_host (host_name),
    UNIQUE KEY agent_certificates_fingerprint (fingerprint)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
