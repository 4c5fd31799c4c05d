/* vault.c - HashiCorp Vault client over cm_fetch (see vault.h). */
#include "vault.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/httpclient.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mem.h"

#include "common/banned.h"

#define TOKEN_MAX 512
#define BACKOFF_CAP_MS 2000

struct vc_vault {
	pthread_mutex_t mu;
	char *addr, *role_id, *secret_id, *kv_mount, *transit_mount;
	int timeout_ms, retries, backoff_ms;
	char token[TOKEN_MAX]; /* "" when logged out */
	bool renewable;
	int64_t obtained_ms, lease_ms, login_lease_ms;
	int logins;
};

struct vc_vault *
vc_vault_new(const struct vc_vault_config *cfg)
{
	struct vc_vault *v = cm_xcalloc(1, sizeof(*v));

	pthread_mutex_init(&v->mu, NULL);
	v->addr = cm_xstrdup(cfg->addr);
	v->role_id = cm_xstrdup(cfg->role_id ? cfg->role_id : "");
	v->secret_id = cm_xstrdup(cfg->secret_id ? cfg->secret_id : "");
	v->kv_mount = cm_xstrdup(cfg->kv_mount ? cfg->kv_mount : "secret");
	v->transit_mount =
		cm_xstrdup(cfg->transit_mount ? cfg->transit_mount : "transit");
	v->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 5000;
	v->retries = cfg->retries > 0 ? cfg->retries : 0;
	v->backoff_ms = cfg->backoff_ms > 0 ? cfg->backoff_ms : 100;
	return v;
}

void
vc_vault_free(struct vc_vault *v)
{
	if (!v)
		return;
	cm_memzero(v->token, sizeof(v->token));
	cm_memzero(v->secret_id, strlen(v->secret_id));
	free(v->addr);
	free(v->role_id);
	free(v->secret_id);
	free(v->kv_mount);
	free(v->transit_mount);
	pthread_mutex_destroy(&v->mu);
	free(v);
}

static bool
transient(int rc, long status)
{
	if (rc < 0)
		return rc == CM_EIO || rc == CM_ETIMEDOUT ||
		       rc == CM_ECONNREFUSED;
	return status == 429 || status == 500 || status == 502 ||
	       status == 503 || status == 504;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Vault's {"errors":[...]} joined into errbuf (never a request value). */
static void
vault_errors(const struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN])
{
	char tmp[CM_ERRBUF_LEN];
	cJSON *j = cm_json_parse(resp->body.data, resp->body.len, tmp);
	const cJSON *errs = cJSON_GetObjectItemCaseSensitive(j, "errors");
	const cJSON *e;
	struct cm_buf b = CM_BUF_INIT(CM_ERRBUF_LEN - 1);

	cm_buf_printf(&b, "vault answered %ld", resp->status);
	cJSON_ArrayForEach(e, errs)
	{
		if (cJSON_IsString(e))
			cm_buf_printf(&b, ": %.100s", e->valuestring);
	}
	snprintf(errbuf, CM_ERRBUF_LEN, "%s", cm_buf_str(&b));
	cm_buf_release(&b);
	cJSON_Delete(j);
}

/* One attempt loop for METHOD /v1/<path> with an optional token. */
static int
request_once(struct vc_vault *v, const char *method, const char *path,
	     const char *body, const char *token,
	     struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN])
{
	char url[2048], hdr[TOKEN_MAX + 32];
	const char *headers[2] = { NULL, NULL };
	struct cm_fetch_opts o = { 0 };
	int attempt, wait = v->backoff_ms, rc = CM_EIO;

	snprintf(url, sizeof(url), "%s/v1/%s", v->addr, path);
	if (token) {
		snprintf(hdr, sizeof(hdr), "X-Vault-Token: %s", token);
		headers[0] = hdr;
	}
	o.headers = headers;
	o.total_timeout_ms = v->timeout_ms;
	o.content_type = body ? "application/json" : NULL;
	o.max_response = 1 << 20;
	for (attempt = 0; attempt <= v->retries; attempt++) {
		if (attempt) {
			sleep_ms(wait);
			wait = wait * 2 > BACKOFF_CAP_MS ? BACKOFF_CAP_MS
							 : wait * 2;
		}
		cm_fetch_response_release(resp);
		memset(resp, 0, sizeof(*resp));
		rc = cm_fetch(method, url, body, body ? strlen(body) : 0, &o,
			      resp, errbuf);
		if (!transient(rc, resp->status))
			break;
	}
	cm_memzero(hdr, sizeof(hdr));
	return rc;
}

