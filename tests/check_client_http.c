/*
 * check_client_http.c — URL parsing, request serialisation and response
 * parsing of the CLI's HTTP client (client/http_parse.c).
 * Links: client/http_parse.o client/buf.o.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../client/http_parse.h"

Suite *suite_client_http(void);

START_TEST(url_forms)
{
	struct http_url u;
	char err[256];
	ck_assert_int_eq(cl_http_url_parse("http://127.0.0.1:8080", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.host, "127.0.0.1");
	ck_assert_str_eq(u.port, "8080");
	ck_assert_str_eq(u.host_header, "127.0.0.1:8080");
	ck_assert_str_eq(u.prefix, "");
	cl_http_url_free(&u);

	ck_assert_int_eq(cl_http_url_parse("HTTP://cmdb.example.com/api/", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.host, "cmdb.example.com");
	ck_assert_str_eq(u.port, "80");
	ck_assert_str_eq(u.prefix, "/api");
	cl_http_url_free(&u);

	ck_assert_int_eq(cl_http_url_parse("http://[::1]:9000/", &u, err, sizeof err), 0);
	ck_assert_str_eq(u.host, "::1");
	ck_assert_str_eq(u.port, "9000");
	ck_assert_str_eq(u.host_header, "[::1]:9000");
	cl_http_url_free(&u);
	cl_http_url_free(NULL);
}
END_TEST

static const char *const bad_urls[] = {
    "https://x",   "ftp://x",	     "127.0.0.1:8080", "http://",      "http://:80",
    "http://x:0",  "http://x:65536", "http://x:8o",    "http://u:p@x", "http://x/?a=1",
    "http://x/#f", "http://[::1",    "http://x /y",
};

START_TEST(url_rejects)
{
	struct http_url u;
	char err[256] = "";
	ck_assert_int_eq(cl_http_url_parse(bad_urls[_i], &u, err, sizeof err), -1);
	ck_assert(err[0] != '\0');
	ck_assert_ptr_null(u.host);
}
END_TEST

START_TEST(request_bytes)
{
	const char *hdrs[] = {"Authorization", "Bearer t", "If-Match", NULL, "X-A", "b", NULL};
	struct http_request rq = {.method = "PUT",
				  .target = "/v1/nodes/a/b%2Fc",
				  .host_header = "h:1",
				  .headers = hdrs,
				  .body = "{}",
				  .body_len = 2};
	struct buf b = BUF_INIT;
	char err[256];
	ck_assert_int_eq(cl_http_build_request(&rq, &b, err, sizeof err), 0);
	ck_assert_str_eq(cl_buf_str(&b), "PUT /v1/nodes/a/b%2Fc HTTP/1.1\r\nHost: h:1\r\n"
					 "Authorization: Bearer t\r\nX-A: b\r\n"
					 "Content-Length: 2\r\nConnection: close\r\n\r\n{}");
	cl_buf_reset(&b);
	struct http_request post = {
	    .method = "POST", .target = "/x", .host_header = "h", .send_body = true};
	ck_assert_int_eq(cl_http_build_request(&post, &b, err, sizeof err), 0);
	ck_assert_ptr_nonnull(strstr(cl_buf_str(&b), "Content-Length: 0\r\n"));
	cl_buf_free(&b);
}
END_TEST

START_TEST(request_refuses_header_injection)
{
	const char *hdrs[] = {"Authorization", "Bearer t\r\nX-Evil: 1", NULL};
	struct http_request rq = {
	    .method = "GET", .target = "/", .host_header = "h", .headers = hdrs};
	struct buf b = BUF_INIT;
	char err[256];
	ck_assert_int_eq(cl_http_build_request(&rq, &b, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "Authorization"));
	ck_assert_uint_eq(b.len, 0);
	struct http_request sp = {.method = "GET", .target = "/a b", .host_header = "h"};
	ck_assert_int_eq(cl_http_build_request(&sp, &b, err, sizeof err), -1);
	cl_buf_free(&b);
}
END_TEST

/* Parses `raw`, asserting that every proper prefix needs more bytes (or,
 * at EOF, is an error) and the whole is complete. */
static void
parse_all(const char *raw, size_t len, struct http_response *r)
{
	char err[256];
	for (size_t n = 0; n < len; n++) {
		struct http_response p;
		ck_assert_int_eq(cl_http_parse_response(raw, n, false, &p, err, sizeof err), 0);
	}
	ck_assert_int_eq(cl_http_parse_response(raw, len, false, r, err, sizeof err), 1);
}

