-- 0002_identity: tenant profile fields, users, memberships, refresh tokens.
--
-- Platform data (no row-level security): brain alone reads and writes
-- these, and they span tenants by nature (a user may belong to several
-- tenants; sign-in happens before any tenant is known). Other services'
-- roles get no grant on the new tables.

ALTER TABLE brain.tenants
	ADD COLUMN primary_domain text
		CHECK (primary_domain = lower(primary_domain)
		       AND length(primary_domain) <= 253),
	ADD COLUMN limits jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(limits) = 'object'),
	ADD COLUMN services_enabled text[] NOT NULL
		DEFAULT '{crm,cms}',
	ADD COLUMN branding jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(branding) = 'object'),
	ADD COLUMN settings jsonb NOT NULL DEFAULT '{}'
		CHECK (jsonb_typeof(settings) = 'object'),
	ADD COLUMN version bigint NOT NULL DEFAULT 1,
	ADD COLUMN purge_after timestamptz;

CREATE TABLE brain.users (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	email text NOT NULL CHECK (length(email) BETWEEN 3 AND 254),
	name text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
	password_hash text NOT NULL,
	is_super_admin boolean NOT NULL DEFAULT false,
	status text NOT NULL DEFAULT 'active'
		CHECK (status IN ('active', 'disabled')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower_idx ON brain.users (lower(email));

CREATE TABLE brain.memberships (
	user_id uuid NOT NULL REFERENCES brain.users (id) ON DELETE CASCADE,
	tenant_id uuid NOT NULL REFERENCES brain.tenants (id)
		ON DELETE CASCADE,
	role text NOT NULL
		CHECK (role IN ('owner', 'admin', 'manager', 'user',
				'readonly')),
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (user_id, tenant_id)
);
CREATE INDEX memberships_tenant_idx ON brain.memberships (tenant_id);

-- One row per refresh token ever issued; a family is one sign-in's chain
-- of rotations. token_hash is the SHA-256 of the opaque token (hex).
CREATE TABLE brain.refresh_tokens (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	family_id uuid NOT NULL,
	user_id uuid NOT NULL REFERENCES brain.users (id) ON DELETE CASCADE,
	tenant_id uuid REFERENCES brain.tenants (id) ON DELETE CASCADE,
	token_hash text NOT NULL UNIQUE,
	expires_at timestamptz NOT NULL,
	used_at timestamptz,
	revoked_at timestamptz,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX refresh_tokens_family_idx ON brain.refresh_tokens (family_id);
