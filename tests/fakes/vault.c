/*
 * vault.c - a fake HashiCorp Vault for tests: exactly the subset in
 * ../shared/reference/vault.md that vault-client speaks.
 *
 *   vault PORT   (listens on 127.0.0.1:PORT)
 *
 * Speaks: GET/HEAD /v1/sys/health (standbyok, sealedcode, uninitcode,
 * activecode), POST /v1/auth/approle/login, GET auth/token/lookup-self,
 * POST auth/token/renew-self, KV v2 under the mount FAKE_VAULT_KV_MOUNT
 * (default "secret": data read/write with cas/delete, delete, undelete,
 * destroy, metadata read/list/delete), transit encrypt/decrypt (AES-256-GCM
 * under a key of its own per key name, "vault:v1:<base64>"). Error bodies
 * {"errors":[...]} and status codes as Vault sends them. Settings:
 * FAKE_VAULT_ROLE_ID, FAKE_VAULT_SECRET_ID, FAKE_VAULT_TOKEN_TTL (s, default
 * 3600), FAKE_VAULT_MAX_TTL (default 86400), FAKE_VAULT_BATCH (tokens not
 * renewable).
 *
 * Test controls (not Vault's): POST /_fake/state with any of
 * {"sealed","standby","initialized": bool, "fail_next": N, "fail_status":
 * S} makes the next N /v1 requests answer S (default 502); GET /_fake/stats
 * -> {"logins","renewals","requests","tokens"}. Single-threaded.
 */
#include <sys/queue.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cJSON.h>

#include "common/buf.h"
#include "common/json.h"
#include "common/mem.h"

#include "common/banned.h"

#define MAX_VERSIONS 64
#define MAX_SECRETS 1024
#define MAX_TOKENS 256

struct version {
	char *data; /* JSON text; NULL once destroyed */
	char created[40];
	char deleted[40];
	bool destroyed;
};

struct secret {
	char path[300];
	int current;
	struct version v[MAX_VERSIONS + 1]; /* 1-based */
	char created[40], updated[40];
};

struct token { /* times in wall-clock milliseconds */
	char id[48];
	char accessor[48];
	int64_t created, expire, max_expire;
	bool renewable;
};

static struct {
	const char *role_id, *secret_id, *mount;
	int64_t ttl, max_ttl;
	bool batch;
	bool sealed, standby, initialized;
	int fail_next, fail_status;
	int logins, renewals, requests;
	struct secret *secrets[MAX_SECRETS];
	int nsecrets;
	struct token tokens[MAX_TOKENS];
	int ntokens;
	unsigned char transit_key[32];
} fv;

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
now_rfc3339(char out[40])
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
		 (tm.tm_year + 1900) % 10000, (tm.tm_mon + 1) % 100,
		 tm.tm_mday % 100, tm.tm_hour % 100, tm.tm_min % 100,
		 tm.tm_sec % 100, (int)(ts.tv_nsec / 1000) % 1000000);
}

static void
send_json(struct evhttp_request *req, int status, const char *body)
{
	struct evbuffer *out = evhttp_request_get_output_buffer(req);

	evhttp_add_header(evhttp_request_get_output_headers(req),
			  "Content-Type", "application/json");
	if (body)
		evbuffer_add(out, body, strlen(body));
	evhttp_send_reply(req, status, status == 200 ? "OK" : "Status", NULL);
}

/* {"errors":[msg]} or {"errors":[]} */
static void
send_error(struct evhttp_request *req, int status, const char *msg)
{
	struct cm_buf b = CM_BUF_INIT(0);

	cm_buf_puts(&b, "{\"errors\":[");
	if (msg)
		cm_buf_json_str(&b, msg);
	cm_buf_puts(&b, "]}");
	send_json(req, status, cm_buf_str(&b));
	cm_buf_release(&b);
}

