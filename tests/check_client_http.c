/*
 * check_client_http.c — the CLI's HTTP module (client/http.c): which base URLs
 * it accepts and how it splits them, and the request checks that run before
 * anything is sent. The exchanges themselves (libcurl against a real server,
 * plain and TLS) are tested end to end by tests/e2e/test_cli_wire.py.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../client/http.h"

Suite *suite_client_http(void);

START_TEST(url_forms)
{
	struct http_url u;
	char err[256];
	ck_assert_int_eq(cl_http_url_parse("http://127.0.0.1:8080", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.base, "http://127.0.0.1:8080");
	ck_assert_str_eq(u.prefix, "");
	ck_assert(!u.tls);
	cl_http_url_free(&u);

	ck_assert_int_eq(cl_http_url_parse("HTTP://cmdb.example.com/api/", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.base, "http://cmdb.example.com");
	ck_assert_str_eq(u.prefix, "/api");
	cl_http_url_free(&u);

	ck_assert_int_eq(
	    cl_http_url_parse("https://cmdb.example.com:8443/a/b//", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.base, "https://cmdb.example.com:8443");
	ck_assert_str_eq(u.prefix, "/a/b");
	ck_assert(u.tls);
	cl_http_url_free(&u);

	ck_assert_int_eq(cl_http_url_parse("http://[::1]:9000/", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.base, "http://[::1]:9000");
	ck_assert_str_eq(u.prefix, "");
	cl_http_url_free(&u);
	cl_http_url_free(NULL);
}
END_TEST

static const char *const bad_urls[] = {
    "ftp://x",	      "127.0.0.1:8080", "http://",	"http://:80",	      "http://x:0",
    "http://x:65536", "http://x:8o",	"http://u:p@x", "https://u@x/",	      "http://x/?a=1",
    "http://x/#f",    "http://[::1",	"http://x /y",	"file:///etc/passwd",
};

START_TEST(url_rejects)
{
	struct http_url u;
	char err[256] = "";
	ck_assert_int_eq(cl_http_url_parse(bad_urls[_i], &u, err, sizeof err), -1);
	ck_assert_msg(err[0] != '\0', "%s: no message", bad_urls[_i]);
	ck_assert_ptr_null(u.base);
}
END_TEST

START_TEST(request_checks)
{
	const char *ok[] = {"Authorization", "Bearer t", "If-Match", NULL, "X-A", "b\tc", NULL};
	const char *bad[] = {"Authorization", "Bearer t\r\nX-Evil: 1", NULL};
	const char *del[] = {"X-A", "b\x7f", NULL};
	char err[256] = "";
	struct http_request rq = {.method = "PUT", .target = "/v1/nodes/a/b%2Fc", .headers = ok};

	ck_assert_int_eq(cl_http_check_request(&rq, err, sizeof err), 0);
	rq.headers = bad;
	ck_assert_int_eq(cl_http_check_request(&rq, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "Authorization"));
	rq.headers = del;
	ck_assert_int_eq(cl_http_check_request(&rq, err, sizeof err), -1);
	rq.headers = NULL;
	rq.target = "/a b";
	ck_assert_int_eq(cl_http_check_request(&rq, err, sizeof err), -1);
	rq.target = "/a\nb";
	ck_assert_int_eq(cl_http_check_request(&rq, err, sizeof err), -1);
}
END_TEST

/* Nothing listens on port 1 of loopback: the failure is reported, never a crash. */
START_TEST(refused_connection_is_reported)
{
	struct http_url u;
	struct http_response r;
	struct http_request rq = {.method = "GET", .target = "/healthz"};
	struct http_opts o = {.connect_ms = 2000, .timeout_ms = 2000};
	char err[512] = "";

	ck_assert_int_eq(cl_http_global_init(), 0);
	ck_assert_int_eq(cl_http_url_parse("http://127.0.0.1:1", &u, err, sizeof err), 0);
	ck_assert_int_eq(cl_http_perform(&u, &rq, &o, &r, err, sizeof err), -1);
	ck_assert_msg(strstr(err, "127.0.0.1:1") != NULL, "%s", err);
	ck_assert_ptr_null(r.body);
	cl_http_url_free(&u);
	cl_http_global_cleanup();
}
END_TEST

Suite *
suite_client_http(void)
{
	Suite *s = suite_create("client_http");
	TCase *tc = tcase_create("http");
	tcase_add_test(tc, url_forms);
	tcase_add_loop_test(tc, url_rejects, 0, (int)(sizeof bad_urls / sizeof *bad_urls));
	tcase_add_test(tc, request_checks);
	tcase_add_test(tc, refused_connection_is_reported);
	suite_add_tcase(s, tc);
	return s;
}
