-- 0001_events: the audit trail - every event on the bus, stored once.
--
-- Partitioned by month on occurred_at; the service creates this month's
-- and the next two months' partitions at start-up and every hour
-- (event_bus.ensure_month), and the DEFAULT partition keeps anything
-- outside them, so no event is ever refused for its date. The primary key
-- (event_id, occurred_at) includes the partition key, as PostgreSQL
-- requires; a publisher sets both once per event, so a redelivered or
-- republished event hits the key and is stored once.

CREATE TABLE event_bus.events (
	event_id uuid NOT NULL,
	tenant_id uuid NOT NULL,
	event_type text NOT NULL CHECK (length(event_type) <= 64),
	event_version integer NOT NULL,
	source_service text NOT NULL,
	occurred_at timestamptz NOT NULL,
	correlation_id text,
	causation_id text,
	aggregate_type text NOT NULL,
	aggregate_id text NOT NULL,
	priority text NOT NULL
		CHECK (priority IN ('low', 'normal', 'high', 'critical')),
	envelope jsonb NOT NULL,
	stream_id text NOT NULL,
	recorded_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

CREATE INDEX events_tenant_time_idx
	ON event_bus.events (tenant_id, occurred_at DESC, event_id DESC);
CREATE INDEX events_tenant_type_idx
	ON event_bus.events (tenant_id, event_type, occurred_at DESC);
CREATE INDEX events_tenant_aggregate_idx
	ON event_bus.events (tenant_id, aggregate_type, aggregate_id,
			     occurred_at DESC);
CREATE INDEX events_tenant_correlation_idx
	ON event_bus.events (tenant_id, correlation_id)
	WHERE correlation_id IS NOT NULL;

-- RLS on the parent (every query goes through it) and on each partition
-- (so a partition named directly is no way around it).
CREATE FUNCTION event_bus.protect(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
	EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
	IF NOT EXISTS (SELECT FROM pg_policies
		       WHERE schemaname || '.' || tablename = t::text
			 AND policyname = 'tenant_isolation') THEN
		EXECUTE format('CREATE POLICY tenant_isolation ON %s '
			'USING (tenant_id = NULLIF(current_setting('
			'''app.tenant_id'', true), '''')::uuid) '
			'WITH CHECK (tenant_id = NULLIF(current_setting('
			'''app.tenant_id'', true), '''')::uuid)', t);
	END IF;
END
$$;

CREATE TABLE event_bus.events_default PARTITION OF event_bus.events DEFAULT;
SELECT event_bus.protect('event_bus.events');
SELECT event_bus.protect('event_bus.events_default');

-- ensure_month - the partition holding month m (any day of it); a no-op
-- when it exists. Fails if the DEFAULT partition already holds rows of
-- that month (the caller logs it and the rows stay where they are).
CREATE FUNCTION event_bus.ensure_month(m date) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	lo date := date_trunc('month', m)::date;
	name text := 'events_' || to_char(lo, 'YYYY_MM');
BEGIN
	IF to_regclass('event_bus.' || name) IS NOT NULL THEN
		RETURN;
	END IF;
	EXECUTE format('CREATE TABLE event_bus.%I PARTITION OF '
		'event_bus.events FOR VALUES FROM (%L) TO (%L)', name,
		lo::text || ' 00:00:00+00',
		(lo + interval '1 month')::date::text || ' 00:00:00+00');
	PERFORM event_bus.protect(('event_bus.' || name)::regclass);
END
$$;