/* The envelope around data (taken over; may be NULL) and auth. */
static void
send_envelope(struct evhttp_request *req, cJSON *data, cJSON *auth)
{
	cJSON *env = cJSON_CreateObject();
	char id[37], *text;

	cm_uuid_v4(id);
	cJSON_AddStringToObject(env, "request_id", id);
	cJSON_AddStringToObject(env, "lease_id", "");
	cJSON_AddBoolToObject(env, "renewable", false);
	cJSON_AddNumberToObject(env, "lease_duration", 0);
	cJSON_AddItemToObject(env, "data", data ? data : cJSON_CreateNull());
	cJSON_AddNullToObject(env, "wrap_info");
	cJSON_AddNullToObject(env, "warnings");
	cJSON_AddItemToObject(env, "auth", auth ? auth : cJSON_CreateNull());
	cJSON_AddStringToObject(env, "mount_type", "kv");
	text = cm_json_print(env);
	send_json(req, 200, text);
	free(text);
	cJSON_Delete(env);
}

static cJSON *
body_json(struct evhttp_request *req)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	char errbuf[CM_ERRBUF_LEN];
	cJSON *j;

	if (len == 0)
		return cJSON_CreateObject();
	j = cm_json_parse((const char *)evbuffer_pullup(in, -1), len, errbuf);
	if (j && !cJSON_IsObject(j)) {
		cJSON_Delete(j);
		j = NULL;
	}
	return j;
}

/* ---- tokens ---- */

static void
random_hex(char *out, size_t nbytes)
{
	unsigned char raw[32];
	size_t i;

	RAND_bytes(raw, (int)nbytes);
	for (i = 0; i < nbytes; i++)
		snprintf(out + 2 * i, 3, "%02x", raw[i]);
}

static struct token *
token_of(struct evhttp_request *req)
{
	const char *h = evhttp_find_header(
		evhttp_request_get_input_headers(req), "X-Vault-Token");
	int64_t now = now_ms();
	int i;

	for (i = 0; h && i < fv.ntokens; i++)
		if (!strcmp(fv.tokens[i].id, h) && fv.tokens[i].expire > now)
			return &fv.tokens[i];
	return NULL;
}

static cJSON *
auth_block(const struct token *t)
{
	cJSON *a = cJSON_CreateObject(), *pol;

	cJSON_AddStringToObject(a, "client_token", t->id);
	cJSON_AddStringToObject(a, "accessor", t->accessor);
	pol = cJSON_AddArrayToObject(a, "policies");
	cJSON_AddItemToArray(pol, cJSON_CreateString("default"));
	cJSON_AddItemToObject(a, "token_policies", cJSON_Duplicate(pol, 1));
	cJSON_AddNumberToObject(a, "lease_duration",
				(double)((t->expire - now_ms()) / 1000));
	cJSON_AddBoolToObject(a, "renewable", t->renewable);
	cJSON_AddStringToObject(a, "token_type",
				t->renewable ? "service" : "batch");
	cJSON_AddBoolToObject(a, "orphan", true);
	return a;
}

static void
handle_login(struct evhttp_request *req)
{
	cJSON *body = body_json(req);
	const cJSON *r = cJSON_GetObjectItemCaseSensitive(body, "role_id");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(body, "secret_id");
	struct token *t;

	if (!cJSON_IsString(r) || !cJSON_IsString(s) ||
	    strcmp(r->valuestring, fv.role_id) ||
	    strcmp(s->valuestring, fv.secret_id) || fv.ntokens >= MAX_TOKENS) {
		send_error(req, 400, "invalid role or secret ID");
		goto out;
	}
	t = &fv.tokens[fv.ntokens++];
	memcpy(t->id, "hvs.", 4);
	random_hex(t->id + 4, 16);
	random_hex(t->accessor, 12);
	t->created = now_ms();
	t->max_expire = t->created + fv.max_ttl * 1000;
	t->expire =
		t->created + (fv.ttl < fv.max_ttl ? fv.ttl : fv.max_ttl) * 1000;
	t->renewable = !fv.batch;
	fv.logins++;
	send_envelope(req, NULL, auth_block(t));
out:
	cJSON_Delete(body);
}

static void
handle_renew(struct evhttp_request *req, struct token *t)
{
	int64_t now = now_ms();

	if (!t->renewable) {
		send_error(req, 400, "lease is not renewable");
		return;
	}
	t->expire = now + fv.ttl * 1000 < t->max_expire ? now + fv.ttl * 1000
							: t->max_expire;
	fv.renewals++;
	send_envelope(req, NULL, auth_block(t));
}

