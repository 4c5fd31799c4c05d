/* config.c - declarative settings: read all, validate all, report all. */
#include "common/config.h"
#include "common/buf.h"
#include "common/err.h"
#include "common/log.h"
#include "common/mem.h"

#include <ctype.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/banned.h"

#define REPORT_CAP (64u << 10)
#define GOT_MAX 64 /* bytes of a bad value echoed back in a problem */

/* Where a value came from, for problem lines. */
#define ORIGIN_DEFAULT "default"

struct cfg_value {
	char *text;	    /* owned; NULL when unset and no default */
	const char *origin; /* NULL: env; ORIGIN_DEFAULT; or a URL's name */
	int64_t num;	    /* INT, PORT, LEVEL */
	bool flag;	    /* BOOL */
	bool set;	    /* came from the environment (or a URL in it) */
};

struct cm_config {
	const struct cm_config_item *items;
	size_t n;
	struct cfg_value *vals;
};

/* The parts of a DATABASE_URL / REDIS_URL, percent-decoded; NULL: absent. */
struct uri_parts {
	char *user;
	char *password;
	char *host;
	char *port;
	char *path; /* after the '/' */
};

static const char *const type_names[] = { "string", "int", "bool",
					  "port",   "url", "level" };

static const char *
type_name(enum cm_config_type t)
{
	if ((unsigned)t < sizeof(type_names) / sizeof(type_names[0]))
		return type_names[t];
	return "?";
}

/* A programming error in the table or a getter call: say what and stop. */
static void __attribute__((noreturn, format(printf, 1, 2)))
die(const char *fmt, ...)
{
	va_list ap;

	fputs("config: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

static ssize_t
find_item(const struct cm_config_item *items, size_t n, const char *name)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(items[i].name, name))
			return (ssize_t)i;
	return -1;
}

struct cm_config *
cm_config_new(const struct cm_config_item *items)
{
	struct cm_config *cfg = cm_xcalloc(1, sizeof(*cfg));

	cfg->items = items;
	while (items[cfg->n].name) {
		if (find_item(items, cfg->n, items[cfg->n].name) >= 0)
			die("setting %s appears twice in the table",
			    items[cfg->n].name);
		cfg->n++;
	}
	cfg->vals = cm_xcalloc(cfg->n ? cfg->n : 1, sizeof(*cfg->vals));
	return cfg;
}

static void
value_clear(const struct cm_config_item *it, struct cfg_value *v)
{
	if (v->text && (it->flags & CM_CFG_SECRET))
		cm_memzero(v->text, strlen(v->text));
	free(v->text);
	memset(v, 0, sizeof(*v));
}

static void
config_clear(struct cm_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n; i++)
		value_clear(&cfg->items[i], &cfg->vals[i]);
}

void
cm_config_free(struct cm_config *cfg)
{
	if (!cfg)
		return;
	config_clear(cfg);
	free(cfg->vals);
	free(cfg);
}

/* ---- problem report ---------------------------------------------------- */

/* Append `value` quoted and escaped, cut at GOT_MAX bytes. */
static void
put_got(struct cm_buf *r, const char *value)
{
	char cut[GOT_MAX + 4];
	size_t len = strlen(value);

	cm_strlcpy(cut, value, GOT_MAX + 1);
	if (len > GOT_MAX)
		memcpy(cut + GOT_MAX, "...", 4);
	cm_buf_puts(r, "(got ");
	cm_buf_json_str(r, cut);
	cm_buf_putc(r, ')');
}

/* One problem line: "  NAME[ (origin)]: what (got "v" | value hidden)". */
static void
add_problem(struct cm_buf *r, const char *name, const char *origin,
	    const char *what, const char *value, bool hide)
{
	cm_buf_printf(r, "  %s", name);
	if (origin)
		cm_buf_printf(r, " (from %s)", origin);
	cm_buf_printf(r, ": %s", what);
	if (hide)
		cm_buf_puts(r, " (value hidden)");
	else if (value) {
		cm_buf_putc(r, ' ');
		put_got(r, value);
	}
	cm_buf_putc(r, '\n');
}

/* ---- URLs --------------------------------------------------------------- */

