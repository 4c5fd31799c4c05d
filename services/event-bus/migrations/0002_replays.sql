-- 0002_replays: replay jobs - a tenant's stored events of some types and
-- time range delivered again to one subscriber, with pollable progress.
--
-- The replay worker picks jobs of every tenant, so the policy also admits
-- a transaction that set app.bus_worker = 'on' (only the worker does, for
-- its own transaction, and it switches to the job's tenant before it
-- reads any event).

CREATE TABLE event_bus.replays (
	id uuid PRIMARY KEY,
	tenant_id uuid NOT NULL,
	subscriber text NOT NULL
		CHECK (subscriber ~ '^[a-z][a-z0-9_-]{0,47}$'),
	type_patterns text[] NOT NULL,
	since timestamptz,
	until timestamptz,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'running', 'completed', 'failed')),
	total bigint NOT NULL DEFAULT 0,
	delivered bigint NOT NULL DEFAULT 0,
	cursor_at timestamptz,
	cursor_id uuid,
	error text,
	created_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replays_open_idx ON event_bus.replays (created_at)
	WHERE status IN ('pending', 'running');

ALTER TABLE event_bus.replays ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_bus.replays FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_bus.replays
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_worker', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.bus_worker', true) = 'on');