static void
handle_lookup(struct evhttp_request *req, struct token *t)
{
	cJSON *d = cJSON_CreateObject();

	cJSON_AddStringToObject(d, "accessor", t->accessor);
	cJSON_AddNumberToObject(d, "creation_ttl", (double)fv.ttl);
	cJSON_AddStringToObject(d, "id", t->id);
	cJSON_AddBoolToObject(d, "renewable", t->renewable);
	cJSON_AddNumberToObject(d, "ttl",
				(double)((t->expire - now_ms()) / 1000));
	cJSON_AddNumberToObject(d, "num_uses", 0);
	cJSON_AddStringToObject(d, "type", t->renewable ? "service" : "batch");
	send_envelope(req, d, NULL);
}

/* ---- health ---- */

static int
query_code(const struct evkeyvalq *q, const char *name, int def)
{
	const char *v = evhttp_find_header(q, name);
	int64_t n;

	return v && cm_parse_i64(v, 100, 599, &n) == 0 ? (int)n : def;
}

static void
handle_health(struct evhttp_request *req, const struct evkeyvalq *q)
{
	const char *sok = evhttp_find_header(q, "standbyok");
	int status = query_code(q, "activecode", 200);
	char body[512];

	if (!fv.initialized)
		status = query_code(q, "uninitcode", 501);
	else if (fv.sealed)
		status = query_code(q, "sealedcode", 503);
	else if (fv.standby)
		status = sok && !strcmp(sok, "true")
				 ? 200
				 : query_code(q, "standbycode", 429);
	snprintf(body, sizeof(body),
		 "{\"initialized\":%s,\"sealed\":%s,\"standby\":%s,"
		 "\"performance_standby\":false,"
		 "\"replication_performance_mode\":\"disabled\","
		 "\"replication_dr_mode\":\"disabled\","
		 "\"server_time_utc\":%lld,\"version\":\"1.15.0\","
		 "\"cluster_name\":\"vault-cluster-fake\","
		 "\"cluster_id\":\"fake\"}",
		 fv.initialized ? "true" : "false",
		 fv.sealed ? "true" : "false", fv.standby ? "true" : "false",
		 (long long)time(NULL));
	send_json(req, status, body);
}

/* ---- KV version 2 ---- */

static struct secret *
secret_find(const char *path, bool create)
{
	struct secret *s;
	int i;

	for (i = 0; i < fv.nsecrets; i++)
		if (!strcmp(fv.secrets[i]->path, path))
			return fv.secrets[i];
	if (!create || fv.nsecrets >= MAX_SECRETS ||
	    strlen(path) >= sizeof(s->path))
		return NULL;
	s = cm_xcalloc(1, sizeof(*s));
	cm_strlcpy(s->path, path, sizeof(s->path));
	now_rfc3339(s->created);
	fv.secrets[fv.nsecrets++] = s;
	return s;
}

static cJSON *
version_meta(const struct secret *s, int v, bool with_version)
{
	cJSON *m = cJSON_CreateObject();

	cJSON_AddStringToObject(m, "created_time", s->v[v].created);
	cJSON_AddNullToObject(m, "custom_metadata");
	cJSON_AddStringToObject(m, "deletion_time", s->v[v].deleted);
	cJSON_AddBoolToObject(m, "destroyed", s->v[v].destroyed);
	if (with_version)
		cJSON_AddNumberToObject(m, "version", v);
	return m;
}

static void
kv_read(struct evhttp_request *req, const char *path, const struct evkeyvalq *q)
{
	struct secret *s = secret_find(path, false);
	const char *vq = evhttp_find_header(q, "version");
	cJSON *d, *env;
	char *text;
	int64_t v = s ? s->current : 0;

	if (vq && cm_parse_i64(vq, 0, MAX_VERSIONS, &v) < 0)
		v = -1;
	if (s && vq && v == 0)
		v = s->current;
	if (!s || v < 1 || v > s->current) {
		send_error(req, 404, NULL);
		return;
	}
	d = cJSON_CreateObject();
	if (s->v[v].data && !s->v[v].deleted[0])
		cJSON_AddItemToObject(d, "data", cJSON_Parse(s->v[v].data));
	else
		cJSON_AddNullToObject(d, "data");
	cJSON_AddItemToObject(d, "metadata", version_meta(s, (int)v, true));
	if (!s->v[v].data || s->v[v].deleted[0]) {
		env = cJSON_CreateObject(); /* 404 that still has data */
		cJSON_AddItemToObject(env, "errors", cJSON_CreateArray());
		cJSON_AddItemToObject(env, "data", d);
		text = cm_json_print(env);
		send_json(req, 404, text);
		free(text);
		cJSON_Delete(env);
		return;
	}
	send_envelope(req, d, NULL);
}

