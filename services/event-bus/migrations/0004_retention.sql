-- 0004_retention: what the retention job (retention.c) may remove.
--
-- Audit rows older than BUS_AUDIT_RETENTION_DAYS go: whole monthly
-- partitions are dropped (event_bus.drop_months_before), and the rest are
-- deleted row by row through these policies, which admit the retention
-- job's own transaction (app.bus_worker = 'on') and nothing else. A DELETE
-- with a WHERE clause must also see the rows, hence the SELECT policy;
-- INSERT and UPDATE stay tenant-scoped. (The replay worker sets
-- app.bus_worker only to pick a job and clears it before it reads events.)

CREATE POLICY retention_read ON event_bus.events FOR SELECT
	USING (current_setting('app.bus_worker', true) = 'on');
CREATE POLICY retention_delete ON event_bus.events FOR DELETE
	USING (current_setting('app.bus_worker', true) = 'on');

-- drop_months_before - drop the monthly partitions that end on or before
-- cutoff; the number dropped.
CREATE FUNCTION event_bus.drop_months_before(cutoff timestamptz)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
	part record;
	n integer := 0;
BEGIN
	FOR part IN
		SELECT c.relname FROM pg_inherits i
		JOIN pg_class c ON c.oid = i.inhrelid
		JOIN pg_namespace s ON s.oid = c.relnamespace
		WHERE i.inhparent = 'event_bus.events'::regclass
		  AND s.nspname = 'event_bus'
		  AND c.relname ~ '^events_[0-9]{4}_[0-9]{2}$'
	LOOP
		IF (to_date(substr(part.relname, 8), 'YYYY_MM')
		    + interval '1 month') AT TIME ZONE 'UTC' <= cutoff THEN
			EXECUTE format('DROP TABLE event_bus.%I', part.relname);
			n := n + 1;
		END IF;
	END LOOP;
	RETURN n;
END
$$;
