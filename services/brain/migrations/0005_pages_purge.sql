-- 0005_pages_purge: indexes for the keyset pages of members, API keys and
-- invitations (created_at, id within a tenant) and for the purge job's
-- scan of soft-deleted tenants past their grace.
CREATE INDEX memberships_tenant_page_idx
	ON brain.memberships (tenant_id, created_at, user_id);
CREATE INDEX api_keys_tenant_page_idx
	ON brain.api_keys (tenant_id, created_at, id);
CREATE INDEX invitations_tenant_page_idx
	ON brain.invitations (tenant_id, created_at, id);
CREATE INDEX tenants_purge_idx ON brain.tenants (purge_after)
	WHERE deleted_at IS NOT NULL;
