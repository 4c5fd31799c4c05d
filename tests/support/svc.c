/* svc.c - start real service binaries and make HTTP requests (tests). */
#include "svc.h"
#include "testutil.h"

#include "common/auth.h"
#include "common/buf.h"
#include "common/mem.h"

#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* "event-bus" + "_PORT" -> "EVENT_BUS_PORT" */
static void
env_name(const char *prefix, const char *name, const char *suffix, char *out,
	 size_t n)
{
	size_t i, j;

	j = (size_t)snprintf(out, n, "%s", prefix);
	for (i = 0; name[i] && j + 1 < n; i++)
		out[j++] = name[i] == '-' ? '_' : (char)toupper(name[i]);
	out[j] = '\0';
	snprintf(out + j, n - j, "%s", suffix);
}

/* In the child: the service's own settings, then the overrides. */
static void
child_setenv(const char *name, int port, const char *const *extra)
{
	char key[96], role[64], pw[128], val[32], dir[600];
	size_t i;

	if (port > 0) {
		env_name("", name, "_PORT", key, sizeof(key));
		snprintf(val, sizeof(val), "%d", port);
		setenv(key, val, 1);
	}
	snprintf(role, sizeof(role), "bz_%s", name);
	for (i = 0; role[i]; i++)
		if (role[i] == '-')
			role[i] = '_';
	env_name("TEST_PG_PASSWORD_", role, "", pw, sizeof(pw));
	setenv("POSTGRES_USER", role, 1);
	if (getenv(pw))
		setenv("POSTGRES_PASSWORD", getenv(pw), 1);
	snprintf(dir, sizeof(dir), "%s/services/%s/migrations",
		 getenv("BZ_ROOT"), name);
	setenv("MIGRATIONS_DIR", dir, 1);
	setenv("BIND_ADDR", "127.0.0.1", 1);
	setenv("DB_STARTUP_WAIT_S", "5", 1);
	for (i = 0; extra && extra[i]; i++) {
		const char *eq = strchr(extra[i], '=');
		char *k;

		if (!eq)
			continue;
		k = cm_xstrndup(extra[i], (size_t)(eq - extra[i]));
		if (eq[1])
			setenv(k, eq + 1, 1);
		else
			unsetenv(k);
		free(k);
	}
}

static pid_t
spawn(const char *name, int port, const char *const *env, const char *arg,
      const char *log)
{
	char bin[600];
	pid_t pid;
	int fd;

	snprintf(bin, sizeof(bin), "%s/bin/%s", cm_test_env("BZ_BUILD"), name);
	pid = fork();
	if (pid != 0)
		return pid;
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd >= 0) {
		dup2(fd, 2);
		dup2(fd, 1);
		close(fd);
	}
	child_setenv(name, port, env);
	if (chdir(getenv("BZ_ROOT")) != 0)
		_exit(127);
	execl(bin, bin, arg, (char *)NULL);
	_exit(127);
}

static void
log_path(const char *name, int port, char *out, size_t n)
{
	char dir[512];

	snprintf(dir, sizeof(dir), "%s/test-logs", cm_test_env("BZ_BUILD"));
	mkdir(dir, 0700);
	snprintf(out, n, "%s/%s-%d-%ld.log", dir, name, port, (long)getpid());
}

void
cm_test_svc_spawn(struct cm_test_svc *s, const char *name,
		  const char *const *env)
{
	memset(s, 0, sizeof(*s));
	cm_strlcpy(s->name, name, sizeof(s->name));
	s->port = cm_test_free_port();
	log_path(name, s->port, s->log, sizeof(s->log));
	s->pid = spawn(name, s->port, env, NULL, s->log);
}

int
cm_test_svc_start(struct cm_test_svc *s, const char *name,
		  const char *const *env)
{
	struct cm_test_resp r;
	int i, st;

	cm_test_svc_spawn(s, name, env);
	for (i = 0; i < 150; i++) {
		if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
			s->pid = 0;
			return -1;
		}
		if (cm_test_http("GET", s->port, "/health", NULL, NULL, &r) ==
			    0 &&
		    r.status == 200) {
			cm_test_resp_release(&r);
			return 0;
		}
		cm_test_resp_release(&r);
		usleep(100 * 1000);
	}
	return -1;
}

