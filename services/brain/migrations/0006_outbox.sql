-- 0006_outbox: the transactional outbox of tenant events (common/bus.h,
-- services/brain/events.c). A tenant change inserts its events here in
-- its own transaction; the relay thread publishes them and sets
-- published_at. Tenant data: row-level security on tenant_id, and only the
-- relay (app.bus_relay, set for its own transaction) sees every tenant's.
-- No foreign key to brain.tenants: a purged tenant's last event must
-- outlive its row.
CREATE TABLE brain.outbox (
	id bigserial PRIMARY KEY,
	tenant_id uuid NOT NULL,
	event_id uuid NOT NULL UNIQUE,
	event text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	published_at timestamptz
);
CREATE INDEX outbox_unpublished_idx ON brain.outbox (id)
	WHERE published_at IS NULL;

ALTER TABLE brain.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE brain.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY outbox_tenant ON brain.outbox
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_relay', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.bus_relay', true) = 'on');
