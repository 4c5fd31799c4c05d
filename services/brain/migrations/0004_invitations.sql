-- 0004_invitations: one-time invitations into a tenant.
--
-- Tenant data under row-level security, like api_keys. Accepting an
-- invitation is public (the invitee has no token yet): brain looks the
-- invitation up by the SHA-256 of its token in its own transaction with
-- app.invitation_lookup = 'on'. The token itself is shown once.

CREATE TABLE brain.invitations (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	tenant_id uuid NOT NULL REFERENCES brain.tenants (id)
		ON DELETE CASCADE,
	email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
	role text NOT NULL
		CHECK (role IN ('owner', 'admin', 'manager', 'user',
				'readonly')),
	token_hash text NOT NULL UNIQUE,
	invited_by uuid,
	created_at timestamptz NOT NULL DEFAULT now(),
	expires_at timestamptz NOT NULL,
	accepted_at timestamptz,
	revoked_at timestamptz
);
CREATE INDEX invitations_tenant_idx ON brain.invitations (tenant_id);

ALTER TABLE brain.invitations ENABLE ROW LEVEL SECURITY;
ALTER TABLE brain.invitations FORCE ROW LEVEL SECURITY;
CREATE POLICY invitations_tenant ON brain.invitations
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.invitation_lookup', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.invitation_lookup', true) = 'on');
