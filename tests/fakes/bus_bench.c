/*
 * bus_bench.c - the event bus benchmark's client (scripts/bench bus), built
 * to $BUILD/fakes/bus_bench. Settings come from the environment
 * (REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, JWT_SECRET_KEY, JWT_ISSUER,
 * JWT_AUDIENCE), as scripts/stack env prints them.
 *
 *   bus_bench token TENANT
 *       a one-hour owner token for TENANT (for wrk)
 *   bus_bench publish TENANT CLIENTS SECONDS
 *       CLIENTS threads calling cm_bus_publish as fast as they can;
 *       prints "published SECONDS RATE"
 *   bus_bench latency TENANT RATE SECONDS
 *       one thread publishing RATE events/s (paced), a subscriber of its
 *       own group on TENANT's stream timing publish -> handler; prints
 *       "sent handled p50_us p99_us p999_us max_us"
 */
#include "common/auth.h"
#include "common/bus.h"
#include "common/mem.h"
#include "common/redis.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/banned.h"

#define MAX_CLIENTS 256
#define MAX_SAMPLES 2000000

static const char *tenant;
static atomic_llong published;
static atomic_int failed;
static int64_t deadline_us;

static int64_t
wall_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char *
env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v && *v ? v : def;
}

static int
redis_setup(void)
{
	struct cm_redis_config rc = { 0 };
	char errbuf[CM_ERRBUF_LEN] = "";
	int64_t port = 6379;

	if (cm_parse_i64(env_or("REDIS_PORT", "6379"), 1, 65535, &port) < 0)
		return -1;
	rc.host = env_or("REDIS_HOST", "127.0.0.1");
	rc.port = (int)port;
	rc.password = getenv("REDIS_PASSWORD");
	if (cm_redis_init(&rc, errbuf) < 0) {
		fprintf(stderr, "bus_bench: redis: %s\n", errbuf);
		return -1;
	}
	return 0;
}

/* One event as a service would publish it; us goes into data.sent_us. */
static cJSON *
bench_event(int64_t us)
{
	cJSON *data = cJSON_CreateObject();

	cJSON_AddStringToObject(data, "message", "bench");
	if (us)
		cJSON_AddNumberToObject(data, "sent_us", (double)us);
	return cm_bus_envelope_new("system.maintenance", "bench", "system",
				   "bench", data);
}

static void *
publisher(void *arg)
{
	char errbuf[CM_ERRBUF_LEN];
	cJSON *env;

	(void)arg;
	while (wall_us() < deadline_us) {
		env = bench_event(0);
		if (cm_bus_publish(tenant, env, NULL, errbuf) == 0)
			atomic_fetch_add(&published, 1);
		else if (atomic_fetch_add(&failed, 1) == 0)
			fprintf(stderr, "bus_bench: publish: %s\n", errbuf);
		cJSON_Delete(env);
	}
	return NULL;
}

static int
cmd_publish(int clients, int seconds)
{
	pthread_t t[MAX_CLIENTS];
	int64_t t0;
	double secs;
	int i;

	t0 = wall_us();
	deadline_us = t0 + (int64_t)seconds * 1000000;
	for (i = 0; i < clients; i++)
		pthread_create(&t[i], NULL, publisher, NULL);
	for (i = 0; i < clients; i++)
		pthread_join(t[i], NULL);
	secs = (double)(wall_us() - t0) / 1e6;
	printf("%lld %.2f %.0f\n", (long long)atomic_load(&published), secs,
	       (double)atomic_load(&published) / secs);
	return atomic_load(&failed) ? 1 : 0;
}

static int64_t *samples;
static atomic_int nsamples;
static atomic_int sub_stop;

static int
time_it(const struct cm_bus_event *ev, void *arg, char errbuf[CM_ERRBUF_LEN])
{
	const cJSON *d = cJSON_GetObjectItem(ev->env, "data");
	const cJSON *sent = cJSON_GetObjectItem(d, "sent_us");
	int n;

	(void)arg;
	(void)errbuf;
	if (!cJSON_IsNumber(sent))
		return 0;
	n = atomic_fetch_add(&nsamples, 1);
	if (n < MAX_SAMPLES)
		samples[n] = wall_us() - (int64_t)sent->valuedouble;
	return 0;
}

static void *
subscriber(void *arg)
{
	struct cm_bus_sub *s = arg;
	char errbuf[CM_ERRBUF_LEN];

	while (!atomic_load(&sub_stop))
		if (cm_bus_sub_poll(s, NULL, errbuf) < 0)
			fprintf(stderr, "bus_bench: poll: %s\n", errbuf);
	return NULL;
}

