/* metrics.c - process-wide Prometheus registry. */
#include "common/metrics.h"
#include "common/err.h"
#include "common/mem.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/banned.h"

/*
 * Series live in an open-addressing table of pointers, twice the series cap
 * so probes stay short and always find an empty slot. A slot is written
 * once, under the lock, with a release store; the update path reads it with
 * an acquire load and never locks. Values are doubles kept as uint64 bits
 * and updated by CAS, so concurrent updates are exact.
 */
#define TABLE_SIZE (2 * CM_METRICS_MAX_SERIES)
#define MAX_FAMILIES 512
#define NAME_MAX_LEN 128
#define LABELS_MAX_LEN 1024

enum kind {
	KIND_COUNTER,
	KIND_GAUGE,
	KIND_HISTOGRAM
};

static const char *const kind_names[] = { "counter", "gauge", "histogram" };

static const struct bucket {
	double bound;
	const char *text;
} http_buckets[] = {
	{ 0.001, "0.001" }, { 0.0025, "0.0025" }, { 0.005, "0.005" },
	{ 0.01, "0.01" },   { 0.025, "0.025" },	  { 0.05, "0.05" },
	{ 0.1, "0.1" },	    { 0.25, "0.25" },	  { 0.5, "0.5" },
	{ 1, "1" },	    { 2.5, "2.5" },	  { 5, "5" },
	{ 10, "10" },
};

#define NBOUNDS (sizeof(http_buckets) / sizeof(http_buckets[0]))
#define NBUCKETS (NBOUNDS + 1) /* the last one is +Inf */

struct series;

struct family {
	char *name;
	char *help;
	enum kind kind;
	struct series *head; /* creation order; changed under the lock */
	struct series *tail;
};

struct series {
	struct series *next;
	struct family *family;
	uint64_t hash;
	char *labels;
	_Atomic uint64_t value;	    /* double bits: counter, gauge, or sum */
	_Atomic uint64_t buckets[]; /* histograms: NBUCKETS, not cumulative */
};

static struct {
	pthread_mutex_t lock; /* series creation, render, reset */
	struct series *_Atomic slots[TABLE_SIZE];
	struct family *families[MAX_FAMILIES];
	size_t nfamilies;
	size_t nseries;
	_Atomic uint64_t dropped;
	char service[128];
} reg = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.service = "unknown",
};

static uint64_t
dbl_bits(double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	return u;
}

static double
bits_dbl(uint64_t u)
{
	double v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

static void
atomic_add_dbl(_Atomic uint64_t *p, double v)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	uint64_t new;

	do {
		new = dbl_bits(bits_dbl(old) + v);
	} while (!atomic_compare_exchange_weak_explicit(
		p, &old, new, memory_order_relaxed, memory_order_relaxed));
}

static double
atomic_get_dbl(_Atomic uint64_t *p)
{
	return bits_dbl(atomic_load_explicit(p, memory_order_relaxed));
}

static void
drop(void)
{
	atomic_fetch_add_explicit(&reg.dropped, 1, memory_order_relaxed);
}

/* FNV-1a over name, a NUL separator and labels. */
static uint64_t
key_hash(const char *name, const char *labels)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	const unsigned char *p;

	for (p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	h *= 0x100000001b3ULL;
	for (p = (const unsigned char *)labels; *p; p++)
		h = (h ^ *p) * 0x100000001b3ULL;
	return h;
}

/* The series for (name, labels), or NULL with *empty set to the free slot
   where it would go. */
static struct series *
probe(uint64_t hash, const char *name, const char *labels, size_t *empty)
{
	size_t i = hash & (TABLE_SIZE - 1);
	size_t n;

	for (n = 0; n < TABLE_SIZE; n++) {
		struct series *s = atomic_load_explicit(&reg.slots[i],
							memory_order_acquire);

		if (!s) {
			*empty = i;
			return NULL;
		}
		if (s->hash == hash && !strcmp(s->family->name, name) &&
		    !strcmp(s->labels, labels))
			return s;
		i = (i + 1) & (TABLE_SIZE - 1);
	}
	*empty = TABLE_SIZE; /* unreachable: the table is never full */
	return NULL;
}

