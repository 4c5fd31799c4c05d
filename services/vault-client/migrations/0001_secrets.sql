-- 0001_secrets: the local backend's encrypted secret store and audit log.
--
-- Values are never stored in clear: each version's ciphertext is
-- nonce || AES-256-GCM(data key, json) || tag, with AAD binding scope,
-- owner, name and version (services/vault-client/crypto.h). The data key
-- is stored only wrapped by the master key, which is never stored.
-- Tenant tables use forced row-level security on tenant_id; platform
-- tables have no tenant and are reached only through platform routes.

CREATE TABLE vault_client.keyring (
	id integer PRIMARY KEY CHECK (id = 1),
	kcv bytea NOT NULL CHECK (length(kcv) = 16),
	wrapped_key bytea NOT NULL CHECK (length(wrapped_key) = 60),
	created_at timestamptz NOT NULL DEFAULT now(),
	rotated_at timestamptz
);

CREATE TABLE vault_client.tenant_secrets (
	tenant_id uuid NOT NULL,
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
	current_version integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE vault_client.tenant_secret_versions (
	tenant_id uuid NOT NULL,
	name text NOT NULL,
	version integer NOT NULL CHECK (version > 0),
	ciphertext bytea, -- NULL once destroyed
	created_at timestamptz NOT NULL DEFAULT now(),
	deletion_time timestamptz,
	destroyed boolean NOT NULL DEFAULT false,
	PRIMARY KEY (tenant_id, name, version),
	FOREIGN KEY (tenant_id, name)
		REFERENCES vault_client.tenant_secrets (tenant_id, name)
		ON DELETE CASCADE,
	CHECK (destroyed = (ciphertext IS NULL))
);

CREATE TABLE vault_client.platform_secrets (
	service text NOT NULL CHECK (service ~ '^[a-z0-9_-]{1,31}$'),
	name text NOT NULL CHECK (length(name) BETWEEN 1 AND 256),
	current_version integer NOT NULL DEFAULT 0,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (service, name)
);

CREATE TABLE vault_client.platform_secret_versions (
	service text NOT NULL,
	name text NOT NULL,
	version integer NOT NULL CHECK (version > 0),
	ciphertext bytea,
	created_at timestamptz NOT NULL DEFAULT now(),
	deletion_time timestamptz,
	destroyed boolean NOT NULL DEFAULT false,
	PRIMARY KEY (service, name, version),
	FOREIGN KEY (service, name)
		REFERENCES vault_client.platform_secrets (service, name)
		ON DELETE CASCADE,
	CHECK (destroyed = (ciphertext IS NULL))
);

CREATE TABLE vault_client.audit (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL,
	at timestamptz NOT NULL DEFAULT now(),
	caller text NOT NULL,
	op text NOT NULL,
	path text NOT NULL,
	allowed boolean NOT NULL,
	reason text NOT NULL,
	request_id text NOT NULL
);
CREATE INDEX audit_tenant_at ON vault_client.audit (tenant_id, at);

CREATE TABLE vault_client.platform_audit (
	id bigserial PRIMARY KEY,
	at timestamptz NOT NULL DEFAULT now(),
	caller text NOT NULL,
	op text NOT NULL,
	path text NOT NULL,
	allowed boolean NOT NULL,
	reason text NOT NULL,
	request_id text NOT NULL
);

ALTER TABLE vault_client.tenant_secrets ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_client.tenant_secrets FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_client.tenant_secrets
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid)
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);

ALTER TABLE vault_client.tenant_secret_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_client.tenant_secret_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_client.tenant_secret_versions
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid)
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);

ALTER TABLE vault_client.audit ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_client.audit FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON vault_client.audit
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid)
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);
