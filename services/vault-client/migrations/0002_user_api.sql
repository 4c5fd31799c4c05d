-- 0002_user_api: what tenant admins' /api/secrets routes need, and the
-- local Transit keys.
--
-- idempotency remembers, per tenant, the answer to a write sent with an
-- Idempotency-Key: request_hash is HMAC-SHA256 (keyed from the service
-- secret, so it says nothing about the value) of the name, the body and
-- the expected version; status 0 while the write runs. Rows older than a
-- day are dropped on the next write of the tenant.
--
-- transit_keys holds each local Transit key (32 random bytes) wrapped with
-- AES-256-GCM under the data key, itself wrapped by the master key: a
-- master-key rotation re-wraps only the data key and every key stays.
-- Transit keys belong to services, not tenants: no tenant column.

CREATE TABLE vault_client.idempotency (
	tenant_id uuid NOT NULL,
	key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
	request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
	status integer NOT NULL DEFAULT 0,
	response text,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key)
);

ALTER TABLE vault_client.idempotency ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_client.idempotency FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_client.idempotency
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid)
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);

-- the tenant audit read pages newest first by id
CREATE INDEX audit_tenant_id ON vault_client.audit (tenant_id, id);

CREATE TABLE vault_client.transit_keys (
	name text PRIMARY KEY CHECK (name ~ '^[a-z0-9_-]{1,64}$'),
	version integer NOT NULL DEFAULT 1 CHECK (version > 0),
	wrapped_key bytea NOT NULL CHECK (length(wrapped_key) = 60),
	created_at timestamptz NOT NULL DEFAULT now()
);