static void
kv_write(struct evhttp_request *req, const char *path)
{
	cJSON *body = body_json(req);
	const cJSON *data = cJSON_GetObjectItemCaseSensitive(body, "data");
	const cJSON *opts = cJSON_GetObjectItemCaseSensitive(body, "options");
	const cJSON *cas = cJSON_GetObjectItemCaseSensitive(opts, "cas");
	struct secret *s;
	int v;

	if (!cJSON_IsObject(data)) {
		send_error(req, 400, "no data provided");
		goto out;
	}
	s = secret_find(path, true);
	if (cJSON_IsNumber(cas) && cas->valueint != (s ? s->current : 0)) {
		send_error(req, 400,
			   "check-and-set parameter did not match the current "
			   "version");
		goto out;
	}
	if (!s || s->current >= MAX_VERSIONS) {
		send_error(req, 500, "internal error");
		goto out;
	}
	v = ++s->current;
	s->v[v].data = cm_json_print(data);
	now_rfc3339(s->v[v].created);
	cm_strlcpy(s->updated, s->v[v].created, sizeof(s->updated));
	send_envelope(req, version_meta(s, v, true), NULL);
out:
	cJSON_Delete(body);
}

/* Apply op ("delete", "undelete", "destroy") to body.versions. */
static void
kv_versions(struct evhttp_request *req, const char *op, const char *path)
{
	struct secret *s = secret_find(path, false);
	cJSON *body = body_json(req);
	const cJSON *vs = cJSON_GetObjectItemCaseSensitive(body, "versions");
	const cJSON *it;
	int v;

	if (!cJSON_IsArray(vs) || !cJSON_GetArraySize(vs)) {
		send_error(req, 400, "no version number provided");
		goto out;
	}
	cJSON_ArrayForEach(it, vs)
	{
		v = cJSON_IsNumber(it) ? it->valueint : 0;
		if (!s || v < 1 || v > s->current)
			continue;
		if (!strcmp(op, "delete") && !s->v[v].deleted[0])
			now_rfc3339(s->v[v].deleted);
		else if (!strcmp(op, "undelete") && !s->v[v].destroyed)
			s->v[v].deleted[0] = '\0';
		else if (!strcmp(op, "destroy")) {
			free(s->v[v].data);
			s->v[v].data = NULL;
			s->v[v].destroyed = true;
		}
	}
	evhttp_send_reply(req, 204, "No Content", NULL);
out:
	cJSON_Delete(body);
}

static void
kv_delete_latest(struct evhttp_request *req, const char *path)
{
	struct secret *s = secret_find(path, false);

	if (s && s->current && !s->v[s->current].deleted[0])
		now_rfc3339(s->v[s->current].deleted);
	evhttp_send_reply(req, 204, "No Content", NULL);
}

static void
kv_list(struct evhttp_request *req, const char *dir)
{
	cJSON *d = cJSON_CreateObject(),
	      *keys = cJSON_AddArrayToObject(d, "keys");
	struct cm_buf key = CM_BUF_INIT(0);
	const char *rest, *slash, *k;
	size_t n = strlen(dir);
	bool dup;
	int i;
	cJSON *it;

	for (i = 0; i < fv.nsecrets; i++) {
		if (strncmp(fv.secrets[i]->path, dir, n))
			continue;
		rest = fv.secrets[i]->path + n;
		slash = strchr(rest, '/');
		cm_buf_reset(&key);
		cm_buf_add(&key, rest,
			   slash ? (size_t)(slash - rest + 1) : strlen(rest));
		k = cm_buf_str(&key);
		dup = false;
		cJSON_ArrayForEach(it, keys) dup |= !strcmp(it->valuestring, k);
		if (!dup && *k)
			cJSON_AddItemToArray(keys, cJSON_CreateString(k));
	}
	cm_buf_release(&key);
	if (!cJSON_GetArraySize(keys)) {
		cJSON_Delete(d);
		send_error(req, 404, NULL);
		return;
	}
	send_envelope(req, d, NULL);
}