/* Percent-decode s[0..n) into *out (NULL when empty); CM_EINVAL on a bad
   escape or an encoded NUL. */
static int
pct_decode(const char *s, size_t n, char **out)
{
	char *d = cm_xmalloc(n + 1);
	size_t i, j = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		if (s[i] != '%') {
			d[j++] = s[i];
			continue;
		}
		hi = i + 2 < n ? cm_hex_digit(s[i + 1]) : -1;
		lo = hi >= 0 ? cm_hex_digit(s[i + 2]) : -1;
		if (lo < 0 || (hi == 0 && lo == 0)) {
			cm_memzero(d, n + 1); /* may be part of a password */
			free(d);
			return CM_EINVAL;
		}
		d[j++] = (char)(hi * 16 + lo);
		i += 2;
	}
	d[j] = '\0';
	if (j == 0) {
		free(d);
		d = NULL;
	}
	*out = d;
	return 0;
}

static void
uri_release(struct uri_parts *u)
{
	if (u->password)
		cm_memzero(u->password, strlen(u->password));
	free(u->user);
	free(u->password);
	free(u->host);
	free(u->port);
	free(u->path);
	memset(u, 0, sizeof(*u));
}

static bool
has_space_or_ctl(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Match s against "scheme://" for each scheme; the rest, or NULL. */
static const char *
skip_scheme(const char *s, const char *const *schemes)
{
	size_t n;

	for (; *schemes; schemes++) {
		n = strlen(*schemes);
		if (!strncasecmp(s, *schemes, n) && !strncmp(s + n, "://", 3))
			return s + n + 3;
	}
	return NULL;
}

/* Split "host[:port]" or "[v6][:port]"; *why on failure. */
static int
split_hostport(const char *p, size_t n, struct uri_parts *u, const char **why)
{
	const char *end = p + n, *colon;
	int64_t port;

	if (n && *p == '[') {
		const char *rb = memchr(p, ']', n);

		if (!rb || (rb + 1 < end && rb[1] != ':')) {
			*why = "bad [IPv6] host";
			return CM_EINVAL;
		}
		u->host = cm_xstrndup(p + 1, (size_t)(rb - p - 1));
		colon = rb + 1 < end ? rb + 1 : NULL;
	} else {
		colon = memchr(p, ':', n);
		if (pct_decode(p, (size_t)((colon ? colon : end) - p),
			       &u->host) < 0) {
			*why = "bad percent-encoding";
			return CM_EINVAL;
		}
	}
	if (!u->host || !*u->host) {
		*why = "no host";
		return CM_EINVAL;
	}
	if (colon) {
		u->port = cm_xstrndup(colon + 1, (size_t)(end - colon - 1));
		if (cm_parse_i64(u->port, 1, 65535, &port) < 0) {
			*why = "port must be a number between 1 and 65535";
			return CM_EINVAL;
		}
	}
	return 0;
}

/* Split "[user[:password]@]" off the authority. */
static int
split_userinfo(const char *p, size_t n, struct uri_parts *u, const char **why)
{
	const char *colon = memchr(p, ':', n);
	size_t ulen = colon ? (size_t)(colon - p) : n;

	if (pct_decode(p, ulen, &u->user) < 0 ||
	    (colon && pct_decode(colon + 1, n - ulen - 1, &u->password) < 0)) {
		*why = "bad percent-encoding";
		return CM_EINVAL;
	}
	return 0;
}

/* scheme://[user[:password]@]host[:port][/path]; no query or fragment. */
static int
split_uri(const char *s, const char *const *schemes, struct uri_parts *u,
	  const char **why)
{
	const char *p = skip_scheme(s, schemes), *slash, *at;
	size_t alen;

	if (!p) {
		*why = "wrong scheme";
		return CM_EINVAL;
	}
	if (has_space_or_ctl(s)) {
		*why = "contains spaces or control characters";
		return CM_EINVAL;
	}
	if (strpbrk(p, "?#")) {
		*why = "query parameters and fragments are not supported";
		return CM_EINVAL;
	}
	slash = strchr(p, '/');
	alen = slash ? (size_t)(slash - p) : strlen(p);
	at = memrchr(p, '@', alen);
	if (at && split_userinfo(p, (size_t)(at - p), u, why) < 0)
		return CM_EINVAL;
	if (at) {
		alen -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	if (split_hostport(p, alen, u, why) < 0)
		return CM_EINVAL;
	if (slash && pct_decode(slash + 1, strlen(slash + 1), &u->path) < 0) {
		*why = "bad percent-encoding";
		return CM_EINVAL;
	}
	return 0;
}

/* An http(s) URL with a non-empty host and a valid port, if any. */
static bool
is_http_url(const char *s)
{
	static const char *const schemes[] = { "http", "https", NULL };
	const char *p = skip_scheme(s, schemes), *at;
	struct uri_parts u = { 0 };
	const char *why = NULL;
	size_t alen;
	int rc;

	if (!p || has_space_or_ctl(s))
		return false;
	alen = strcspn(p, "/?#");
	at = memrchr(p, '@', alen);
	if (at) {
		alen -= (size_t)(at + 1 - p);
		p = at + 1;
	}
	rc = split_hostport(p, alen, &u, &why);
	uri_release(&u);
	return rc == 0;
}

/* ---- composite settings --------------------------------------------------*/

/* Replace the value of `name` (when it is in the table) with part. */
static void
override(struct cm_config *cfg, const char *name, const char *part,
	 const char *origin)
{
	ssize_t i = find_item(cfg->items, cfg->n, name);

	if (i < 0 || !part)
		return;
	value_clear(&cfg->items[i], &cfg->vals[i]);
	cfg->vals[i].text = cm_xstrdup(part);
	cfg->vals[i].set = true;
	cfg->vals[i].origin = origin;
}

/* The value of a set composite URL setting, or NULL. */
static const char *
composite(const struct cm_config *cfg, const char *name)
{
	ssize_t i = find_item(cfg->items, cfg->n, name);

	return i >= 0 && cfg->vals[i].set ? cfg->vals[i].text : NULL;
}

static void
apply_database_url(struct cm_config *cfg, struct cm_buf *r)
{
	static const char *const schemes[] = { "postgres", "postgresql", NULL };
	const char *url = composite(cfg, "DATABASE_URL");
	struct uri_parts u = { 0 };
	const char *why = NULL;
	char what[CM_ERRBUF_LEN];

	if (!url)
		return;
	if (split_uri(url, schemes, &u, &why) < 0) {
		snprintf(what, sizeof(what),
			 "must be postgres://user:password@host:port/dbname "
			 "(%s)",
			 why);
		add_problem(r, "DATABASE_URL", NULL, what, NULL, true);
		goto out;
	}
	override(cfg, "POSTGRES_HOST", u.host, "DATABASE_URL");
	override(cfg, "POSTGRES_PORT", u.port, "DATABASE_URL");
	override(cfg, "POSTGRES_DB", u.path, "DATABASE_URL");
	override(cfg, "POSTGRES_USER", u.user, "DATABASE_URL");
	override(cfg, "POSTGRES_PASSWORD", u.password, "DATABASE_URL");
out:
	uri_release(&u);
}

/* Why a REDIS_URL's parts are unusable, or NULL. */
static const char *
redis_parts_problem(const struct uri_parts *u)
{
	int64_t db;

	/* hiredis 0.14 sends AUTH <password> only: that is the default user */
	if (u->user && strcmp(u->user, "default"))
		return "user names other than 'default' are not supported";
	if (u->path && cm_parse_i64(u->path, 0, INT32_MAX, &db) < 0)
		return "database must be a number";
	return NULL;
}

static void
apply_redis_url(struct cm_config *cfg, struct cm_buf *r)
{
	static const char *const schemes[] = { "redis", NULL };
	const char *url = composite(cfg, "REDIS_URL");
	struct uri_parts u = { 0 };
	const char *why = NULL;
	char what[CM_ERRBUF_LEN];

	if (!url)
		return;
	if (split_uri(url, schemes, &u, &why) < 0 ||
	    (why = redis_parts_problem(&u)) != NULL) {
		snprintf(what, sizeof(what),
			 "must be redis://[:password@]host[:port][/db] (%s)",
			 why);
		add_problem(r, "REDIS_URL", NULL, what, NULL, true);
		goto out;
	}
	override(cfg, "REDIS_HOST", u.host, "REDIS_URL");
	override(cfg, "REDIS_PORT", u.port, "REDIS_URL");
	override(cfg, "REDIS_PASSWORD", u.password, "REDIS_URL");
	override(cfg, "REDIS_DB", u.path, "REDIS_URL");
out:
	uri_release(&u);
}

/* ---- validation --------------------------------------------------------- */

static void
int_bounds(const struct cm_config_item *it, int64_t *lo, int64_t *hi)
{
	if (it->type == CM_CFG_PORT) {
		*lo = it->min > 0 ? it->min : 0;
		*hi = it->max > 0 && it->max < 65535 ? it->max : 65535;
	} else if (it->min == 0 && it->max == 0) {
		*lo = INT64_MIN;
		*hi = INT64_MAX;
	} else {
		*lo = it->min;
		*hi = it->max;
	}
}

/* Describe a length rule into what; false when there is none. */
static bool
length_rule(const struct cm_config_item *it, char *what, size_t n)
{
	const char *pre = it->type == CM_CFG_URL
				  ? "must be an http:// or https:// URL "
				  : "must be ";

	if (it->min > 0 && it->max > 0)
		snprintf(what, n,
			 "%sbetween %" PRId64 " and %" PRId64 " bytes long",
			 pre, it->min, it->max);
	else if (it->min > 0)
		snprintf(what, n, "%sat least %" PRId64 " bytes long", pre,
			 it->min);
	else if (it->max > 0)
		snprintf(what, n, "%sat most %" PRId64 " bytes long", pre,
			 it->max);
	return it->min > 0 || it->max > 0;
}

static bool
length_ok(const struct cm_config_item *it, const char *s)
{
	size_t len = strlen(s);

	return (it->min <= 0 || len >= (uint64_t)it->min) &&
	       (it->max <= 0 || len <= (uint64_t)it->max);
}

/* Check and convert one value; on a problem fill what and return false. */
static bool
check_value(const struct cm_config_item *it, struct cfg_value *v, char *what,
	    size_t n, bool *hide)
{
	enum cm_log_level level;
	int64_t lo, hi;

	switch (it->type) {
	case CM_CFG_INT:
	case CM_CFG_PORT:
		int_bounds(it, &lo, &hi);
		snprintf(what, n,
			 "must be an integer between %" PRId64 " and %" PRId64,
			 lo, hi);
		return cm_parse_i64(v->text, lo, hi, &v->num) == 0;
	case CM_CFG_BOOL:
		snprintf(what, n, "must be true/false, 1/0, yes/no or on/off");
		return cm_parse_bool(v->text, &v->flag) == 0;
	case CM_CFG_LEVEL:
		snprintf(what, n,
			 "must be one of debug, info, warn, error, "
			 "off");
		if (cm_log_parse_level(v->text, &level) < 0)
			return false;
		v->num = level;
		return true;
	case CM_CFG_URL:
		snprintf(what, n,
			 "must be an http:// or https:// URL with a "
			 "host");
		/* user info may hold a password, even in a malformed URL */
		*hide = strchr(v->text, '@') != NULL;
		if (!is_http_url(v->text))
			return false;
		return !length_rule(it, what, n) || length_ok(it, v->text);
	case CM_CFG_STRING:
	default:
		return !length_rule(it, what, n) || length_ok(it, v->text);
	}
}

static void
load_one(const struct cm_config_item *it, struct cfg_value *v, struct cm_buf *r)
{
	char what[CM_ERRBUF_LEN] = "";
	bool hide = false;

	if (!v->set) {
		if (it->flags & CM_CFG_REQUIRED) {
			add_problem(r, it->name, NULL, "required but not set",
				    NULL, false);
			return;
		}
		if (!it->def)
			return;
		v->text = cm_xstrdup(it->def);
		v->origin = ORIGIN_DEFAULT;
	}
	if (check_value(it, v, what, sizeof(what), &hide))
		return;
	hide = hide || (it->flags & CM_CFG_SECRET);
	add_problem(r, it->name, v->origin, what, v->text, hide);
}

static const char *
env_lookup(const char *name, void *ctx)
{
	(void)ctx;
	return getenv(name);
}

int
cm_config_load(struct cm_config *cfg, char **problems)
{
	return cm_config_load_from(cfg, env_lookup, NULL, problems);
}

int
cm_config_load_from(struct cm_config *cfg,
		    const char *(*lookup)(const char *name, void *ctx),
		    void *ctx, char **problems)
{
	struct cm_buf r = CM_BUF_INIT(REPORT_CAP);
	const char *raw;
	size_t i;
	int rc = 0;

	config_clear(cfg);
	for (i = 0; i < cfg->n; i++) {
		raw = lookup(cfg->items[i].name, ctx);
		if (raw && *raw) {
			cfg->vals[i].text = cm_xstrdup(raw);
			cfg->vals[i].set = true;
		}
	}
	apply_database_url(cfg, &r);
	apply_redis_url(cfg, &r);
	for (i = 0; i < cfg->n; i++)
		load_one(&cfg->items[i], &cfg->vals[i], &r);
	if (problems)
		*problems = NULL;
	if (r.len == 0)
		goto out;
	rc = CM_EINVAL;
	if (problems) {
		struct cm_buf full = CM_BUF_INIT(REPORT_CAP + 64);

		cm_buf_puts(&full, "invalid configuration:\n");
		cm_buf_add(&full, r.data, r.len);
		*problems = cm_buf_detach(&full, NULL);
	}
out:
	cm_buf_release(&r);
	return rc;
}

/* ---- getters ------------------------------------------------------------ */

static const struct cfg_value *
value_of(const struct cm_config *cfg, const char *name,
	 const struct cm_config_item **item)
{
	ssize_t i = find_item(cfg->items, cfg->n, name);

	if (i < 0)
		die("no setting named %s in the table", name);
	if (item)
		*item = &cfg->items[i];
	return &cfg->vals[i];
}

const char *
cm_config_str(const struct cm_config *cfg, const char *name)
{
	return value_of(cfg, name, NULL)->text;
}

int64_t
cm_config_int(const struct cm_config *cfg, const char *name)
{
	const struct cm_config_item *it;
	const struct cfg_value *v = value_of(cfg, name, &it);

	if (it->type != CM_CFG_INT && it->type != CM_CFG_PORT &&
	    it->type != CM_CFG_LEVEL)
		die("%s is of type %s, not an integer", name,
		    type_name(it->type));
	return v->text ? v->num : 0;
}

bool
cm_config_bool(const struct cm_config *cfg, const char *name)
{
	const struct cm_config_item *it;
	const struct cfg_value *v = value_of(cfg, name, &it);

	if (it->type != CM_CFG_BOOL)
		die("%s is of type %s, not a bool", name, type_name(it->type));
	return v->text ? v->flag : false;
}

bool
cm_config_is_set(const struct cm_config *cfg, const char *name)
{
	return value_of(cfg, name, NULL)->set;
}

/* ---- help --------------------------------------------------------------- */

static const char *
help_default(const struct cm_config_item *it)
{
	bool req = it->flags & CM_CFG_REQUIRED;

	if (it->flags & CM_CFG_SECRET)
		return req ? "(required) (secret)" : "(secret)";
	if (req)
		return "(required)";
	return it->def ? it->def : "(none)";
}

void
cm_config_help(const struct cm_config_item *items, FILE *f)
{
	const struct cm_config_item *it;
	int64_t lo, hi;

	for (it = items; it->name; it++) {
		fprintf(f, "  %-26s %-6s %-20s %s", it->name,
			type_name(it->type), help_default(it),
			it->help ? it->help : "");
		if (it->type == CM_CFG_INT && (it->min != 0 || it->max != 0)) {
			int_bounds(it, &lo, &hi);
			fprintf(f, " [%" PRId64 "..%" PRId64 "]", lo, hi);
		} else if (it->type == CM_CFG_STRING && it->min > 0) {
			fprintf(f, " [at least %" PRId64 " bytes]", it->min);
		}
		fputc('\n', f);
	}
}
