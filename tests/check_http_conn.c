/*
 * check_http_conn.c — the connection guard's pure parts (cmdbd/http_conn.c): the
 * end-of-headers scanner, the connection cap against the open-file limit, and the
 * raw error answer it writes (http_raw_error() in cmdbd/http.c). The guard's life
 * on real connections is tested end to end by tests/e2e/test_deadlines.py.
 */
#include <check.h>
#include <event2/buffer.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "http.h"
#include "http_conn.h"

/* ------------------------------------------------------------------ scanner */

static const struct {
	const char *bytes;
	bool ends;
} scans[] = {
    {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
    {"GET / HTTP/1.1\nHost: x\n\n", true}, /* bare LF, as evhttp reads lines */
    {"GET / HTTP/1.1\r\nHost: x\n\r\n", true},
    {"GET / HTTP/1.1\r\nHost: x\r\n\n", true},
    {"GET / HTTP/1.1\r\nHost: x\r\n", false},
    {"GET / HTTP/1.1\r\nHost: x\r\n\r", false},
    {"GET / HTTP/1.1\r\nHost: x\r\r\n", false},	   /* "\r\r\n": a line holding "\r" */
    {"GET / HTTP/1.1\r\nHost: x\r\n \r\n", false}, /* a space is not a blank line */
    {"GET / HTTP/1.1", false},
    {"", false},
};

/* Whole, then split at every position: the answer must not depend on the split. */
START_TEST(test_scan_table)
{
	const char *b = scans[_i].bytes;
	size_t n = strlen(b);

	for (size_t cut = 0; cut <= n; cut++) {
		int st = 0;
		bool ends = http_conn_scan_headers(&st, b, cut);

		if (!ends)
			ends = http_conn_scan_headers(&st, b + cut, n - cut);
		ck_assert_msg(ends == scans[_i].ends, "\"%s\" split at %zu: %d", b, cut, ends);
	}
}
END_TEST

/* One byte at a time; and the end is found exactly on the final '\n'. */
START_TEST(test_scan_bytewise)
{
	const char *b = "PUT /v1/x HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}";
	size_t end = strstr(b, "\r\n\r\n") - b + 3;
	int st = 0;

	for (size_t i = 0; i < strlen(b); i++) {
		bool ends = http_conn_scan_headers(&st, b + i, 1);

		ck_assert_msg(ends == (i == end), "byte %zu: %d", i, ends);
		if (ends)
			break;
	}
}
END_TEST

/* ------------------------------------------------------------------ the cap */

START_TEST(test_cap_configured)
{
	char err[256] = "";

	ck_assert_int_eq(http_conns_cap(10, 10, err, sizeof(err)), 10);
	ck_assert_int_eq(http_conns_cap(1, 0, err, sizeof(err)), 1);
}
END_TEST

/* Automatic: at most 4096, and it leaves the reserve within the (raised) limit. */
START_TEST(test_cap_auto)
{
	char err[256] = "";
	struct rlimit rl;
	long cap = http_conns_cap(0, 100, err, sizeof(err));

	ck_assert_msg(cap >= 1 && cap <= 4096, "cap %ld (%s)", cap, err);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY)
		ck_assert_int_le(cap + 100, (long)rl.rlim_cur);
}
END_TEST

/* A configured cap that cannot fit the hard limit is an error naming the fix. */
START_TEST(test_cap_too_big)
{
	char err[256] = "";
	struct rlimit rl;

	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= 1000000)
		return; /* nothing we may configure is too big here */
	ck_assert_int_eq(http_conns_cap((long)rl.rlim_max, 10, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "max-connections") != NULL, "%s", err);
	ck_assert_msg(strstr(err, "ulimit -n") != NULL, "%s", err);
	/* Automatic with a reserve that takes everything: no room at all. */
	ck_assert_int_eq(http_conns_cap(0, (long)rl.rlim_max, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "no room") != NULL, "%s", err);
}
END_TEST

/* ------------------------------------------------------------------ raw answer */

START_TEST(test_raw_error)
{
	struct evbuffer *out = evbuffer_new();
	char id[40] = "", *text, *body, want[128];
	size_t len;
	long clen;
	json_t *doc, *err;
	json_error_t jerr;

	ck_assert_ptr_nonnull(out);
	ck_assert_int_eq(http_raw_error(out, id, 503, "too_many_connections", "Retry-After: 1\r\n",
					json_pack("{s:i}", "limit", 20), "limit of %d", 20),
			 0);
	ck_assert_uint_eq(strlen(id), 36);
	len = evbuffer_get_length(out);
	text = calloc(1, len + 1);
	ck_assert_ptr_nonnull(text);
	evbuffer_remove(out, text, len);
	ck_assert_msg(strncmp(text, "HTTP/1.1 503 Service Unavailable\r\n", 34) == 0, "%s", text);
	ck_assert_ptr_nonnull(strstr(text, "\r\nConnection: close\r\n"));
	ck_assert_ptr_nonnull(strstr(text, "\r\nRetry-After: 1\r\n"));
	ck_assert_ptr_nonnull(strstr(text, "\r\nContent-Type: application/json"));
	snprintf(want, sizeof(want), "\r\nX-Request-Id: %s\r\n", id);
	ck_assert_ptr_nonnull(strstr(text, want));
	body = strstr(text, "\r\n\r\n");
	ck_assert_ptr_nonnull(body);
	body += 4;
	ck_assert_int_eq(sscanf(strstr(text, "Content-Length: "), "Content-Length: %ld", &clen), 1);
	ck_assert_int_eq(clen, (long)strlen(body));
	doc = json_loads(body, 0, &jerr);
	ck_assert_msg(doc != NULL, "%s: %s", jerr.text, body);
	err = json_object_get(doc, "error");
	ck_assert_int_eq(json_integer_value(json_object_get(err, "status")), 503);
	ck_assert_str_eq(json_string_value(json_object_get(err, "code")), "too_many_connections");
	ck_assert_str_eq(json_string_value(json_object_get(err, "message")), "limit of 20");
	ck_assert_str_eq(json_string_value(json_object_get(err, "request_id")), id);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(err, "details"), "limit")), 20);
	json_decref(doc);
	free(text);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_status_408)
{
	ck_assert_str_eq(http_status_text(408), "Request Timeout");
}
END_TEST

Suite *
suite_http_conn(void)
{
	Suite *s = suite_create("http_conn");
	TCase *tc = tcase_create("unit");

	tcase_add_loop_test(tc, test_scan_table, 0, (int)(sizeof(scans) / sizeof(scans[0])));
	tcase_add_test(tc, test_scan_bytewise);
	tcase_add_test(tc, test_cap_configured);
	tcase_add_test(tc, test_cap_auto);
	tcase_add_test(tc, test_cap_too_big);
	tcase_add_test(tc, test_raw_error);
	tcase_add_test(tc, test_status_408);
	suite_add_tcase(s, tc);
	return s;
}
