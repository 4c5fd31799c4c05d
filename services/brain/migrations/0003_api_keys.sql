-- 0003_api_keys: machine credentials of a tenant.
--
-- Tenant data, so row-level security applies: tenant admins manage keys
-- inside cm_db_tx_tenant. The one cross-tenant read is the sign-in of a
-- key by its hash, before any tenant is known; brain does it in its own
-- transaction with app.api_key_lookup = 'on' (the same pattern as the bus
-- outbox relay). key_hash is the SHA-256 (hex) of the whole key; the key
-- itself is shown once and never stored.

CREATE TABLE brain.api_keys (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES brain.tenants (id)
		ON DELETE CASCADE,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
	prefix text NOT NULL,
	key_hash text NOT NULL UNIQUE,
	scopes text[] NOT NULL,
	created_by uuid,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz,
	last_used_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX api_keys_tenant_idx ON brain.api_keys (tenant_id);

ALTER TABLE brain.api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE brain.api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY api_keys_tenant ON brain.api_keys
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.api_key_lookup', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.api_key_lookup', true) = 'on');
