/*
 * check_log.c — log.c: credential-like query values never reach the request log.
 */
#include <string.h>

#include "log.h"

static const struct {
	const char *uri, *want;
} redact_cases[] = {
    {"/v1/nodes", "/v1/nodes"},
    {"/v1/nodes?kind=service&limit=5", "/v1/nodes?kind=service&limit=5"},
    {"/v1/nodes?access_token=abc123", "/v1/nodes?access_token=REDACTED"},
    {"/v1/nodes?kind=host&token=abc&limit=2", "/v1/nodes?kind=host&token=REDACTED&limit=2"},
    {"/x?API_KEY=1&Password=2&client_secret=3&sig=4", "/x?API_KEY=REDACTED&Password=REDACTED"
						      "&client_secret=REDACTED&sig=REDACTED"},
    {"/x?token", "/x?token"},			/* no value: nothing to hide */
    {"/x?token=&q=a", "/x?token=REDACTED&q=a"}, /* an empty one is still marked */
    {"/x?q=token%3Dabc", "/x?q=token%3Dabc"},	/* values are not names */
    {"/x?&&token=a&", "/x?&&token=REDACTED&"},
    {"", ""},
};

START_TEST(test_redact_uri)
{
	char buf[256];

	ck_assert_str_eq(log_redact_uri(redact_cases[_i].uri, buf, sizeof(buf)),
			 redact_cases[_i].want);
}
END_TEST

START_TEST(test_redact_uri_truncates)
{
	char buf[16];

	log_redact_uri("/v1/nodes?access_token=abcdefghijklmnop", buf, sizeof(buf));
	ck_assert_uint_eq(strlen(buf), sizeof(buf) - 1);
	ck_assert_ptr_null(strstr(buf, "abc"));
	ck_assert_str_eq(log_redact_uri(NULL, buf, sizeof(buf)), "");
	log_redact_uri("/x?token=secretvalue", buf, 5);
	ck_assert_str_eq(buf, "/x?t");
}
END_TEST

Suite *
suite_log(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("redact");

	tcase_add_loop_test(tc, test_redact_uri, 0, sizeof(redact_cases) / sizeof(redact_cases[0]));
	tcase_add_test(tc, test_redact_uri_truncates);
	suite_add_tcase(s, tc);
	return s;
}