static int
wait_exit(pid_t pid, int seconds)
{
	int i, st;

	for (i = 0; i < seconds * 20; i++) {
		if (waitpid(pid, &st, WNOHANG) == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st)
					     : 128 + WTERMSIG(st);
		usleep(50 * 1000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	return -1;
}

int
cm_test_svc_stop(struct cm_test_svc *s)
{
	int rc;

	if (s->pid <= 0)
		return -1;
	kill(s->pid, SIGTERM);
	rc = wait_exit(s->pid, 15);
	s->pid = 0;
	return rc;
}

int
cm_test_svc_run(const char *name, const char *const *env, const char *arg,
		char **err)
{
	struct cm_buf b = CM_BUF_INIT(1 << 20);
	char log[600], chunk[4096];
	FILE *f;
	size_t n;
	int rc;

	log_path(name, 0, log, sizeof(log));
	rc = wait_exit(spawn(name, 0, env, arg, log), 30);
	f = fopen(log, "r");
	while (f && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		cm_buf_add(&b, chunk, n);
	if (f)
		fclose(f);
	*err = cm_buf_detach(&b, NULL);
	return rc;
}

static size_t
on_data(char *p, size_t size, size_t n, void *ctx)
{
	cm_buf_add(ctx, p, size * n);
	return size * n;
}

int
cm_test_http(const char *method, int port, const char *path,
	     const char *const *headers, const char *body,
	     struct cm_test_resp *out)
{
	struct cm_buf b = CM_BUF_INIT(0), h = CM_BUF_INIT(0);
	struct cm_buf url = CM_BUF_INIT(0); /* any length: no silent cut */
	struct curl_slist *hl = NULL;
	CURL *c = curl_easy_init();
	CURLcode cc;
	int i;

	memset(out, 0, sizeof(*out));
	cm_buf_printf(&url, "http://127.0.0.1:%d%s", port, path);
	for (i = 0; headers && headers[i]; i++)
		hl = curl_slist_append(hl, headers[i]);
	curl_easy_setopt(c, CURLOPT_URL, cm_buf_str(&url));
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_data);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	cc = curl_easy_perform(c);
	if (cc == CURLE_OK) {
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
		curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &out->seconds);
	}
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	cm_buf_release(&url);
	out->body = cm_buf_detach(&b, NULL);
	out->headers = cm_buf_detach(&h, NULL);
	out->json = cJSON_Parse(out->body);
	return cc == CURLE_OK ? 0 : -1;
}

const char *
cm_test_resp_header(const struct cm_test_resp *r, const char *name)
{
	static __thread char val[1024];
	size_t nlen = strlen(name);
	const char *p = r->headers;

	while (p && *p) {
		const char *eol = strstr(p, "\r\n");
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > nlen && !strncasecmp(p, name, nlen) &&
		    p[nlen] == ':') {
			const char *v = p + nlen + 1;

			while (*v == ' ')
				v++;
			snprintf(val, sizeof(val), "%.*s",
				 (int)(len - (size_t)(v - p)), v);
			return val;
		}
		p = eol ? eol + 2 : NULL;
	}
	return NULL;
}

const char *
cm_test_resp_error_code(const struct cm_test_resp *r)
{
	cJSON *e = cJSON_GetObjectItemCaseSensitive(r->json, "error");
	cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");

	return cJSON_IsString(c) ? c->valuestring : "";
}

void
cm_test_resp_release(struct cm_test_resp *r)
{
	free(r->body);
	free(r->headers);
	cJSON_Delete(r->json);
	memset(r, 0, sizeof(*r));
}

void
cm_test_expect(const struct cm_test_resp *r, long status, const char *code)
{
	ck_assert_msg(r->status == status, "status %ld, want %ld: %s",
		      r->status, status, r->body ? r->body : "");
	if (code)
		ck_assert_str_eq(cm_test_resp_error_code(r), code);
}

