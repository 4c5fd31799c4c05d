-- 0003_webhooks: per-tenant webhook subscriptions, their deliveries (the
-- retry schedule lives here, so a restart loses nothing), and the
-- Idempotency-Key records of creates.
--
-- The delivery workers claim due deliveries of every tenant, so the
-- policies of webhooks and webhook_deliveries also admit a transaction
-- that set app.bus_worker = 'on' (only the workers and the retention job
-- do, for their own transaction; the event-bus role is NOBYPASSRLS and
-- no tenant-facing query ever sets it).

CREATE TABLE event_bus.webhooks (
	id uuid PRIMARY KEY,
	tenant_id uuid NOT NULL,
	url text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
	event_types text[] NOT NULL
		CHECK (cardinality(event_types) BETWEEN 1 AND 16),
	-- event_types as LIKE patterns ("lead.*" -> "lead.%"), for fan-out
	type_likes text[] NOT NULL,
	description text NOT NULL DEFAULT ''
		CHECK (length(description) <= 500),
	-- "whsec_" + base64 of 32 random bytes; shown once at creation
	secret text NOT NULL,
	active boolean NOT NULL DEFAULT true,
	-- set when a delivery was dead-lettered, cleared by the next success
	failing boolean NOT NULL DEFAULT false,
	failing_since timestamptz,
	version bigint NOT NULL DEFAULT 1,
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX webhooks_tenant_idx
	ON event_bus.webhooks (tenant_id, created_at DESC, id DESC);
CREATE INDEX webhooks_active_idx
	ON event_bus.webhooks (tenant_id) WHERE active;

-- One row per (subscription, event): the unit of delivery, retried until
-- it succeeds or runs out of attempts (status dead). webhook-id on the
-- wire is this id, the same for every attempt.
CREATE TABLE event_bus.webhook_deliveries (
	id uuid PRIMARY KEY,
	tenant_id uuid NOT NULL,
	webhook_id uuid NOT NULL
		REFERENCES event_bus.webhooks (id) ON DELETE CASCADE,
	event_id uuid NOT NULL,
	event_type text NOT NULL,
	payload text NOT NULL,
	status text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'succeeded', 'dead')),
	attempts integer NOT NULL DEFAULT 0,
	-- due time while pending; a claimed delivery's lease end
	next_attempt_at timestamptz,
	last_status integer,
	last_error text,
	attempt_log jsonb NOT NULL DEFAULT '[]',
	created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	finished_at timestamptz,
	UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due_idx
	ON event_bus.webhook_deliveries (next_attempt_at)
	WHERE status = 'pending';
CREATE INDEX webhook_deliveries_list_idx
	ON event_bus.webhook_deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX webhook_deliveries_finished_idx
	ON event_bus.webhook_deliveries (finished_at)
	WHERE finished_at IS NOT NULL;

-- Idempotency-Key records: same key + same body -> the stored answer.
CREATE TABLE event_bus.idempotency (
	tenant_id uuid NOT NULL,
	key text NOT NULL CHECK (length(key) <= 200),
	request_hash text NOT NULL,
	status integer NOT NULL,
	response text NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (tenant_id, key)
);
CREATE INDEX idempotency_created_idx ON event_bus.idempotency (created_at);

ALTER TABLE event_bus.webhooks ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_bus.webhooks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_bus.webhooks
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_worker', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.bus_worker', true) = 'on');

ALTER TABLE event_bus.webhook_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_bus.webhook_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_bus.webhook_deliveries
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_worker', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid
		    OR current_setting('app.bus_worker', true) = 'on');

ALTER TABLE event_bus.idempotency ENABLE ROW LEVEL SECURITY;
ALTER TABLE event_bus.idempotency FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON event_bus.idempotency
	USING (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				  '')::uuid
	       OR current_setting('app.bus_worker', true) = 'on')
	WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true),
				       '')::uuid);

-- How the API shows them (timestamps RFC 3339 UTC; never the secret).
CREATE FUNCTION event_bus.rfc3339(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
	SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
$$;

CREATE FUNCTION event_bus.webhook_json(w event_bus.webhooks) RETURNS json
LANGUAGE sql STABLE AS $$
	SELECT json_build_object('id', w.id, 'url', w.url,
		'event_types', w.event_types, 'description', w.description,
		'active', w.active, 'failing', w.failing,
		'failing_since', event_bus.rfc3339(w.failing_since),
		'created_at', event_bus.rfc3339(w.created_at),
		'updated_at', event_bus.rfc3339(w.updated_at),
		'version', w.version)
$$;

CREATE FUNCTION event_bus.delivery_json(d event_bus.webhook_deliveries)
RETURNS json LANGUAGE sql STABLE AS $$
	SELECT json_build_object('id', d.id, 'webhook_id', d.webhook_id,
		'event_id', d.event_id, 'event_type', d.event_type,
		'status', d.status, 'attempts', d.attempts,
		'next_attempt_at', CASE WHEN d.status = 'pending'
			THEN event_bus.rfc3339(d.next_attempt_at) END,
		'last_status', d.last_status, 'last_error', d.last_error,
		'attempt_log', d.attempt_log,
		'created_at', event_bus.rfc3339(d.created_at),
		'finished_at', event_bus.rfc3339(d.finished_at))
$$;

-- epoch_us - microseconds since the epoch (the list cursors).
CREATE FUNCTION event_bus.epoch_us(t timestamptz) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
	SELECT (extract(epoch FROM t) * 1000000)::bigint
$$;