static void
kv_metadata(struct evhttp_request *req, const char *path)
{
	struct secret *s = secret_find(path, false);
	cJSON *d, *vs;
	char num[16];
	int v;

	if (!s || !s->current) {
		send_error(req, 404, NULL);
		return;
	}
	d = cJSON_CreateObject();
	cJSON_AddBoolToObject(d, "cas_required", false);
	cJSON_AddStringToObject(d, "created_time", s->created);
	cJSON_AddNumberToObject(d, "current_version", s->current);
	cJSON_AddStringToObject(d, "delete_version_after", "0s");
	cJSON_AddNumberToObject(d, "max_versions", 0);
	cJSON_AddNumberToObject(d, "oldest_version", 0);
	cJSON_AddStringToObject(d, "updated_time", s->updated);
	cJSON_AddNullToObject(d, "custom_metadata");
	vs = cJSON_AddObjectToObject(d, "versions");
	for (v = 1; v <= s->current; v++) {
		snprintf(num, sizeof(num), "%d", v);
		cJSON_AddItemToObject(vs, num, version_meta(s, v, false));
	}
	send_envelope(req, d, NULL);
}

static void
kv_metadata_delete(struct evhttp_request *req, const char *path)
{
	struct secret *s = secret_find(path, false);
	int v;

	if (s) {
		for (v = 1; v <= s->current; v++)
			free(s->v[v].data);
		memset(s->v, 0, sizeof(s->v));
		s->current = 0;
	}
	evhttp_send_reply(req, 204, "No Content", NULL);
}

/* Route "<op>/<path>" under the KV mount. */
static void
handle_kv(struct evhttp_request *req, const char *rest,
	  const struct evkeyvalq *q)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	const char *path = strchr(rest, '/');
	const char *list = evhttp_find_header(q, "list");
	size_t oplen = path ? (size_t)(path - rest) : strlen(rest);

	path = path ? path + 1 : "";
#define OP(s) (oplen == strlen(s) && !strncmp(rest, s, oplen))
	if (OP("data") && m == EVHTTP_REQ_GET && *path)
		kv_read(req, path, q);
	else if (OP("data") && (m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT) &&
		 *path)
		kv_write(req, path);
	else if (OP("data") && m == EVHTTP_REQ_DELETE && *path)
		kv_delete_latest(req, path);
	else if (OP("metadata") && m == EVHTTP_REQ_GET && list &&
		 !strcmp(list, "true"))
		kv_list(req, path);
	else if (OP("metadata") && m == EVHTTP_REQ_GET && *path)
		kv_metadata(req, path);
	else if (OP("metadata") && m == EVHTTP_REQ_DELETE && *path)
		kv_metadata_delete(req, path);
	else if ((OP("delete") || OP("undelete") || OP("destroy")) &&
		 m == EVHTTP_REQ_POST && *path) {
		char op[16];

		cm_strlcpy(op, rest,
			   oplen + 1 < sizeof(op) ? oplen + 1 : sizeof(op));
		kv_versions(req, op, path);
	} else if (OP("data") || OP("metadata") || OP("delete") ||
		   OP("undelete") || OP("destroy"))
		send_error(req, 405, NULL);
	else
		send_error(req, 404, NULL);
#undef OP
}

/* ---- transit ---- */

static int
b64_decode(const char *s, unsigned char **out, size_t *len)
{
	size_t n = strlen(s);
	int got;

	if (n % 4)
		return -1;
	*out = cm_xmalloc(n / 4 * 3 + 1);
	got = EVP_DecodeBlock(*out, (const unsigned char *)s, (int)n);
	if (got < 0) {
		free(*out);
		*out = NULL;
		return -1;
	}
	*len = (size_t)got - (n && s[n - 1] == '=') -
	       (n > 1 && s[n - 2] == '=');
	return 0;
}

static char *
b64_encode(const unsigned char *p, size_t n)
{
	char *s = cm_xmalloc(4 * ((n + 2) / 3) + 1);

	EVP_EncodeBlock((unsigned char *)s, p, (int)n);
	return s;
}