void
cm_test_expect_free(struct cm_test_resp r, long status, const char *code)
{
	cm_test_expect(&r, status, code);
	cm_test_resp_release(&r);
}

void
cm_test_fresh_name(char *out, size_t n, const char *prefix)
{
	char id[37];

	ck_assert_int_eq(cm_uuid_v4(id), 0);
	snprintf(out, n, "%s-%.8s", prefix, id);
}

pid_t
cm_test_fake_vault_start(int *port)
{
	char bin[600], arg[16];
	struct cm_test_resp r;
	pid_t pid;
	int i;

	*port = cm_test_free_port();
	snprintf(bin, sizeof(bin), "%s/fakes/vault", cm_test_env("BZ_BUILD"));
	snprintf(arg, sizeof(arg), "%d", *port);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		execl(bin, bin, arg, (char *)NULL);
		_exit(127);
	}
	for (i = 0; i < 100; i++) {
		if (cm_test_http("GET", *port, "/_fake/stats", NULL, NULL,
				 &r) == 0 &&
		    r.status == 200) {
			cm_test_resp_release(&r);
			return pid;
		}
		cm_test_resp_release(&r);
		usleep(50 * 1000);
	}
	ck_abort_msg("fake vault did not start");
	return -1;
}

void
cm_test_fake_vault_state(int port, const char *json)
{
	const char *hs[] = { "Content-Type: application/json", NULL };
	struct cm_test_resp r;

	ck_assert_int_eq(
		cm_test_http("POST", port, "/_fake/state", hs, json, &r), 0);
	cm_test_resp_release(&r);
}

char *
cm_test_user_token(const char *sub, const char *tenant_id,
		   const char *roles_json, int ttl_s)
{
	const char *key = cm_test_env("JWT_SECRET_KEY");
	char errbuf[CM_ERRBUF_LEN] = "", jti[37];
	struct cm_buf claims = CM_BUF_INIT(0);
	char *tok = NULL;
	int64_t now = cm_now_s();

	cm_uuid_v4(jti);
	cm_buf_printf(&claims,
		      "{\"sub\":\"%s\",\"iss\":\"bizosaas-brain\","
		      "\"aud\":\"bizosaas\",\"iat\":%lld,\"exp\":%lld,"
		      "\"jti\":\"%s\",\"roles\":%s",
		      sub, (long long)(now - 5), (long long)(now + ttl_s), jti,
		      roles_json ? roles_json : "[\"user\"]");
	if (tenant_id)
		cm_buf_printf(&claims, ",\"tenant_id\":\"%s\"", tenant_id);
	cm_buf_puts(&claims, "}");
	ck_assert_int_eq(cm_jwt_sign(CM_JWT_HS256, (const unsigned char *)key,
				     strlen(key), cm_buf_str(&claims), &tok,
				     errbuf),
			 0);
	cm_buf_release(&claims);
	return tok;
}

int
cm_test_stack(const char *verb)
{
	char cmd[1024];

	snprintf(cmd, sizeof(cmd), "%s %s >&2", cm_test_env("BZ_STACK_CMD"),
		 verb);
	return system(cmd);
}

struct cm_http *
cm_test_server_start(const struct cm_route *routes)
{
	struct cm_http_config c;
	char errbuf[CM_ERRBUF_LEN] = "";
	struct cm_http *h;

	memset(&c, 0, sizeof(c));
	c.service = "test";
	c.bind_addr = "127.0.0.1";
	c.threads = 1;
	h = cm_http_new(&c, routes, NULL, NULL);
	ck_assert_ptr_nonnull(h);
	ck_assert_msg(cm_http_start(h, errbuf) == 0, "start: %s", errbuf);
	return h;
}

void
cm_test_server_stop(struct cm_http *h)
{
	cm_http_stop(h);
	ck_assert_int_eq(cm_http_wait(h), 0);
	cm_http_free(h);
}
