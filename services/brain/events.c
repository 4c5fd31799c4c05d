/*
 * events.c - tenant events through libcommon's bus client: one envelope
 * (proto/events/envelope.schema.json) on the tenant's own stream, with
 * aggregate "tenant" and the tenant as it now is for data.
 */
#include "brain.h"

#include "common/bus.h"
#include "common/tenant.h"

#include <stdio.h>

#include "common/banned.h"

int
brain_publish(const struct brain *b, const char *type, const char *tenant_id,
	      const cJSON *data, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *env;
	int rc;

	(void)b;
	cm_tenant_cache_invalidate(tenant_id);
	env = cm_bus_envelope_new(type, "brain", "tenant", tenant_id,
				  data ? cJSON_Duplicate(data, true) : NULL);
	if (!env) {
		snprintf(errbuf, CM_ERRBUF_LEN, "no randomness for event id");
		return CM_EIO;
	}
	rc = cm_bus_publish(tenant_id, env, NULL, errbuf);
	cJSON_Delete(env);
	return rc;
}