static int
cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

/* Publish at rate for seconds, paced by absolute due times. */
static long long
paced(int rate, int seconds)
{
	char errbuf[CM_ERRBUF_LEN];
	long long i, total = (long long)rate * seconds;
	int64_t t0 = wall_us(), due, now;
	cJSON *env;

	for (i = 0; i < total; i++) {
		due = t0 + i * 1000000 / rate;
		while ((now = wall_us()) < due)
			usleep((useconds_t)(due - now > 50 ? due - now : 1));
		env = bench_event(wall_us());
		if (cm_bus_publish(tenant, env, NULL, errbuf) < 0 &&
		    atomic_fetch_add(&failed, 1) == 0)
			fprintf(stderr, "bus_bench: publish: %s\n", errbuf);
		cJSON_Delete(env);
	}
	return total;
}

static int
cmd_latency(int rate, int seconds)
{
	struct cm_bus_sub_config c = { 0 };
	struct cm_bus_sub *s;
	char group[48];
	pthread_t t;
	long long sent;
	int n, i;

	samples = cm_xcalloc(MAX_SAMPLES, sizeof(*samples));
	snprintf(group, sizeof(group), "bench-%ld", (long)getpid());
	c.group = group;
	c.consumer = "c";
	c.tenant_id = tenant;
	c.block_ms = 100;
	c.fn = time_it;
	if (!(s = cm_bus_sub_new(&c)))
		return 2;
	pthread_create(&t, NULL, subscriber, s);
	usleep(200 * 1000); /* the group exists before the first event */
	sent = paced(rate, seconds);
	for (i = 0; i < 50 && atomic_load(&nsamples) < sent; i++)
		usleep(100 * 1000);
	atomic_store(&sub_stop, 1);
	cm_bus_sub_stop(s);
	pthread_join(t, NULL);
	n = atomic_load(&nsamples) < MAX_SAMPLES ? atomic_load(&nsamples)
						 : MAX_SAMPLES;
	qsort(samples, (size_t)n, sizeof(*samples), cmp_i64);
	printf("%lld %d %lld %lld %lld %lld\n", sent, n,
	       (long long)(n ? samples[n / 2] : 0),
	       (long long)(n ? samples[(int)(n * 0.99)] : 0),
	       (long long)(n ? samples[(int)(n * 0.999)] : 0),
	       (long long)(n ? samples[n - 1] : 0));
	cm_bus_sub_free(s);
	free(samples);
	return atomic_load(&failed) ? 1 : 0;
}

static int
cmd_token(void)
{
	const char *key = getenv("JWT_SECRET_KEY");
	char errbuf[CM_ERRBUF_LEN] = "", claims[512], jti[37];
	char *tok = NULL;
	int64_t now = cm_now_s();

	if (!key || cm_uuid_v4(jti) < 0)
		return 2;
	snprintf(
		claims, sizeof(claims),
		"{\"sub\":\"bench\",\"iss\":\"%s\",\"aud\":\"%s\",\"iat\":%lld,"
		"\"exp\":%lld,\"jti\":\"%s\",\"roles\":[\"owner\"],"
		"\"tenant_id\":\"%s\"}",
		env_or("JWT_ISSUER", "bizosaas-brain"),
		env_or("JWT_AUDIENCE", "bizosaas"), (long long)now,
		(long long)(now + 3600), jti, tenant);
	if (cm_jwt_sign(CM_JWT_HS256, (const unsigned char *)key, strlen(key),
			claims, &tok, errbuf) < 0) {
		fprintf(stderr, "bus_bench: token: %s\n", errbuf);
		return 1;
	}
	printf("%s\n", tok);
	free(tok);
	return 0;
}

static int
usage(void)
{
	fprintf(stderr, "usage: bus_bench token TENANT | publish TENANT "
			"CLIENTS SECONDS | latency TENANT RATE SECONDS\n");
	return 2;
}

int
main(int argc, char **argv)
{
	int64_t a = 0, b = 0;

	if (argc < 3 || !cm_is_uuid(argv[2]))
		return usage();
	tenant = argv[2];
	if (strcmp(argv[1], "token") == 0)
		return cmd_token();
	if (argc != 5 || cm_parse_i64(argv[3], 1, 1000000, &a) < 0 ||
	    cm_parse_i64(argv[4], 1, 3600, &b) < 0 || redis_setup() < 0)
		return usage();
	if (strcmp(argv[1], "publish") == 0 && a <= MAX_CLIENTS)
		return cmd_publish((int)a, (int)b);
	if (strcmp(argv[1], "latency") == 0)
		return cmd_latency((int)a, (int)b);
	return usage();
}
