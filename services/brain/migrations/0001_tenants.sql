-- 0001_tenants: the tenant registry every service resolves tenants from.
--
-- brain.tenants and brain.tenant_domains are platform data, not tenant
-- data: they say which tenants exist. Brain alone writes them; every other
-- service's role (member of bz_services) may only SELECT them, to resolve a
-- request's tenant. Tenant-owned tables in every schema use row-level
-- security on tenant_id instead (see docs/architecture.md).

CREATE TABLE brain.tenants (
	id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
	slug text NOT NULL UNIQUE
		CHECK (slug ~ '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'),
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
	status text NOT NULL DEFAULT 'trial'
		CHECK (status IN ('trial', 'active', 'suspended', 'inactive')),
	subscription_tier text NOT NULL DEFAULT 'free'
		CHECK (subscription_tier IN
		       ('free', 'starter', 'professional', 'enterprise')),
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	deleted_at timestamptz
);

CREATE TABLE brain.tenant_domains (
	domain text PRIMARY KEY
		CHECK (domain = lower(domain) AND length(domain) <= 253),
	tenant_id uuid NOT NULL REFERENCES brain.tenants (id)
		ON DELETE CASCADE,
	verified boolean NOT NULL DEFAULT false,
	created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domains_tenant_idx ON brain.tenant_domains (tenant_id);

GRANT USAGE ON SCHEMA brain TO bz_services;
GRANT SELECT ON brain.tenants, brain.tenant_domains TO bz_services;
