/*
 * check_metrics.c — request counters, latency histograms, manifest counts and the
 * pool's and graph's gauges (cmdbd/metrics.c) in Prometheus text format.
 *
 * The counters are process-global and cannot be reset, so every test compares the
 * rendered values before and after what it records (it works with CK_FORK=no too).
 */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "metrics.h"

static char *
render(void)
{
	char *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_render(&buf, &len), 0);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(strlen(buf), len);
	return buf;
}

/* The value of the sample `series` ("name{labels}") in text, or -1 when absent. */
static double
sample(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *line = text; line != NULL && *line != '\0';) {
		const char *nl = strchr(line, '\n');

		if (strncmp(line, series, n) == 0 && line[n] == ' ')
			return strtod(line + n + 1, NULL);
		line = nl ? nl + 1 : NULL;
	}
	return -1;
}

/* Current value of a series, 0 when it is not rendered yet. */
static double
value(const char *series)
{
	char *text = render();
	double v = sample(text, series);

	free(text);
	return v < 0 ? 0 : v;
}

START_TEST(test_request_counter)
{
	const char *ok = "cmdb_http_requests_total{route=\"node.get\",status=\"200\"}";
	const char *nf = "cmdb_http_requests_total{route=\"node.get\",status=\"404\"}";
	double ok0 = value(ok), nf0 = value(nf);

	metrics_observe_request("node.get", 200, 0.001);
	metrics_observe_request("node.get", 200, 0.002);
	metrics_observe_request("node.get", 404, 0.003);
	ck_assert_double_eq(value(ok), ok0 + 2);
	ck_assert_double_eq(value(nf), nf0 + 1);
}
END_TEST

/* An unknown route is counted under "none", not dropped. */
START_TEST(test_unknown_route)
{
	const char *none = "cmdb_http_requests_total{route=\"none\",status=\"404\"}";
	double before = value(none);

	metrics_observe_request("no.such.route", 404, 0.0001);
	metrics_observe_request("none", 404, 0.0001);
	ck_assert_double_eq(value(none), before + 2);
}
END_TEST

/* Buckets are cumulative and `le` is inclusive; sum and count follow. */
START_TEST(test_histogram)
{
	static const struct {
		const char *le;
		int hits; /* of the observations below at or under le */
	} want[] = {
	    {"0.0005", 1}, {"0.001", 1}, {"0.0025", 1}, {"0.005", 2}, {"0.01", 2},
	    {"0.025", 2},  {"0.05", 2},	 {"0.1", 2},	{"0.25", 2},  {"0.5", 2},
	    {"1", 3},	   {"5", 3},	 {"+Inf", 4},
	};
	const double obs[] = {0.0005, 0.004, 1.0, 10.0};
	double before[sizeof(want) / sizeof(want[0])];
	char series[128];
	double sum0, count0;

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(series, sizeof(series),
			 "cmdb_http_request_duration_seconds_bucket{route=\"graph\",le=\"%s\"}",
			 want[i].le);
		before[i] = value(series);
	}
	sum0 = value("cmdb_http_request_duration_seconds_sum{route=\"graph\"}");
	count0 = value("cmdb_http_request_duration_seconds_count{route=\"graph\"}");

	for (size_t i = 0; i < sizeof(obs) / sizeof(obs[0]); i++)
		metrics_observe_request("graph", 200, obs[i]);

	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(series, sizeof(series),
			 "cmdb_http_request_duration_seconds_bucket{route=\"graph\",le=\"%s\"}",
			 want[i].le);
		ck_assert_msg(value(series) == before[i] + want[i].hits, "%s: %g, want %g", series,
			      value(series), before[i] + want[i].hits);
	}
	ck_assert_double_eq_tol(value("cmdb_http_request_duration_seconds_sum{route=\"graph\"}"),
				sum0 + 11.0045, 1e-5);
	ck_assert_double_eq(value("cmdb_http_request_duration_seconds_count{route=\"graph\"}"),
			    count0 + 4);
}
END_TEST

/* More distinct status codes than slots: no crash, and no request goes uncounted. */
START_TEST(test_many_statuses)
{
	char *text;
	double total = 0;
	const char *prefix = "cmdb_http_requests_total{route=\"path\",status=\"";
	double count0 = value("cmdb_http_request_duration_seconds_count{route=\"path\"}");

	for (int st = 100; st < 140; st++)
		metrics_observe_request("path", st, 0.001);
	text = render();
	for (const char *p = strstr(text, prefix); p != NULL; p = strstr(p + 1, prefix))
		total += strtod(strchr(p, ' ') + 1, NULL);
	ck_assert_double_eq(total, count0 + 40);
	free(text);
}
END_TEST