/* Take the auth block of a login or renewal. Lock held. */
static int
take_auth(struct vc_vault *v, const cJSON *env, bool login,
	  char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *auth = cJSON_GetObjectItemCaseSensitive(env, "auth");
	const cJSON *tok =
		cJSON_GetObjectItemCaseSensitive(auth, "client_token");
	const cJSON *lease =
		cJSON_GetObjectItemCaseSensitive(auth, "lease_duration");
	const cJSON *ren = cJSON_GetObjectItemCaseSensitive(auth, "renewable");

	if (!cJSON_IsString(tok) || !cJSON_IsNumber(lease) ||
	    strlen(tok->valuestring) >= TOKEN_MAX || lease->valuedouble < 0) {
		snprintf(errbuf, CM_ERRBUF_LEN, "vault sent no usable auth");
		return CM_EPROTO;
	}
	cm_memzero(v->token, sizeof(v->token));
	cm_strlcpy(v->token, tok->valuestring, sizeof(v->token));
	v->renewable = cJSON_IsTrue(ren);
	v->obtained_ms = cm_now_ms();
	v->lease_ms = (int64_t)lease->valuedouble * 1000;
	if (login) {
		v->login_lease_ms = v->lease_ms;
		v->logins++;
	}
	return 0;
}

/* Parse a 2xx body as the envelope; CM_EPROTO if it is not JSON. */
static cJSON *
envelope(const struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN])
{
	cJSON *j = cm_json_parse(resp->body.data, resp->body.len, errbuf);

	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		snprintf(errbuf, CM_ERRBUF_LEN, "vault sent no JSON object");
		return NULL;
	}
	return j;
}

/* Zero a response body that may hold a token or value, then free it. */
static void
resp_release(struct cm_fetch_response *resp)
{
	if (resp->body.data)
		cm_memzero(resp->body.data, resp->body.len);
	cm_fetch_response_release(resp);
}

/* POST auth/token/renew-self or auth/approle/login and take the auth. */
static int
auth_call(struct vc_vault *v, bool login, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_fetch_response resp = { 0 };
	struct cm_buf body = CM_BUF_INIT(0);
	char token[TOKEN_MAX];
	cJSON *env = NULL;
	int rc;

	pthread_mutex_lock(&v->mu);
	cm_strlcpy(token, v->token, sizeof(token));
	pthread_mutex_unlock(&v->mu);
	if (login) {
		cm_buf_puts(&body, "{\"role_id\":");
		cm_buf_json_str(&body, v->role_id);
		cm_buf_puts(&body, ",\"secret_id\":");
		cm_buf_json_str(&body, v->secret_id);
		cm_buf_putc(&body, '}');
	}
	rc = request_once(v, "POST",
			  login ? "auth/approle/login"
				: "auth/token/renew-self",
			  login ? cm_buf_str(&body) : "{}",
			  login ? NULL : token, &resp, errbuf);
	if (rc == 0 && resp.status != 200) {
		vault_errors(&resp, errbuf);
		rc = resp.status == 400 || resp.status == 403 ? CM_EACCES
							      : CM_EIO;
	} else if (rc == 0 && (env = envelope(&resp, errbuf))) {
		pthread_mutex_lock(&v->mu);
		rc = take_auth(v, env, login, errbuf);
		pthread_mutex_unlock(&v->mu);
	} else if (rc == 0) {
		rc = CM_EPROTO;
	}
	cJSON_Delete(env);
	resp_release(&resp);
	cm_memzero(token, sizeof(token));
	if (body.data)
		cm_memzero(body.data, body.len);
	cm_buf_release(&body);
	return rc;
}

int
vc_vault_login(struct vc_vault *v, char errbuf[CM_ERRBUF_LEN])
{
	return auth_call(v, true, errbuf);
}