static bool
valid_name(const char *s)
{
	size_t i;

	if (!*s || isdigit((unsigned char)*s))
		return false;
	for (i = 0; s[i]; i++) {
		if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != ':')
			return false;
	}
	return i <= NAME_MAX_LEN;
}

/* One `name="value"` pair at *pp; advances past it. */
static bool
valid_pair(const char **pp)
{
	const char *p = *pp;
	const char *start = p;

	while (isalnum((unsigned char)*p) || *p == '_')
		p++;
	if (p == start || isdigit((unsigned char)*start) ||
	    !strncmp(start, "__", 2) ||
	    (p - start == 7 && !strncmp(start, "service", 7)) ||
	    (p - start == 2 && !strncmp(start, "le", 2)))
		return false;
	if (*p++ != '=' || *p++ != '"')
		return false;
	for (; *p && *p != '"' && *p != '\n'; p++) {
		if (*p != '\\')
			continue;
		p++;
		if (*p != '\\' && *p != '"' && *p != 'n')
			return false;
	}
	if (*p != '"')
		return false;
	*pp = p + 1;
	return true;
}

/* Pre-rendered labels must be well formed, or they would corrupt the
   whole exposition; "service" and "le" are ours. */
static bool
valid_labels(const char *s)
{
	if (strlen(s) > LABELS_MAX_LEN)
		return false;
	while (*s) {
		if (!valid_pair(&s))
			return false;
		if (*s == ',' && s[1])
			s++;
		else if (*s)
			return false;
	}
	return true;
}

/* Under the lock: the family called name, created if there is room. */
static struct family *
family_get(enum kind kind, const char *name, const char *help)
{
	struct family *f;
	size_t i;

	for (i = 0; i < reg.nfamilies; i++) {
		if (!strcmp(reg.families[i]->name, name))
			return reg.families[i]->kind == kind ? reg.families[i]
							     : NULL;
	}
	if (reg.nfamilies == MAX_FAMILIES)
		return NULL;
	f = cm_xcalloc(1, sizeof(*f));
	f->name = cm_xstrdup(name);
	f->help = cm_xstrdup(help ? help : "");
	f->kind = kind;
	reg.families[reg.nfamilies++] = f;
	return f;
}

/* Under the lock: a new series in slot, or NULL when over a cap. */
static struct series *
series_new(enum kind kind, const char *name, const char *help,
	   const char *labels, uint64_t hash, size_t slot)
{
	size_t extra = kind == KIND_HISTOGRAM ? NBUCKETS : 0;
	struct family *f;
	struct series *s;

	if (reg.nseries >= CM_METRICS_MAX_SERIES || slot >= TABLE_SIZE)
		return NULL;
	f = family_get(kind, name, help);
	if (!f)
		return NULL;
	s = cm_xcalloc(1, sizeof(*s) + extra * sizeof(s->buckets[0]));
	s->family = f;
	s->hash = hash;
	s->labels = cm_xstrdup(labels);
	if (f->tail)
		f->tail->next = s;
	else
		f->head = s;
	f->tail = s;
	reg.nseries++;
	atomic_store_explicit(&reg.slots[slot], s, memory_order_release);
	return s;
}

static struct series *
series_create(enum kind kind, const char *name, const char *help,
	      const char *labels, uint64_t hash)
{
	struct series *s;
	size_t slot;

	if (!valid_name(name) || !valid_labels(labels))
		return NULL;
	pthread_mutex_lock(&reg.lock);
	s = probe(hash, name, labels, &slot); /* another thread may have won */
	if (!s)
		s = series_new(kind, name, help, labels, hash, slot);
	pthread_mutex_unlock(&reg.lock);
	return s;
}

/* The series of this kind for name{labels}, or NULL (and counted) when it
   cannot exist: bad name or labels, kind clash, over a cap. */