START_TEST(test_manifest_counts)
{
	const char *outcomes[] = {"applied", "noop", "dry_run", "rejected", "failed"};
	double before[5];
	char series[96];

	for (int i = 0; i < 5; i++) {
		snprintf(series, sizeof(series), "cmdb_manifests_total{outcome=\"%s\"}",
			 outcomes[i]);
		before[i] = value(series);
		/* All five are rendered even at zero. */
		ck_assert_double_ge(before[i], 0);
	}
	for (int i = 0; i < 5; i++)
		for (int k = 0; k <= i; k++)
			metrics_count_manifest(outcomes[i]);
	metrics_count_manifest("exploded"); /* unknown: ignored */
	for (int i = 0; i < 5; i++) {
		snprintf(series, sizeof(series), "cmdb_manifests_total{outcome=\"%s\"}",
			 outcomes[i]);
		ck_assert_double_eq(value(series), before[i] + i + 1);
	}
}
END_TEST

START_TEST(test_sweep_counts)
{
	double expired = value("cmdb_sweep_total{action=\"source_expired\"}");
	double purged = value("cmdb_sweep_total{action=\"orphan_purged\"}");

	ck_assert_double_ge(expired, 0); /* rendered at zero */
	ck_assert_double_ge(purged, 0);
	metrics_count_sweep("source_expired");
	metrics_count_sweep("orphan_purged");
	metrics_count_sweep("orphan_purged");
	metrics_count_sweep("vacuumed"); /* unknown: ignored */
	ck_assert_double_eq(value("cmdb_sweep_total{action=\"source_expired\"}"), expired + 1);
	ck_assert_double_eq(value("cmdb_sweep_total{action=\"orphan_purged\"}"), purged + 2);
}
END_TEST

/* Every line of text is a comment (# HELP / # TYPE) or `name{labels} value`, and
 * each of the families ("name type") has its TYPE line. Consumes text. */
static void
assert_format(char *text, const char *const *families, size_t nfamilies)
{
	regex_t sample_re, comment_re;
	char *line, *save = NULL;

	ck_assert_int_eq(text[strlen(text) - 1], '\n');
	for (size_t i = 0; i < nfamilies; i++) {
		char want[128];

		snprintf(want, sizeof(want), "# TYPE %s\n", families[i]);
		ck_assert_msg(strstr(text, want) != NULL, "no %s", want);
	}
	ck_assert_int_eq(regcomp(&sample_re,
				 "^[a-zA-Z_:][a-zA-Z0-9_:]*(\\{([a-z_]+=\"[^\"]*\",?)*\\})? "
				 "[0-9][0-9.e+-]*$",
				 REG_EXTENDED | REG_NOSUB),
			 0);
	ck_assert_int_eq(
	    regcomp(&comment_re, "^# (HELP|TYPE) [a-z_]+ .+$", REG_EXTENDED | REG_NOSUB), 0);
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
		ck_assert_msg(regexec(&sample_re, line, 0, NULL, 0) == 0 ||
				  regexec(&comment_re, line, 0, NULL, 0) == 0,
			      "bad line: %s", line);
	regfree(&sample_re);
	regfree(&comment_re);
}

START_TEST(test_format)
{
	static const char *const families[] = {"cmdb_http_requests_total counter",
					       "cmdb_http_request_duration_seconds histogram",
					       "cmdb_manifests_total counter",
					       "cmdb_http_connections_open gauge",
					       "cmdb_http_connections_max gauge",
					       "cmdb_http_connections_refused_total counter",
					       "cmdb_http_request_timeouts_total counter",
					       "cmdb_sweep_total counter"};
	char *text;

	metrics_observe_request("healthz", 200, 0.0001);
	text = render();
	assert_format(text, families, sizeof(families) / sizeof(families[0]));
	free(text);
}
END_TEST

/* The pool's and the graph's gauges show the values they are given, each under
 * its own series, in the same format. */
