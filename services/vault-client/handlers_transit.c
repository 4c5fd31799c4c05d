/*
 * handlers_transit.c - POST /v1/transit/{encrypt,decrypt}/:key for
 * platform services: encryption as a service (transit.h).
 *
 * A service may use only its own keys (policy.c: "<service>" and
 * "<service>-..."). Transit keys are platform-level: a request with
 * X-Tenant-ID is refused, and every use is recorded in platform_audit
 * (op "encrypt" / "decrypt", path "transit/<key>") before the work.
 * Plaintexts never reach a log line; answers holding them are zeroed.
 */
#include "vault_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/auth.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "transit.h"

#include "common/banned.h"

struct tcall {
	struct cm_req *req;
	struct vc *vc;
	const char *op, *caller, *key;
	char full[VC_TRANSIT_KEY_MAX + 16];
};

static int
trefuse(struct tcall *c, int status, const char *code, const char *msg)
{
	vc_audit(c->req, VC_SCOPE_PLATFORM, c->caller, c->op, c->full, false,
		 code);
	return cm_req_fail(c->req, status, code, "%s", msg);
}

static int
tcall_begin(struct tcall *c, struct cm_req *req, void *arg, bool encrypt)
{
	memset(c, 0, sizeof(*c));
	c->req = req;
	c->vc = vc_of(arg);
	c->op = encrypt ? "encrypt" : "decrypt";
	c->caller = cm_req_principal(req)->sub;
	c->key = cm_req_param(req, "key");
	snprintf(c->full, sizeof(c->full), "transit/%.*s", VC_TRANSIT_KEY_MAX,
		 c->key ? c->key : "");
	vc_sanitise(c->full, c->full, sizeof(c->full));
	if (cm_req_header(req, "X-Tenant-ID"))
		return trefuse(c, 403, "tenant_context",
			       "transit keys are platform-level: send no "
			       "X-Tenant-ID");
	if (!vc_transit_key_valid(c->key))
		return trefuse(c, 400, "invalid_key",
			       "key names are 1-64 bytes of [a-z0-9_-]");
	if (!vc_transit_allows(c->caller, c->key))
		return trefuse(c, 403, "forbidden",
			       "a service may use only its own transit keys");
	if (vc_audit(req, VC_SCOPE_PLATFORM, c->caller, c->op, c->full, true,
		     "allowed") < 0)
		return cm_req_fail(req, 503, "audit_unavailable",
				   "the access could not be audited");
	return 0;
}

/* The body's one string member `name`, at most max bytes. */
static int
body_string(struct cm_req *req, cJSON **body, const char *name, size_t max,
	    const char **out)
{
	const cJSON *v;
	int status;

	if ((status = cm_req_json(req, body)))
		return status;
	v = cJSON_GetObjectItemCaseSensitive(*body, name);
	if (!cJSON_IsString(v))
		return cm_req_fail(req, 400, "validation_failed",
				   "%s must be a string", name);
	if (strlen(v->valuestring) > max)
		return cm_req_fail(req, 413, "payload_too_large",
				   "%s is too large", name);
	*out = v->valuestring;
	return 0;
}

static int
transit_failed(struct tcall *c, int rc, const char *errbuf, bool encrypt)
{
	if (rc == CM_EINVAL && encrypt)
		return cm_req_fail(c->req, 400, "invalid_plaintext",
				   "plaintext must be base64 of at most %d "
				   "bytes",
				   VC_TRANSIT_DATA_MAX);
	if (rc == CM_EINVAL)
		return cm_req_fail(c->req, 400, "invalid_ciphertext",
				   "the ciphertext does not decrypt with this "
				   "key");
	return vc_store_failed(c->req, c->op, c->full, rc, errbuf);
}

static void
do_transit(struct cm_req *req, void *arg, bool encrypt)
{
	char errbuf[CM_ERRBUF_LEN] = "";
	cJSON *body = NULL, *out = NULL;
	const char *in = NULL;
	char *text = NULL, *res = NULL;
	struct tcall c;
	int status, version = 0, rc;

	if ((status = tcall_begin(&c, req, arg, encrypt)) ||
	    (status = body_string(
		     req, &body, encrypt ? "plaintext" : "ciphertext",
		     encrypt ? VC_TRANSIT_B64_MAX : VC_TRANSIT_CT_MAX, &in)))
		goto out;
	rc = encrypt ? vc_transit_encrypt(c.vc, c.key, in, &res, &version,
					  errbuf)
		     : vc_transit_decrypt(c.vc, c.key, in, &res, errbuf);
	if (rc < 0) {
		status = transit_failed(&c, rc, errbuf, encrypt);
		goto out;
	}
	out = cJSON_CreateObject();
	cJSON_AddStringToObject(out, encrypt ? "ciphertext" : "plaintext", res);
	if (encrypt)
		cJSON_AddNumberToObject(out, "key_version", version);
	text = cJSON_PrintUnformatted(out);
	status = 500;
	if (text) {
		vc_reply_secret(req, text, strlen(text));
		text = NULL;
	}
out:
	if (!cm_req_replied(req))
		cm_req_reply_json(req, status, NULL);
	if (res) {
		cm_memzero(res, strlen(res));
		free(res);
	}
	vc_json_zero_delete(out);
	vc_json_zero_delete(body);
}

void
vc_handle_transit_encrypt(struct cm_req *req, void *arg)
{
	do_transit(req, arg, true);
}

void
vc_handle_transit_decrypt(struct cm_req *req, void *arg)
{
	do_transit(req, arg, false);
}