static struct series *
series_get(enum kind kind, const char *name, const char *help,
	   const char *labels)
{
	char full[NAME_MAX_LEN + 8];
	struct series *s;
	uint64_t hash;
	size_t slot;

	if (!name) {
		drop();
		return NULL;
	}
	if (strncmp(name, "bz_", 3) != 0) {
		snprintf(full, sizeof(full), "bz_%s", name);
		name = full;
	}
	labels = labels ? labels : "";
	hash = key_hash(name, labels);
	s = probe(hash, name, labels, &slot);
	if (!s)
		s = series_create(kind, name, help, labels, hash);
	if (!s || s->family->kind != kind) {
		drop();
		return NULL;
	}
	return s;
}

void
cm_metrics_init(const char *service)
{
	cm_strlcpy(reg.service, service ? service : "unknown",
		   sizeof(reg.service));
}

void
cm_metrics_counter_add(const char *name, const char *help, const char *labels,
		       double v)
{
	struct series *s;

	if (!(v >= 0) || isinf(v)) /* also refuses NaN */
		return;
	s = series_get(KIND_COUNTER, name, help, labels);
	if (s)
		atomic_add_dbl(&s->value, v);
}

void
cm_metrics_gauge_set(const char *name, const char *help, const char *labels,
		     double v)
{
	struct series *s = series_get(KIND_GAUGE, name, help, labels);

	if (s)
		atomic_store_explicit(&s->value, dbl_bits(v),
				      memory_order_relaxed);
}

void
cm_metrics_gauge_add(const char *name, const char *help, const char *labels,
		     double v)
{
	struct series *s = series_get(KIND_GAUGE, name, help, labels);

	if (s)
		atomic_add_dbl(&s->value, v);
}

static void
histogram_observe(const char *name, const char *help, const char *labels,
		  double v)
{
	struct series *s;
	size_t i;

	if (isnan(v))
		return;
	s = series_get(KIND_HISTOGRAM, name, help, labels);
	if (!s)
		return;
	for (i = 0; i < NBOUNDS && v > http_buckets[i].bound; i++)
		;
	atomic_fetch_add_explicit(&s->buckets[i], 1, memory_order_relaxed);
	atomic_add_dbl(&s->value, v);
}

/* Append s to dst[*len..cap) as a label value (escape) or raw; false if it
   does not fit. dst stays NUL-terminated. */
static bool
lbl_put(char *dst, size_t cap, size_t *len, const char *s, bool escape)
{
	for (; *s; s++) {
		const char *e = NULL;

		if (escape && *s == '\\')
			e = "\\\\";
		else if (escape && *s == '"')
			e = "\\\"";
		else if (escape && *s == '\n')
			e = "\\n";
		if (*len + (e ? 2 : 1) >= cap)
			return false;
		if (e) {
			dst[(*len)++] = e[0];
			dst[(*len)++] = e[1];
		} else {
			dst[(*len)++] = *s;
		}
	}
	dst[*len] = '\0';
	return true;
}

void
cm_metrics_http_observe(const char *route, const char *method, int status,
			double seconds)
{
	char labels[LABELS_MAX_LEN + 1];
	char code[16];
	size_t len = 0;
	bool ok;

	snprintf(code, sizeof(code), "%d", status);
	ok = lbl_put(labels, sizeof(labels), &len, "route=\"", false) &&
	     lbl_put(labels, sizeof(labels), &len, route ? route : "", true) &&
	     lbl_put(labels, sizeof(labels), &len, "\",method=\"", false) &&
	     lbl_put(labels, sizeof(labels), &len, method ? method : "",
		     true) &&
	     lbl_put(labels, sizeof(labels), &len, "\",status=\"", false) &&
	     lbl_put(labels, sizeof(labels), &len, code, false) &&
	     lbl_put(labels, sizeof(labels), &len, "\"", false);
	if (!ok) {
		drop();
		return;
	}
	cm_metrics_counter_add("bz_http_requests_total",
			       "HTTP requests served.", labels, 1);
	histogram_observe("bz_http_request_duration_seconds",
			  "HTTP request latency in seconds.", labels,
			  seconds < 0 ? 0 : seconds);
}