START_TEST(test_gauges)
{
	static const char *const families[] = {"cmdb_db_connections gauge",
					       "cmdb_db_queue_depth gauge",
					       "cmdb_db_queries_total counter",
					       "cmdb_db_errors_total counter",
					       "cmdb_db_unavailable_total counter",
					       "cmdb_db_retries_total counter",
					       "cmdb_db_connects_total counter",
					       "cmdb_graph_nodes gauge",
					       "cmdb_graph_edges gauge",
					       "cmdb_change_seq gauge"};
	static const struct {
		const char *series;
		double want;
	} samples[] = {
	    {"cmdb_db_connections{state=\"total\"}", 4},
	    {"cmdb_db_connections{state=\"up\"}", 3},
	    {"cmdb_db_connections{state=\"busy\"}", 2},
	    {"cmdb_db_queue_depth", 7},
	    {"cmdb_db_queries_total", 1000001},
	    {"cmdb_db_errors_total", 11},
	    {"cmdb_db_unavailable_total", 12},
	    {"cmdb_db_retries_total", 13},
	    {"cmdb_db_connects_total", 14},
	    {"cmdb_graph_nodes", 100000},
	    {"cmdb_graph_edges", 987654},
	    {"cmdb_change_seq", 4242424242.0},
	};
	struct db_stats st = {.total = 4,
			      .up = 3,
			      .busy = 2,
			      .queued = 7,
			      .queries = 1000001,
			      .errors = 11,
			      .unavailable = 12,
			      .retries = 13,
			      .reconnects = 14};
	char *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_render_db(&buf, &len, &st), 0);
	ck_assert_int_eq(metrics_render_graph(&buf, &len, 100000, 987654, 4242424242LL), 0);
	ck_assert_uint_eq(strlen(buf), len);
	for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
		ck_assert_msg(sample(buf, samples[i].series) == samples[i].want, "%s: %g",
			      samples[i].series, sample(buf, samples[i].series));
	assert_format(buf, families, sizeof(families) / sizeof(families[0]));
	free(buf);
}
END_TEST

/* Connections: the gauges show what was set last; the counters count. */
START_TEST(test_connections)
{
	const char *hdr = "cmdb_http_request_timeouts_total{phase=\"headers\"}";
	const char *body = "cmdb_http_request_timeouts_total{phase=\"body\"}";
	double refused0 = value("cmdb_http_connections_refused_total");
	double hdr0 = value(hdr), body0 = value(body);

	metrics_set_connections(7, 20);
	ck_assert_double_eq(value("cmdb_http_connections_open"), 7);
	ck_assert_double_eq(value("cmdb_http_connections_max"), 20);
	metrics_count_connection_refused();
	metrics_count_connection_refused();
	metrics_count_request_timeout("headers");
	metrics_count_request_timeout("body");
	metrics_count_request_timeout("body");
	ck_assert_double_eq(value("cmdb_http_connections_refused_total"), refused0 + 2);
	ck_assert_double_eq(value(hdr), hdr0 + 1);
	ck_assert_double_eq(value(body), body0 + 2);
}
END_TEST

START_TEST(test_appendf)
{
	char *buf = NULL;
	size_t len = 0;

	ck_assert_int_eq(metrics_appendf(&buf, &len, "a %d\n", 1), 0);
	ck_assert_int_eq(metrics_appendf(&buf, &len, "%s", ""), 0);
	for (int i = 0; i < 1000; i++)
		ck_assert_int_eq(metrics_appendf(&buf, &len, "line_%04d\n", i), 0);
	ck_assert_uint_eq(len, 4 + 1000 * 10);
	ck_assert_uint_eq(strlen(buf), len);
	ck_assert(strncmp(buf, "a 1\nline_0000\n", 14) == 0);
	ck_assert_str_eq(buf + len - 10, "line_0999\n");
	free(buf);
}
END_TEST

Suite *
suite_metrics(void)
{
	Suite *s = suite_create("metrics");
	TCase *tc = tcase_create("unit");

	tcase_add_test(tc, test_request_counter);
	tcase_add_test(tc, test_unknown_route);
	tcase_add_test(tc, test_histogram);
	tcase_add_test(tc, test_many_statuses);
	tcase_add_test(tc, test_manifest_counts);
	tcase_add_test(tc, test_sweep_counts);
	tcase_add_test(tc, test_format);
	tcase_add_test(tc, test_sweep_counts);
	tcase_add_test(tc, test_gauges);
	tcase_add_test(tc, test_connections);
	tcase_add_test(tc, test_appendf);
	suite_add_tcase(s, tc);
	return s;
}