int
vc_vault_maintain(struct vc_vault *v, char errbuf[CM_ERRBUF_LEN])
{
	int64_t now = cm_now_ms(), due;
	bool have, renewable;
	int rc;

	pthread_mutex_lock(&v->mu);
	have = v->token[0] != '\0';
	renewable = v->renewable;
	due = v->obtained_ms + v->lease_ms * 2 / 3;
	pthread_mutex_unlock(&v->mu);
	if (have && now < due)
		return 0;
	if (have && renewable && auth_call(v, false, errbuf) == 0) {
		pthread_mutex_lock(&v->mu);
		rc = v->lease_ms * 2 >= v->login_lease_ms;
		pthread_mutex_unlock(&v->mu);
		if (rc) /* extended well: keep the token */
			return 0;
	}
	return vc_vault_login(v, errbuf);
}

int64_t
vc_vault_token_ttl_ms(struct vc_vault *v)
{
	int64_t left;

	pthread_mutex_lock(&v->mu);
	left = v->token[0] ? v->obtained_ms + v->lease_ms - cm_now_ms() : 0;
	pthread_mutex_unlock(&v->mu);
	return left > 0 ? left : 0;
}

int
vc_vault_logins(struct vc_vault *v)
{
	int n;

	pthread_mutex_lock(&v->mu);
	n = v->logins;
	pthread_mutex_unlock(&v->mu);
	return n;
}

/* A token request; a 403 logs in again once and repeats it. */
static int
request(struct vc_vault *v, const char *method, const char *path,
	const char *body, struct cm_fetch_response *resp,
	char errbuf[CM_ERRBUF_LEN])
{
	char token[TOKEN_MAX];
	int rc = CM_EIO, tries;

	for (tries = 0; tries < 2; tries++) {
		pthread_mutex_lock(&v->mu);
		cm_strlcpy(token, v->token, sizeof(token));
		pthread_mutex_unlock(&v->mu);
		if (!token[0] && (rc = vc_vault_login(v, errbuf)) < 0)
			break;
		if (!token[0])
			continue;
		rc = request_once(v, method, path, body, token, resp, errbuf);
		if (rc < 0 || resp->status != 403 || tries)
			break;
		if ((rc = vc_vault_login(v, errbuf)) < 0)
			break;
	}
	cm_memzero(token, sizeof(token));
	return rc;
}

/* Zero every string of a tree that held values, then free it. */
static void
json_zero(cJSON *j)
{
	cJSON *it;

	for (it = j ? j->child : NULL; it; it = it->next) {
		if (cJSON_IsString(it) && it->valuestring)
			cm_memzero(it->valuestring, strlen(it->valuestring));
		else
			json_zero(it);
	}
}

static void
json_zero_delete(cJSON *j)
{
	json_zero(j);
	cJSON_Delete(j);
}

static bool
json_true(const cJSON *o, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, name));
}

int
vc_vault_health(struct vc_vault *v, struct vc_vault_health *h,
		char errbuf[CM_ERRBUF_LEN])
{
	struct cm_fetch_response resp = { 0 };
	cJSON *j = NULL;
	int rc;

	memset(h, 0, sizeof(*h));
	rc = request_once(v, "GET", "sys/health", NULL, NULL, &resp, errbuf);
	if (rc < 0)
		goto out;
	h->status = resp.status;
	j = cm_json_parse(resp.body.data, resp.body.len, errbuf);
	h->initialized = json_true(j, "initialized");
	h->sealed = json_true(j, "sealed");
	h->standby = json_true(j, "standby");
	if (resp.status == 200)
		rc = 0;
	else if (resp.status == 429 || resp.status == 473)
		rc = CM_EAGAIN;
	else
		rc = CM_EIO;
	if (rc)
		snprintf(errbuf, CM_ERRBUF_LEN, "vault is %s",
			 !h->initialized ? "not initialised"
			 : h->sealed	 ? "sealed"
			 : h->standby	 ? "a standby"
					 : "unhealthy");
out:
	cJSON_Delete(j);
	resp_release(&resp);
	return rc;
}

/* Map a non-2xx answer; 404 is CM_ENOENT. */
static int
status_error(const struct cm_fetch_response *resp, char errbuf[CM_ERRBUF_LEN])
{
	vault_errors(resp, errbuf);
	switch (resp->status) {
	case 400:
		return strstr(errbuf, "check-and-set") ? CM_ESTALE : CM_EINVAL;
	case 403:
		return CM_EACCES;
	case 404:
		return CM_ENOENT;
	}
	return CM_EIO;
}

