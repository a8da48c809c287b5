/*
 * check_client_ref.c — refs and percent-encoding (client/ref.c).
 * Links: client/ref.o client/buf.o.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../client/ref.h"

Suite *suite_client_ref(void);

START_TEST(split_at_first_slash)
{
	struct ref_parts rp;
	char err[256];
	ck_assert_int_eq(cl_ref_split("database/pg-main:5432", &rp, err, sizeof err), 0);
	ck_assert_str_eq(rp.kind, "database");
	ck_assert_str_eq(rp.name, "pg-main:5432");
	ck_assert_int_eq(cl_ref_split("storage/a/b/c", &rp, err, sizeof err), 0);
	ck_assert_str_eq(rp.kind, "storage");
	ck_assert_str_eq(rp.name, "a/b/c");
	ck_assert_int_eq(cl_ref_split("load_balancer2/x", &rp, err, sizeof err), 0);
	ck_assert_str_eq(rp.kind, "load_balancer2");
}
END_TEST

static const char *const bad_refs[] = {
    "noslash", "/name", "Service/x", "9abc/x",
    "a-b/x",   "kind/", "",	     "abcdefghijabcdefghijabcdefghijabc/x", /* 33-byte kind */
};

START_TEST(split_rejects)
{
	struct ref_parts rp;
	char err[256] = "";
	ck_assert_int_eq(cl_ref_split(bad_refs[_i], &rp, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "invalid ref"));
}
END_TEST

START_TEST(name_length_limits)
{
	struct ref_parts rp;
	char err[256], ref[300];
	memcpy(ref, "k/", 2);
	memset(ref + 2, 'n', 255);
	ref[257] = '\0';
	ck_assert_int_eq(cl_ref_split(ref, &rp, err, sizeof err), 0);
	ref[257] = 'n';
	ref[258] = '\0';
	ck_assert_int_eq(cl_ref_split(ref, &rp, err, sizeof err), -1);
	/* a 32-byte kind is the longest allowed */
	ck_assert_int_eq(cl_ref_split("abcdefghijabcdefghijabcdefghijab/x", &rp, err, sizeof err),
			 0);
}
END_TEST

static void
check_encode(const char *in, const char *want)
{
	struct buf b = BUF_INIT;
	cl_url_encode(&b, in);
	ck_assert_str_eq(cl_buf_str(&b), want);
	cl_buf_free(&b);
}

START_TEST(percent_encoding)
{
	check_encode("pg-main:5432", "pg-main%3A5432");
	check_encode("a/b", "a%2Fb");
	check_encode("AZaz09-._~", "AZaz09-._~");
	check_encode("a b+c&d=e?f#g%h", "a%20b%2Bc%26d%3De%3Ff%23g%25h");
	check_encode("caf\xc3\xa9", "caf%C3%A9");
	check_encode("", "");
}
END_TEST

START_TEST(node_path)
{
	struct buf b = BUF_INIT;
	char err[256];
	ck_assert_int_eq(cl_ref_path(&b, "database/pg-main:5432", err, sizeof err), 0);
	ck_assert_str_eq(cl_buf_str(&b), "/v1/nodes/database/pg-main%3A5432");
	cl_buf_reset(&b);
	ck_assert_int_eq(cl_ref_path(&b, "storage/bucket/a b", err, sizeof err), 0);
	ck_assert_str_eq(cl_buf_str(&b), "/v1/nodes/storage/bucket%2Fa%20b");
	cl_buf_reset(&b);
	ck_assert_int_eq(cl_ref_path(&b, "nope", err, sizeof err), -1);
	ck_assert_str_eq(cl_buf_str(&b), "");
	cl_buf_free(&b);
}
END_TEST

START_TEST(query_params)
{
	struct buf b = BUF_INIT;
	cl_buf_puts(&b, "/v1/nodes");
	cl_query_add(&b, "label", "tier:1");
	cl_query_add(&b, "owner", "team/pay ments");
	ck_assert_str_eq(cl_buf_str(&b), "/v1/nodes?label=tier%3A1&owner=team%2Fpay%20ments");
	cl_buf_free(&b);
}
END_TEST

Suite *
suite_client_ref(void)
{
	Suite *s = suite_create("client_ref");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, split_at_first_slash);
	tcase_add_loop_test(tc, split_rejects, 0, (int)(sizeof bad_refs / sizeof *bad_refs));
	tcase_add_test(tc, name_length_limits);
	tcase_add_test(tc, percent_encoding);
	tcase_add_test(tc, node_path);
	tcase_add_test(tc, query_params);
	suite_add_tcase(s, tc);
	return s;
}
