-- 0005_webhook_rotation: rotating a webhook's signing secret. The old
-- secret is kept until previous_secret_until; until then every delivery
-- carries a signature under each secret (Standard Webhooks lets
-- webhook-signature hold several, space-separated), so a receiver can
-- switch to the new secret without failing a delivery.
ALTER TABLE event_bus.webhooks
	ADD COLUMN previous_secret text,
	ADD COLUMN previous_secret_until timestamptz;

CREATE OR REPLACE FUNCTION event_bus.webhook_json(w event_bus.webhooks)
RETURNS json LANGUAGE sql STABLE AS $$
	SELECT json_build_object('id', w.id, 'url', w.url,
		'event_types', w.event_types, 'description', w.description,
		'active', w.active, 'failing', w.failing,
		'failing_since', event_bus.rfc3339(w.failing_since),
		'previous_secret_until', CASE WHEN w.previous_secret_until >
			now() THEN event_bus.rfc3339(w.previous_secret_until)
			END,
		'created_at', event_bus.rfc3339(w.created_at),
		'updated_at', event_bus.rfc3339(w.updated_at),
		'version', w.version)
$$;
