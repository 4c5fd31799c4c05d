/* test_metrics.c - the Prometheus registry and its text rendering. */
#include "common/metrics.h"
#include "common/mem.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "testutil.h"

#include "common/banned.h"

static struct cm_buf out = CM_BUF_INIT(0);

static void
setup(void)
{
	cm_metrics_reset();
	cm_metrics_init("crm");
	cm_buf_init(&out, 0);
}

static void
teardown(void)
{
	cm_buf_release(&out);
	cm_metrics_reset();
}

static const char *
render(void)
{
	cm_buf_reset(&out);
	cm_metrics_render(&out);
	ck_assert_int_eq(cm_buf_error(&out), 0);
	return cm_buf_str(&out);
}

static int
count_of(const char *hay, const char *needle)
{
	int n = 0;
	const char *p;

	for (p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

/* The value on the line that starts with prefix, which must exist once. */
static double
value_of(const char *text, const char *prefix)
{
	const char *p = text;
	size_t n = strlen(prefix);

	while (p && strncmp(p, prefix, n) != 0) {
		p = strchr(p, '\n');
		p = p ? p + 1 : NULL;
	}
	ck_assert_msg(p, "no line starting with %s", prefix);
	return strtod(p + n, NULL);
}

START_TEST(test_counter_renders_help_type_and_service_label_first)
{
	cm_metrics_counter_add("bz_leads_created_total", "Leads created.",
			       "tenant=\"t1\"", 2);
	cm_metrics_counter_add("bz_leads_created_total", "Leads created.",
			       "tenant=\"t1\"", 0.5);
	ck_assert_ptr_nonnull(strstr(
		render(), "# HELP bz_leads_created_total Leads created.\n"
			  "# TYPE bz_leads_created_total counter\n"
			  "bz_leads_created_total{service=\"crm\","
			  "tenant=\"t1\"} 2.5\n"));
}
END_TEST

START_TEST(test_counter_without_labels_and_prefix_gets_both_added)
{
	cm_metrics_counter_add("jobs_total", "Jobs.", NULL, 3);
	cm_metrics_counter_add("bz_jobs_total", "Jobs.", "", 1);
	ck_assert_ptr_nonnull(strstr(render(), "# TYPE bz_jobs_total counter\n"
					       "bz_jobs_total{service=\"crm\"} "
					       "4\n"));
}
END_TEST

START_TEST(test_counter_ignores_negative_nan_and_infinite_increments)
{
	cm_metrics_counter_add("bz_c_total", "C.", NULL, 1);
	cm_metrics_counter_add("bz_c_total", "C.", NULL, -5);
	cm_metrics_counter_add("bz_c_total", "C.", NULL, 0.0 / 0.0);
	cm_metrics_counter_add("bz_c_total", "C.", NULL, 1.0 / 0.0);
	ck_assert_double_eq(value_of(render(), "bz_c_total{service=\"crm\"} "),
			    1);
}
END_TEST

START_TEST(test_gauge_set_then_add_moves_both_ways)
{
	cm_metrics_gauge_set("bz_queue_depth", "Queue depth.", "q=\"a\"", 10);
	cm_metrics_gauge_add("bz_queue_depth", "Queue depth.", "q=\"a\"", -3);
	cm_metrics_gauge_add("bz_queue_depth", "Queue depth.", "q=\"a\"", 0.25);
	ck_assert_ptr_nonnull(strstr(render(),
				     "# TYPE bz_queue_depth gauge\n"
				     "bz_queue_depth{service=\"crm\",q=\"a\"} "
				     "7.25\n"));
	cm_metrics_gauge_set("bz_queue_depth", "Queue depth.", "q=\"a\"", -1);
	ck_assert_ptr_nonnull(strstr(
		render(), "bz_queue_depth{service=\"crm\",q=\"a\"} -1\n"));
}
END_TEST

START_TEST(test_histogram_buckets_are_cumulative_with_count_and_sum)
{
	static const char *const want =
		"# HELP bz_http_request_duration_seconds HTTP request latency "
		"in seconds.\n"
		"# TYPE bz_http_request_duration_seconds histogram\n"
		"bz_http_request_duration_seconds_bucket{service=\"crm\","
		"route=\"/api/leads/:id\",method=\"GET\",status=\"200\","
		"le=\"0.001\"} 1\n";
	const char *text;

	/* exactly representable, two on bucket bounds (le is inclusive) */
	cm_metrics_http_observe("/api/leads/:id", "GET", 200, 0.0009765625);
	cm_metrics_http_observe("/api/leads/:id", "GET", 200, 0.25);
	cm_metrics_http_observe("/api/leads/:id", "GET", 200, 0.5);
	cm_metrics_http_observe("/api/leads/:id", "GET", 200, 4);
	text = render();
	ck_assert_ptr_nonnull(strstr(text, want));
#define L                                                           \
	"{service=\"crm\",route=\"/api/leads/:id\",method=\"GET\"," \
	"status=\"200\""
	ck_assert_ptr_nonnull(strstr(
		text,
		"bz_http_request_duration_seconds_bucket" L ",le=\"0.1\"} 1\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"0.25\"} 2\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"0.5\"} 3\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"1\"} 3\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"2.5\"} 3\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"5\"} 4\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"10\"} 4\n"
		"bz_http_request_duration_seconds_bucket" L ",le=\"+Inf\"} 4\n"
		"bz_http_request_duration_seconds_sum" L "} 4.7509765625\n"
		"bz_http_request_duration_seconds_count" L "} 4\n"));
	ck_assert_ptr_nonnull(strstr(text,
				     "# TYPE bz_http_requests_total counter\n"
				     "bz_http_requests_total" L "} 4\n"));
#undef L
	ck_assert_int_eq(count_of(text, "_bucket{"), 14);
}
END_TEST

START_TEST(test_histogram_counts_slow_requests_only_in_inf_bucket)
{
	const char *text;

	cm_metrics_http_observe("/r", "POST", 500, 60);
	cm_metrics_http_observe("/r", "POST", 500, -1); /* clock skew: 0 */
	text = render();
	ck_assert_double_eq(
		value_of(text,
			 "bz_http_request_duration_seconds_bucket{service="
			 "\"crm\",route=\"/r\",method=\"POST\",status="
			 "\"500\",le=\"0.001\"} "),
		1);
	ck_assert_double_eq(
		value_of(text,
			 "bz_http_request_duration_seconds_bucket{service="
			 "\"crm\",route=\"/r\",method=\"POST\",status="
			 "\"500\",le=\"10\"} "),
		1);
	ck_assert_double_eq(
		value_of(text,
			 "bz_http_request_duration_seconds_bucket{service="
			 "\"crm\",route=\"/r\",method=\"POST\",status="
			 "\"500\",le=\"+Inf\"} "),
		2);
}
END_TEST

START_TEST(test_label_values_and_help_are_escaped)
{
	struct cm_buf lbl = CM_BUF_INIT(0);
	const char *text;

	cm_metrics_init("we\"ird\\svc");
	cm_metrics_http_observe("/a\"b\\c\nd", "GET", 404, 0.01);
	cm_metrics_label_append(&lbl, "x", "q\"b\\s\nn");
	cm_metrics_label_append(&lbl, "y", "plain");
	ck_assert_str_eq(cm_buf_str(&lbl), "x=\"q\\\"b\\\\s\\nn\",y=\"plain\"");
	cm_metrics_gauge_set("bz_g", "two\nlines \\ and \"quotes\"",
			     cm_buf_str(&lbl), 1);
	cm_buf_release(&lbl);
	text = render();
	ck_assert_ptr_nonnull(strstr(
		text, "bz_http_requests_total{service=\"we\\\"ird\\\\svc\","
		      "route=\"/a\\\"b\\\\c\\nd\",method=\"GET\","
		      "status=\"404\"} 1\n"));
	ck_assert_ptr_nonnull(
		strstr(text, "# HELP bz_g two\\nlines \\\\ and \"quotes\"\n"));
	ck_assert_ptr_nonnull(strstr(text, "bz_g{service=\"we\\\"ird\\\\svc\","
					   "x=\"q\\\"b\\\\s\\nn\",y=\"plain\"} "
					   "1\n"));
}
END_TEST

START_TEST(test_help_and_type_appear_once_per_family_with_series_together)
{
	const char *text;
	const char *type;

	cm_metrics_counter_add("bz_a_total", "A.", "k=\"1\"", 1);
	cm_metrics_gauge_set("bz_b", "B.", NULL, 1);
	cm_metrics_counter_add("bz_a_total", "A.", "k=\"2\"", 1);
	cm_metrics_counter_add("bz_a_total", "Other help.", "k=\"3\"", 1);
	text = render();
	ck_assert_int_eq(count_of(text, "# HELP bz_a_total "), 1);
	ck_assert_int_eq(count_of(text, "# TYPE bz_a_total "), 1);
	ck_assert_int_eq(count_of(text, "Other help."), 0);
	type = strstr(text, "# TYPE bz_a_total counter\n");
	ck_assert_ptr_nonnull(type);
	ck_assert_ptr_eq(strstr(text, "bz_a_total{"),
			 type + strlen("# TYPE bz_a_total counter\n"));
	ck_assert_ptr_nonnull(strstr(text,
				     "bz_a_total{service=\"crm\",k=\"1\"} "
				     "1\nbz_a_total{service=\"crm\","
				     "k=\"2\"} 1\nbz_a_total{service=\""
				     "crm\",k=\"3\"} 1\n"));
}
END_TEST

START_TEST(test_dependency_up_is_one_then_zero)
{
	cm_metrics_dep_set("postgres", true);
	ck_assert_ptr_nonnull(strstr(render(),
				     "bz_dependency_up{service=\"crm\","
				     "dependency=\"postgres\"} 1\n"));
	cm_metrics_dep_set("postgres", false);
	ck_assert_ptr_nonnull(strstr(render(),
				     "bz_dependency_up{service=\"crm\","
				     "dependency=\"postgres\"} 0\n"));
	ck_assert_int_eq(count_of(render(), "bz_dependency_up{"), 1);
}
END_TEST

START_TEST(test_process_metrics_are_rendered_with_plausible_values)
{
	const char *text = render();
	double now = (double)time(NULL);
	double start;

	ck_assert_ptr_nonnull(strstr(
		text, "# TYPE bz_process_resident_memory_bytes gauge\n"));
	ck_assert_double_gt(
		value_of(text,
			 "bz_process_resident_memory_bytes{service=\"crm\"} "),
		4096);
	ck_assert_double_ge(
		value_of(text, "bz_process_open_fds{service=\"crm\"} "), 3);
	start = value_of(text,
			 "bz_process_start_time_seconds{service=\"crm\"} ");
	ck_assert_double_le(start, now + 1);
	ck_assert_double_gt(start, now - 600);
}
END_TEST

START_TEST(test_malformed_names_and_labels_are_dropped_and_counted)
{
	const char *text;

	cm_metrics_counter_add("bz_bad name", "x", NULL, 1);
	cm_metrics_counter_add("bz_1", "x", "k=\"unterminated", 1);
	cm_metrics_counter_add("bz_1", "x", "k=\"v\",", 1);
	cm_metrics_counter_add("bz_1", "x", "k=\"bad\\escape\"", 1);
	cm_metrics_counter_add("bz_1", "x", "service=\"spoof\"", 1);
	cm_metrics_counter_add("bz_1", "x", "k=v", 1);
	cm_metrics_counter_add(NULL, "x", NULL, 1);
	cm_metrics_counter_add("bz_ok_total", "x", "a=\"1\",b=\"\\\\\"", 1);
	text = render();
	ck_assert_double_eq(
		value_of(text,
			 "bz_metrics_dropped_series_total{service=\"crm\"} "),
		7);
	ck_assert_int_eq(count_of(text, "bz_1"), 0);
	ck_assert_ptr_nonnull(strstr(text,
				     "bz_ok_total{service=\"crm\",a=\"1\","
				     "b=\"\\\\\"} 1\n"));
}
END_TEST

START_TEST(test_a_name_keeps_its_first_type)
{
	const char *text;

	cm_metrics_counter_add("bz_thing", "x", NULL, 1);
	cm_metrics_gauge_set("bz_thing", "x", NULL, 50);
	cm_metrics_gauge_set("bz_thing", "x", "other=\"series\"", 50);
	text = render();
	ck_assert_ptr_nonnull(strstr(text, "# TYPE bz_thing counter\n"
					   "bz_thing{service=\"crm\"} 1\n"));
	ck_assert_double_eq(
		value_of(text,
			 "bz_metrics_dropped_series_total{service=\"crm\"} "),
		2);
}
END_TEST

START_TEST(test_series_over_the_cap_are_dropped_and_old_ones_still_update)
{
	char labels[64];
	const char *text;
	int i;

	for (i = 0; i < CM_METRICS_MAX_SERIES + 10; i++) {
		snprintf(labels, sizeof(labels), "n=\"%d\"", i);
		cm_metrics_gauge_set("bz_many", "Many.", labels, i);
	}
	cm_metrics_gauge_set("bz_many", "Many.", "n=\"0\"", 42);
	cm_metrics_counter_add("bz_new_family_total", "New.", NULL, 1);
	text = render();
	ck_assert_int_eq(count_of(text, "\nbz_many{"), CM_METRICS_MAX_SERIES);
	ck_assert_ptr_nonnull(
		strstr(text, "bz_many{service=\"crm\",n=\"4095\"} 4095\n"));
	ck_assert_ptr_null(strstr(text, "n=\"4096\""));
	ck_assert_ptr_nonnull(
		strstr(text, "bz_many{service=\"crm\",n=\"0\"} 42\n"));
	ck_assert_ptr_null(strstr(text, "bz_new_family_total"));
	ck_assert_double_eq(
		value_of(text,
			 "bz_metrics_dropped_series_total{service=\"crm\"} "),
		11);
}
END_TEST

START_TEST(test_reset_drops_every_series_and_the_drop_count)
{
	const char *text;

	cm_metrics_counter_add("bz_gone_total", "Gone.", NULL, 1);
	cm_metrics_counter_add("bz_bad name", "x", NULL, 1);
	cm_metrics_http_observe("/x", "GET", 200, 0.1);
	cm_metrics_reset();
	text = render();
	ck_assert_ptr_null(strstr(text, "bz_gone_total"));
	ck_assert_ptr_null(strstr(text, "bz_http_"));
	ck_assert_double_eq(
		value_of(text,
			 "bz_metrics_dropped_series_total{service=\"crm\"} "),
		0);
	cm_metrics_counter_add("bz_gone_total", "Back.", NULL, 5);
	ck_assert_ptr_nonnull(strstr(render(), "# HELP bz_gone_total Back.\n"
					       "# TYPE bz_gone_total counter\n"
					       "bz_gone_total{service=\"crm\"} "
					       "5\n"));
}
END_TEST

#define THREADS 4
#define PER_THREAD 100000

static void *
hammer(void *arg)
{
	char labels[32];
	int i;

	snprintf(labels, sizeof(labels), "t=\"%d\"", (int)(long)arg % 2);
	for (i = 0; i < PER_THREAD; i++) {
		cm_metrics_counter_add("bz_hits_total", "Hits.", NULL, 1);
		cm_metrics_gauge_add("bz_level", "Level.", labels, 1);
		if (i % 10 == 0)
			cm_metrics_http_observe("/h", "GET", 200, 0.002);
	}
	return NULL;
}

static void *
render_loop(void *arg)
{
	struct cm_buf b = CM_BUF_INIT(0);
	int i;

	(void)arg;
	for (i = 0; i < 50; i++) {
		cm_buf_reset(&b);
		cm_metrics_render(&b);
	}
	cm_buf_release(&b);
	return NULL;
}

START_TEST(test_concurrent_updates_are_exact_while_rendering)
{
	pthread_t th[THREADS + 1];
	const char *text;
	long i;

	for (i = 0; i < THREADS; i++)
		ck_assert_int_eq(
			pthread_create(&th[i], NULL, hammer, (void *)i), 0);
	ck_assert_int_eq(pthread_create(&th[THREADS], NULL, render_loop, NULL),
			 0);
	for (i = 0; i <= THREADS; i++)
		pthread_join(th[i], NULL);
	text = render();
	ck_assert_double_eq(value_of(text, "bz_hits_total{service=\"crm\"} "),
			    THREADS * PER_THREAD);
	ck_assert_double_eq(
		value_of(text, "bz_level{service=\"crm\",t=\"0\"} "),
		THREADS / 2 * PER_THREAD);
	ck_assert_double_eq(
		value_of(text, "bz_http_request_duration_seconds_count{service="
			       "\"crm\",route=\"/h\",method=\"GET\",status="
			       "\"200\"} "),
		THREADS * PER_THREAD / 10);
	ck_assert_double_eq(
		value_of(text,
			 "bz_http_request_duration_seconds_bucket{service="
			 "\"crm\",route=\"/h\",method=\"GET\",status="
			 "\"200\",le=\"0.001\"} "),
		0);
}
END_TEST

static Suite *
make_suite(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("registry");
	TCase *slow = tcase_create("concurrency");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc,
		       test_counter_renders_help_type_and_service_label_first);
	tcase_add_test(tc,
		       test_counter_without_labels_and_prefix_gets_both_added);
	tcase_add_test(
		tc, test_counter_ignores_negative_nan_and_infinite_increments);
	tcase_add_test(tc, test_gauge_set_then_add_moves_both_ways);
	tcase_add_test(
		tc, test_histogram_buckets_are_cumulative_with_count_and_sum);
	tcase_add_test(tc,
		       test_histogram_counts_slow_requests_only_in_inf_bucket);
	tcase_add_test(tc, test_label_values_and_help_are_escaped);
	tcase_add_test(
		tc,
		test_help_and_type_appear_once_per_family_with_series_together);
	tcase_add_test(tc, test_dependency_up_is_one_then_zero);
	tcase_add_test(tc,
		       test_process_metrics_are_rendered_with_plausible_values);
	tcase_add_test(tc,
		       test_malformed_names_and_labels_are_dropped_and_counted);
	tcase_add_test(tc, test_a_name_keeps_its_first_type);
	tcase_add_test(
		tc,
		test_series_over_the_cap_are_dropped_and_old_ones_still_update);
	tcase_add_test(tc, test_reset_drops_every_series_and_the_drop_count);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(slow, setup, teardown);
	tcase_set_timeout(slow, 60);
	tcase_add_test(slow, test_concurrent_updates_are_exact_while_rendering);
	suite_add_tcase(s, slow);
	return s;
}

CM_TEST_MAIN(make_suite)
