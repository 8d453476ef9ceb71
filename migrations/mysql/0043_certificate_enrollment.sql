-- How a certificate's host was admitted: 1 when its agent enrolled with a Kubernetes
-- ServiceAccount token (renewals keep it), 0 for a join token. A node's token may replace
-- an agent that enrolled the same way, never one a person admitted with a join token.
ALTER TABLE agent_certificates ADD COLUMN by_service_account BIGINT NOT NULL DEFAULT 0;