START_TEST(content_length_reply)
{
	static const char raw[] = "HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\n"
				  "x-request-id: abc\r\nContent-Type: "
				  "application/json\r\nX-Cmdb-Index:  42 \r\n\r\nhello";
	struct http_response r;
	parse_all(raw, sizeof raw - 1, &r);
	ck_assert_int_eq(r.status, 404);
	ck_assert_str_eq(r.cmdb_index, "42");
	ck_assert_str_eq(r.reason, "Not Found");
	ck_assert_uint_eq(r.body_len, 5);
	ck_assert_str_eq(r.body, "hello");
	ck_assert_str_eq(r.request_id, "abc");
	ck_assert_str_eq(r.content_type, "application/json");
	cl_http_response_free(&r);
	cl_http_response_free(NULL);

	char err[256];
	ck_assert_int_eq(cl_http_parse_response(raw, sizeof raw - 3, true, &r, err, sizeof err),
			 -1);
	ck_assert_ptr_nonnull(strstr(err, "cut short"));
}
END_TEST

START_TEST(chunked_reply)
{
	static const char raw[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
				  "5;name=val\r\nhello\r\nA\r\n, chunked!\r\n0\r\nX-T: 1\r\n\r\n";
	struct http_response r;
	parse_all(raw, sizeof raw - 1, &r);
	ck_assert_int_eq(r.status, 200);
	ck_assert_uint_eq(r.body_len, 15);
	ck_assert_str_eq(r.body, "hello, chunked!");
	ck_assert_ptr_null(r.request_id);
	ck_assert_ptr_null(r.cmdb_index);
	cl_http_response_free(&r);

	char err[256];
	ck_assert_int_eq(cl_http_parse_response(raw, sizeof raw - 10, true, &r, err, sizeof err),
			 -1);
}
END_TEST

START_TEST(body_until_eof_and_interim_replies)
{
	static const char raw[] = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 200 OK\r\n\r\nall of it";
	struct http_response r;
	char err[256];
	ck_assert_int_eq(cl_http_parse_response(raw, sizeof raw - 1, false, &r, err, sizeof err),
			 0);
	ck_assert_int_eq(cl_http_parse_response(raw, sizeof raw - 1, true, &r, err, sizeof err), 1);
	ck_assert_int_eq(r.status, 200);
	ck_assert_str_eq(r.body, "all of it");
	cl_http_response_free(&r);

	static const char nc[] = "HTTP/1.1 204 No Content\r\nX-Request-Id: r1\r\n\r\n";
	ck_assert_int_eq(cl_http_parse_response(nc, sizeof nc - 1, false, &r, err, sizeof err), 1);
	ck_assert_uint_eq(r.body_len, 0);
	ck_assert_str_eq(r.body, "");
	cl_http_response_free(&r);
}
END_TEST

static const char *const bad_replies[] = {
    "", /* closed, nothing sent */
    "SSH-2.0-OpenSSH_9\r\n\r\n",
    "HTTP/1.1 2000 OK\r\n\r\n",
    "HTTP/1.1 099 Low\r\n\r\n",
    "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nContent-Le", /* cut in the headers */
};

START_TEST(malformed_replies)
{
	struct http_response r;
	char err[256] = "";
	const char *raw = bad_replies[_i];
	ck_assert_int_eq(cl_http_parse_response(raw, strlen(raw), true, &r, err, sizeof err), -1);
	ck_assert(err[0] != '\0');
	ck_assert_ptr_null(r.body);
}
END_TEST

Suite *
suite_client_http(void)
{
	Suite *s = suite_create("client_http");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, url_forms);
	tcase_add_loop_test(tc, url_rejects, 0, (int)(sizeof bad_urls / sizeof *bad_urls));
	tcase_add_test(tc, request_bytes);
	tcase_add_test(tc, request_refuses_header_injection);
	tcase_add_test(tc, content_length_reply);
	tcase_add_test(tc, chunked_reply);
	tcase_add_test(tc, body_until_eof_and_interim_replies);
	tcase_add_loop_test(tc, malformed_replies, 0,
			    (int)(sizeof bad_replies / sizeof *bad_replies));
	suite_add_tcase(s, tc);
	return s;
}