static void
meta_from_json(const cJSON *m, struct vc_version *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, "version");
	const cJSON *c = cJSON_GetObjectItemCaseSensitive(m, "created_time");
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(m, "deletion_time");

	memset(out, 0, sizeof(*out));
	out->version = cJSON_IsNumber(v) ? v->valueint : 0;
	if (cJSON_IsString(c))
		cm_strlcpy(out->created_time, c->valuestring,
			   sizeof(out->created_time));
	if (cJSON_IsString(d))
		cm_strlcpy(out->deletion_time, d->valuestring,
			   sizeof(out->deletion_time));
	out->destroyed = json_true(m, "destroyed");
}

/* GET/POST ... and parse the envelope's "data" (detached into *data). */
static int
kv_call(struct vc_vault *v, const char *method, const char *path,
	const char *body, cJSON **env_out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_fetch_response resp = { 0 };
	int rc;

	*env_out = NULL;
	rc = request(v, method, path, body, &resp, errbuf);
	if (rc == 0 && resp.status == 204)
		goto out;
	if (rc == 0 && (resp.status < 200 || resp.status > 299)) {
		rc = status_error(&resp, errbuf);
		if (rc == CM_ENOENT && resp.body.len) /* deleted: metadata */
			*env_out = cm_json_parse(resp.body.data, resp.body.len,
						 errbuf);
	} else if (rc == 0 && !(*env_out = envelope(&resp, errbuf))) {
		rc = CM_EPROTO;
	}
out:
	resp_release(&resp);
	return rc;
}

int
vc_vault_kv_read(struct vc_vault *v, const char *path, int version,
		 struct vc_secret *out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0);
	const cJSON *data, *value;
	cJSON *env = NULL;
	int rc;

	memset(out, 0, sizeof(*out));
	cm_buf_printf(&p, "%s/data/%s", v->kv_mount, path);
	if (version > 0)
		cm_buf_printf(&p, "?version=%d", version);
	rc = kv_call(v, "GET", cm_buf_str(&p), NULL, &env, errbuf);
	data = cJSON_GetObjectItemCaseSensitive(env, "data");
	meta_from_json(cJSON_GetObjectItemCaseSensitive(data, "metadata"),
		       &out->meta);
	value = cJSON_GetObjectItemCaseSensitive(data, "data");
	if (rc == 0 && !cJSON_IsObject(value))
		rc = CM_EPROTO;
	if (rc == 0) {
		out->json = cJSON_PrintUnformatted(value);
		out->len = strlen(out->json);
	}
	json_zero_delete(env);
	cm_buf_release(&p);
	return rc;
}

int
vc_vault_kv_write(struct vc_vault *v, const char *path, const char *json,
		  int64_t cas, struct vc_version *out,
		  char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0), body = CM_BUF_INIT(0);
	cJSON *env = NULL;
	int rc;

	cm_buf_printf(&p, "%s/data/%s", v->kv_mount, path);
	cm_buf_putc(&body, '{');
	if (cas >= 0)
		cm_buf_printf(&body, "\"options\":{\"cas\":%lld},",
			      (long long)cas);
	cm_buf_printf(&body, "\"data\":%s}", json);
	rc = kv_call(v, "POST", cm_buf_str(&p), cm_buf_str(&body), &env,
		     errbuf);
	if (rc == 0)
		meta_from_json(cJSON_GetObjectItemCaseSensitive(env, "data"),
			       out);
	if (rc == 0 && out->version < 1)
		rc = CM_EPROTO;
	cJSON_Delete(env);
	if (body.data)
		cm_memzero(body.data, body.len);
	cm_buf_release(&body);
	cm_buf_release(&p);
	return rc;
}

