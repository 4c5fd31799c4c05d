-- 0007_idempotency: Idempotency-Key records of the tenant creates
-- (members, API keys, invitations; common/idem.h), written in the
-- create's own transaction. Tenant data: row-level security on tenant_id.
-- A stored answer never holds an API key or invitation token.
CREATE TABLE brain.idempotency_keys (
	tenant_id uuid NOT NULL,
	key text NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
	scope text NOT NULL,
	request_hash text NOT NULL,
	status integer NOT NULL,
	response text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_keys_created_idx
	ON brain.idempotency_keys (created_at);

ALTER TABLE brain.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE brain.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_tenant ON brain.idempotency_keys
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid)
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);