void
cm_metrics_dep_set(const char *dependency, bool up)
{
	char labels[LABELS_MAX_LEN + 1];
	size_t len = 0;

	if (!lbl_put(labels, sizeof(labels), &len, "dependency=\"", false) ||
	    !lbl_put(labels, sizeof(labels), &len, dependency ? dependency : "",
		     true) ||
	    !lbl_put(labels, sizeof(labels), &len, "\"", false)) {
		drop();
		return;
	}
	cm_metrics_gauge_set("bz_dependency_up",
			     "Whether a dependency answered its last check.",
			     labels, up ? 1 : 0);
}

void
cm_metrics_label_append(struct cm_buf *b, const char *name, const char *value)
{
	const char *p;

	if (b->len)
		cm_buf_putc(b, ',');
	cm_buf_puts(b, name);
	cm_buf_puts(b, "=\"");
	for (p = value ? value : ""; *p; p++) {
		if (*p == '\\')
			cm_buf_puts(b, "\\\\");
		else if (*p == '"')
			cm_buf_puts(b, "\\\"");
		else if (*p == '\n')
			cm_buf_puts(b, "\\n");
		else
			cm_buf_putc(b, *p);
	}
	cm_buf_putc(b, '"');
}

/* HELP text escapes backslash and newline; label values also quotes. */
static void
put_escaped(struct cm_buf *out, const char *s, bool quotes)
{
	for (; *s; s++) {
		if (*s == '\\')
			cm_buf_puts(out, "\\\\");
		else if (*s == '\n')
			cm_buf_puts(out, "\\n");
		else if (quotes && *s == '"')
			cm_buf_puts(out, "\\\"");
		else
			cm_buf_putc(out, *s);
	}
}

/* The shortest of %.15g/%.17g that reads back exactly. */
static void
put_value(struct cm_buf *out, double v)
{
	char tmp[40];

	if (isnan(v)) {
		cm_buf_puts(out, "NaN\n");
		return;
	}
	if (isinf(v)) {
		cm_buf_puts(out, v > 0 ? "+Inf\n" : "-Inf\n");
		return;
	}
	snprintf(tmp, sizeof(tmp), "%.15g", v);
	if (strtod(tmp, NULL) != v)
		snprintf(tmp, sizeof(tmp), "%.17g", v);
	cm_buf_puts(out, tmp);
	cm_buf_putc(out, '\n');
}

static void
put_family_head(struct cm_buf *out, const char *name, const char *help,
		const char *type)
{
	if (help && *help) {
		cm_buf_printf(out, "# HELP %s ", name);
		put_escaped(out, help, false);
		cm_buf_putc(out, '\n');
	}
	cm_buf_printf(out, "# TYPE %s %s\n", name, type);
}

/* `name suffix{service="...",labels,le="..."} ` */
static void
put_series_head(struct cm_buf *out, const char *name, const char *suffix,
		const char *labels, const char *le)
{
	cm_buf_puts(out, name);
	cm_buf_puts(out, suffix);
	cm_buf_puts(out, "{service=\"");
	put_escaped(out, reg.service, true);
	cm_buf_putc(out, '"');
	if (*labels) {
		cm_buf_putc(out, ',');
		cm_buf_puts(out, labels);
	}
	if (le) {
		cm_buf_puts(out, ",le=\"");
		cm_buf_puts(out, le);
		cm_buf_putc(out, '"');
	}
	cm_buf_puts(out, "} ");
}

static void
render_histogram(struct cm_buf *out, const char *name, struct series *s)
{
	uint64_t total = 0;
	size_t i;

	for (i = 0; i < NBUCKETS; i++) {
		total += atomic_load_explicit(&s->buckets[i],
					      memory_order_relaxed);
		put_series_head(out, name, "_bucket", s->labels,
				i < NBOUNDS ? http_buckets[i].text : "+Inf");
		put_value(out, (double)total);
	}
	put_series_head(out, name, "_sum", s->labels, NULL);
	put_value(out, atomic_get_dbl(&s->value));
	/* _count is the +Inf bucket as read, so the two always agree. */
	put_series_head(out, name, "_count", s->labels, NULL);
	put_value(out, (double)total);
}