/* POST <op>/<path> {"versions":[...]}, or DELETE data/<path> (n 0). */
static int
versions_call(struct vc_vault *v, const char *op, const char *path,
	      const int *versions, int n, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0), body = CM_BUF_INIT(0);
	cJSON *env = NULL;
	int i, rc;

	if (n < 0 || n > VC_VERSIONS_MAX)
		return CM_EINVAL;
	cm_buf_printf(&p, "%s/%s/%s", v->kv_mount, n ? op : "data", path);
	cm_buf_puts(&body, "{\"versions\":[");
	for (i = 0; i < n; i++)
		cm_buf_printf(&body, "%s%d", i ? "," : "", versions[i]);
	cm_buf_puts(&body, "]}");
	rc = kv_call(v, n ? "POST" : "DELETE", cm_buf_str(&p),
		     n ? cm_buf_str(&body) : NULL, &env, errbuf);
	cJSON_Delete(env);
	cm_buf_release(&body);
	cm_buf_release(&p);
	return rc;
}

int
vc_vault_kv_delete(struct vc_vault *v, const char *path, const int *versions,
		   int n, char errbuf[CM_ERRBUF_LEN])
{
	return versions_call(v, "delete", path, versions, n, errbuf);
}

int
vc_vault_kv_undelete(struct vc_vault *v, const char *path, const int *versions,
		     int n, char errbuf[CM_ERRBUF_LEN])
{
	return n ? versions_call(v, "undelete", path, versions, n, errbuf)
		 : CM_EINVAL;
}

int
vc_vault_kv_destroy(struct vc_vault *v, const char *path, const int *versions,
		    int n, char errbuf[CM_ERRBUF_LEN])
{
	return n ? versions_call(v, "destroy", path, versions, n, errbuf)
		 : CM_EINVAL;
}

/* GET <path> and detach the envelope's "data" member. */
static int
data_of(struct vc_vault *v, const char *path, const char *member, cJSON **out,
	char errbuf[CM_ERRBUF_LEN])
{
	cJSON *env = NULL, *data;
	int rc;

	*out = NULL;
	rc = kv_call(v, "GET", path, NULL, &env, errbuf);
	data = cJSON_GetObjectItemCaseSensitive(env, "data");
	if (rc == 0 && member)
		data = cJSON_GetObjectItemCaseSensitive(data, member);
	if (rc == 0 && !data)
		rc = CM_EPROTO;
	if (rc == 0) {
		*out = cJSON_Duplicate(data, 1);
	}
	cJSON_Delete(env);
	return rc;
}

int
vc_vault_kv_metadata(struct vc_vault *v, const char *path, cJSON **out,
		     char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0);
	int rc;

	cm_buf_printf(&p, "%s/metadata/%s", v->kv_mount, path);
	rc = data_of(v, cm_buf_str(&p), NULL, out, errbuf);
	cm_buf_release(&p);
	return rc;
}

int
vc_vault_kv_list(struct vc_vault *v, const char *dir, cJSON **keys,
		 char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0);
	int rc;

	cm_buf_printf(&p, "%s/metadata/%s?list=true", v->kv_mount, dir);
	rc = data_of(v, cm_buf_str(&p), "keys", keys, errbuf);
	cm_buf_release(&p);
	return rc;
}

int
vc_vault_transit(struct vc_vault *v, const char *key, bool encrypt,
		 const char *in, char **out, char errbuf[CM_ERRBUF_LEN])
{
	struct cm_buf p = CM_BUF_INIT(0), body = CM_BUF_INIT(0);
	const char *member = encrypt ? "ciphertext" : "plaintext";
	const cJSON *res;
	cJSON *env = NULL;
	int rc;

	*out = NULL;
	cm_buf_printf(&p, "%s/%s/%s", v->transit_mount,
		      encrypt ? "encrypt" : "decrypt", key);
	cm_buf_printf(&body, "{\"%s\":", encrypt ? "plaintext" : "ciphertext");
	cm_buf_json_str(&body, in);
	cm_buf_putc(&body, '}');
	rc = kv_call(v, "POST", cm_buf_str(&p), cm_buf_str(&body), &env,
		     errbuf);
	res = cJSON_GetObjectItemCaseSensitive(
		cJSON_GetObjectItemCaseSensitive(env, "data"), member);
	if (rc == 0 && !cJSON_IsString(res))
		rc = CM_EPROTO;
	if (rc == 0)
		*out = cm_xstrdup(res->valuestring);
	json_zero_delete(env);
	if (body.data)
		cm_memzero(body.data, body.len);
	cm_buf_release(&body);
	cm_buf_release(&p);
	return rc;
}
