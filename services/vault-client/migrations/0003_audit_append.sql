-- 0003_audit_append: one statement (one round trip, its own transaction)
-- writes a whole batch of audit rows (auditq.h). Rows with a tenant go to
-- audit under that tenant's app.tenant_id, one INSERT per tenant, so
-- row-level security checks every row as before; rows without one go to
-- platform_audit. The setting is transaction-local and cleared at the end.
-- The arrays are parallel: element i of each is row i.
--
-- audit_tenant_at is dropped: every read of audit pages by (tenant_id, id)
-- (audit_tenant_id), and each index costs every read's audit row.

DROP INDEX vault_client.audit_tenant_at;

CREATE FUNCTION vault_client.audit_append(tenants uuid[], callers text[],
					  ops text[], paths text[],
					  alloweds boolean[], reasons text[],
					  request_ids text[])
RETURNS bigint
LANGUAGE plpgsql
SECURITY INVOKER
AS $$
DECLARE
	t uuid;
	n bigint := 0;
	k bigint;
BEGIN
	IF cardinality(tenants) <> cardinality(callers) OR
	   cardinality(tenants) <> cardinality(ops) OR
	   cardinality(tenants) <> cardinality(paths) OR
	   cardinality(tenants) <> cardinality(alloweds) OR
	   cardinality(tenants) <> cardinality(reasons) OR
	   cardinality(tenants) <> cardinality(request_ids) THEN
		RAISE EXCEPTION 'audit_append: arrays of different lengths'
			USING ERRCODE = '22023';
	END IF;
	FOR t IN SELECT DISTINCT u FROM unnest(tenants) AS u
		 WHERE u IS NOT NULL LOOP -- usually one
		PERFORM set_config('app.tenant_id', t::text, true);
		INSERT INTO vault_client.audit (tenant_id, caller, op, path,
						allowed, reason, request_id)
		SELECT r.tid, r.caller, r.op, r.path, r.allowed, r.reason,
		       r.request_id
		FROM unnest(tenants, callers, ops, paths, alloweds, reasons,
			    request_ids)
			AS r(tid, caller, op, path, allowed, reason, request_id)
		WHERE r.tid = t;
		GET DIAGNOSTICS k = ROW_COUNT;
		n := n + k;
	END LOOP;
	PERFORM set_config('app.tenant_id', '', true);
	IF array_position(tenants, NULL) IS NULL THEN
		RETURN n;
	END IF;
	INSERT INTO vault_client.platform_audit (caller, op, path, allowed,
						 reason, request_id)
	SELECT r.caller, r.op, r.path, r.allowed, r.reason, r.request_id
	FROM unnest(tenants, callers, ops, paths, alloweds, reasons,
		    request_ids)
		AS r(tid, caller, op, path, allowed, reason, request_id)
	WHERE r.tid IS NULL;
	GET DIAGNOSTICS k = ROW_COUNT;
	RETURN n + k;
END
$$;