static void
render_family(struct cm_buf *out, const struct family *f)
{
	struct series *s;

	put_family_head(out, f->name, f->help, kind_names[f->kind]);
	for (s = f->head; s; s = s->next) {
		if (f->kind == KIND_HISTOGRAM) {
			render_histogram(out, f->name, s);
		} else {
			put_series_head(out, f->name, "", s->labels, NULL);
			put_value(out, atomic_get_dbl(&s->value));
		}
	}
}

static void
put_single(struct cm_buf *out, const char *name, const char *help,
	   const char *type, double v)
{
	put_family_head(out, name, help, type);
	put_series_head(out, name, "", "", NULL);
	put_value(out, v);
}

/* Read a small /proc file into buf (NUL-terminated); false on failure. */
static bool
read_small(const char *path, char *buf, size_t size)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return false;
	n = read(fd, buf, size - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	return true;
}

static bool
resident_bytes(double *out)
{
	char buf[256];
	char *p;
	long long pages;

	if (!read_small("/proc/self/statm", buf, sizeof(buf)))
		return false;
	p = strchr(buf, ' ');
	if (!p)
		return false;
	pages = strtoll(p + 1, NULL, 10);
	*out = (double)pages * (double)sysconf(_SC_PAGESIZE);
	return pages > 0;
}

static bool
boot_time(long long *out)
{
	FILE *f = fopen("/proc/stat", "re");
	char *line = NULL;
	size_t cap = 0;
	bool found = false;

	if (!f)
		return false;
	while (!found && getline(&line, &cap, f) > 0) {
		if (!strncmp(line, "btime ", 6)) {
			*out = strtoll(line + 6, NULL, 10);
			found = *out > 0;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/* Field 22 of /proc/self/stat (start time in clock ticks since boot),
   counted after the parenthesised command name, which may hold spaces. */
static bool
start_time(double *out)
{
	char buf[1024];
	long long btime, ticks;
	char *p;
	int field;

	if (!read_small("/proc/self/stat", buf, sizeof(buf)) ||
	    !boot_time(&btime))
		return false;
	p = strrchr(buf, ')');
	for (field = 2; p && field < 22; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return false;
	ticks = strtoll(p + 1, NULL, 10);
	*out = (double)btime + (double)ticks / (double)sysconf(_SC_CLK_TCK);
	return true;
}

static bool
open_fds(double *out)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	long n = 0;

	if (!d)
		return false;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	*out = (double)(n - 1); /* less the directory's own descriptor */
	return true;
}

static void
render_process(struct cm_buf *out)
{
	double v;

	if (resident_bytes(&v))
		put_single(out, "bz_process_resident_memory_bytes",
			   "Resident memory size in bytes.", "gauge", v);
	if (start_time(&v))
		put_single(out, "bz_process_start_time_seconds",
			   "Start time of the process since the epoch.",
			   "gauge", v);
	if (open_fds(&v))
		put_single(out, "bz_process_open_fds",
			   "Number of open file descriptors.", "gauge", v);
}

void
cm_metrics_render(struct cm_buf *out)
{
	size_t i;

	pthread_mutex_lock(&reg.lock);
	for (i = 0; i < reg.nfamilies; i++)
		render_family(out, reg.families[i]);
	pthread_mutex_unlock(&reg.lock);
	put_single(out, "bz_metrics_dropped_series_total",
		   "Updates dropped: bad name or labels, or over the cap.",
		   "counter",
		   (double)atomic_load_explicit(&reg.dropped,
						memory_order_relaxed));
	render_process(out);
}

void
cm_metrics_reset(void)
{
	size_t i;

	pthread_mutex_lock(&reg.lock);
	for (i = 0; i < TABLE_SIZE; i++) {
		struct series *s = atomic_load_explicit(&reg.slots[i],
							memory_order_relaxed);

		if (s) {
			free(s->labels);
			free(s);
			atomic_store_explicit(&reg.slots[i], NULL,
					      memory_order_relaxed);
		}
	}
	for (i = 0; i < reg.nfamilies; i++) {
		free(reg.families[i]->name);
		free(reg.families[i]->help);
		free(reg.families[i]);
		reg.families[i] = NULL;
	}
	reg.nfamilies = 0;
	reg.nseries = 0;
	atomic_store(&reg.dropped, 0);
	pthread_mutex_unlock(&reg.lock);
}
