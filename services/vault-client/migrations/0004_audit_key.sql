-- 0004_audit_key: audit's primary key becomes (tenant_id, id), the order
-- every read of it pages in, so each read's audit row updates one btree
-- instead of two (id alone and (tenant_id, id)). id stays unique on its
-- own (bigserial).

CREATE UNIQUE INDEX audit_tenant_id_key ON vault_client.audit (tenant_id, id);
ALTER TABLE vault_client.audit DROP CONSTRAINT audit_pkey;
ALTER TABLE vault_client.audit
	ADD CONSTRAINT audit_pkey PRIMARY KEY USING INDEX audit_tenant_id_key;
DROP INDEX vault_client.audit_tenant_id;