/* AES-256-GCM with the named key (HMAC of the fake's transit key and
   the name: like Vault, each key name is its own key, so a ciphertext of
   one never decrypts under another): nonce || ct || tag. */
static int
gcm(const char *name, bool enc, const unsigned char *in, size_t n,
    unsigned char *out, size_t *outlen)
{
	EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
	const unsigned char *nonce = enc ? out : in;
	unsigned char key[32];
	unsigned int klen = sizeof(key);
	int l = 0, f = 0, ok;

	HMAC(EVP_sha256(), fv.transit_key, sizeof(fv.transit_key),
	     (const unsigned char *)name, strlen(name), key, &klen);

	if (enc)
		RAND_bytes(out, 12);
	else if (n < 28)
		return -1;
	ok = EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, key, nonce, enc) ==
	     1;
	if (enc) {
		ok = ok && EVP_EncryptUpdate(c, out + 12, &l, in, (int)n) &&
		     EVP_EncryptFinal_ex(c, out + 12 + l, &f) &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16,
					 out + 12 + n);
		*outlen = n + 28;
	} else {
		ok = ok &&
		     EVP_DecryptUpdate(c, out, &l, in + 12, (int)n - 28) &&
		     EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16,
					 (void *)(in + n - 16)) &&
		     EVP_DecryptFinal_ex(c, out + l, &f) == 1;
		*outlen = n - 28;
	}
	EVP_CIPHER_CTX_free(c);
	return ok ? 0 : -1;
}

static void
handle_transit(struct evhttp_request *req, const char *name, bool enc)
{
	cJSON *body = body_json(req), *d = NULL;
	const cJSON *in = cJSON_GetObjectItemCaseSensitive(
		body, enc ? "plaintext" : "ciphertext");
	unsigned char *raw = NULL, *out = NULL;
	size_t len = 0, olen = 0;
	char *b64 = NULL, *txt = NULL;
	const char *s = cJSON_IsString(in) ? in->valuestring : NULL;

	if (s && !enc && strncmp(s, "vault:v1:", 9))
		s = NULL;
	if (!s || b64_decode(enc ? s : s + 9, &raw, &len) < 0) {
		send_error(req, 400,
			   enc ? "missing plaintext to encrypt"
			       : "invalid ciphertext");
		goto out;
	}
	out = cm_xmalloc(len + 29);
	if (gcm(name, enc, raw, len, out, &olen) < 0) {
		send_error(req, 400, "cipher: message authentication failed");
		goto out;
	}
	b64 = b64_encode(out, olen);
	d = cJSON_CreateObject();
	if (enc) {
		txt = cm_xmalloc(strlen(b64) + 10);
		snprintf(txt, strlen(b64) + 10, "vault:v1:%s", b64);
		cJSON_AddStringToObject(d, "ciphertext", txt);
		cJSON_AddNumberToObject(d, "key_version", 1);
	} else {
		cJSON_AddStringToObject(d, "plaintext", b64);
	}
	send_envelope(req, d, NULL);
out:
	free(raw);
	free(out);
	free(b64);
	free(txt);
	cJSON_Delete(body);
}

/* ---- test controls and dispatch ---- */

static void
handle_control(struct evhttp_request *req, const char *path)
{
	char buf[256];
	cJSON *b;
	const cJSON *it;

	if (!strcmp(path, "/_fake/stats")) {
		snprintf(buf, sizeof(buf),
			 "{\"logins\":%d,\"renewals\":%d,\"requests\":%d,"
			 "\"tokens\":%d}",
			 fv.logins, fv.renewals, fv.requests, fv.ntokens);
		send_json(req, 200, buf);
		return;
	}
	if (!(b = body_json(req))) {
		send_error(req, 400, "bad json");
		return;
	}
	cJSON_ArrayForEach(it, b)
	{
		if (!strcmp(it->string, "sealed"))
			fv.sealed = cJSON_IsTrue(it);
		else if (!strcmp(it->string, "standby"))
			fv.standby = cJSON_IsTrue(it);
		else if (!strcmp(it->string, "initialized"))
			fv.initialized = cJSON_IsTrue(it);
		else if (!strcmp(it->string, "fail_next"))
			fv.fail_next = it->valueint;
		else if (!strcmp(it->string, "fail_status"))
			fv.fail_status = it->valueint;
	}
	cJSON_Delete(b);
	send_json(req, 200, "{}");
}

