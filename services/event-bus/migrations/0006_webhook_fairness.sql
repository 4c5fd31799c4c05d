-- 0006_webhook_fairness: the delivery threads take tenants in turn
-- (webhook_store.c, bus_wh_claim): "the first tenant after the last one
-- served that has a due delivery" is a short walk of this index.
CREATE INDEX webhook_deliveries_rr_idx
	ON event_bus.webhook_deliveries (tenant_id, next_attempt_at)
	WHERE status = 'pending';