/* Everything under /v1/ that needs a token. */
static void
handle_authed(struct evhttp_request *req, const char *p,
	      const struct evkeyvalq *q)
{
	enum evhttp_cmd_type m = evhttp_request_get_command(req);
	struct token *t = token_of(req);
	size_t ml = strlen(fv.mount);

	if (!t) {
		send_error(req, 403, "permission denied");
		return;
	}
	if (!strcmp(p, "auth/token/lookup-self") && m == EVHTTP_REQ_GET)
		handle_lookup(req, t);
	else if (!strcmp(p, "auth/token/renew-self") && m == EVHTTP_REQ_POST)
		handle_renew(req, t);
	else if (!strncmp(p, "transit/encrypt/", 16) && m == EVHTTP_REQ_POST)
		handle_transit(req, p + 16, true);
	else if (!strncmp(p, "transit/decrypt/", 16) && m == EVHTTP_REQ_POST)
		handle_transit(req, p + 16, false);
	else if (!strncmp(p, fv.mount, ml) && p[ml] == '/')
		handle_kv(req, p + ml + 1, q);
	else
		send_error(req, 404, NULL);
}

static void
dispatch(struct evhttp_request *req, void *arg)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri);
	const char *query = evhttp_uri_get_query(uri);
	struct evkeyvalq q;

	(void)arg;
	TAILQ_INIT(&q);
	if (query)
		evhttp_parse_query_str(query, &q);
	if (!path)
		path = "/";
	if (!strncmp(path, "/_fake/", 7))
		handle_control(req, path);
	else if (strncmp(path, "/v1/", 4))
		send_error(req, 404, NULL);
	else if (fv.requests++, fv.fail_next > 0) {
		fv.fail_next--;
		send_error(req, fv.fail_status, "upstream failure");
	} else if (!strcmp(path, "/v1/sys/health"))
		handle_health(req, &q);
	else if (fv.sealed || !fv.initialized)
		send_error(req, 503, "Vault is sealed");
	else if (!strcmp(path, "/v1/auth/approle/login") &&
		 evhttp_request_get_command(req) == EVHTTP_REQ_POST)
		handle_login(req);
	else
		handle_authed(req, path + 4, &q);
	evhttp_clear_headers(&q);
}

static int64_t
env_int(const char *name, int64_t def)
{
	const char *v = getenv(name);
	int64_t n;

	return v && cm_parse_i64(v, 1, INT32_MAX, &n) == 0 ? n : def;
}

static const char *
env_str(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

int
main(int argc, char **argv)
{
	struct event_base *base = event_base_new();
	struct evhttp *http = evhttp_new(base);
	struct evhttp_bound_socket *sock;
	int64_t port = 0;

	if (argc < 2 || cm_parse_i64(argv[1], 1, 65535, &port) < 0) {
		fprintf(stderr, "usage: vault PORT\n");
		return 2;
	}
	fv.role_id = env_str("FAKE_VAULT_ROLE_ID", "test-role");
	fv.secret_id = env_str("FAKE_VAULT_SECRET_ID", "test-secret");
	fv.mount = env_str("FAKE_VAULT_KV_MOUNT", "secret");
	fv.ttl = env_int("FAKE_VAULT_TOKEN_TTL", 3600);
	fv.max_ttl = env_int("FAKE_VAULT_MAX_TTL", 86400);
	fv.batch = getenv("FAKE_VAULT_BATCH") != NULL;
	fv.initialized = true;
	fv.fail_status = 502;
	RAND_bytes(fv.transit_key, sizeof(fv.transit_key));
	evhttp_set_allowed_methods(http,
				   EVHTTP_REQ_GET | EVHTTP_REQ_POST |
					   EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
					   EVHTTP_REQ_HEAD | EVHTTP_REQ_PATCH);
	evhttp_set_gencb(http, dispatch, NULL);
	sock = evhttp_bind_socket_with_handle(http, "127.0.0.1",
					      (uint16_t)port);
	if (!sock)
		return 1;
	event_base_dispatch(base);
	evhttp_free(http);
	event_base_free(base);
	return 0;
}
