/*
 * check_client_table.c — aligned table rendering (client/table.c).
 * Links: client/table.o client/buf.o.
 */
#include <check.h>
#include <stdlib.h>

#include "../client/table.h"

Suite *suite_client_table(void);

START_TEST(aligns_columns)
{
	static const char *const head[] = {"REF", "KIND", "LABELS"};
	struct table *t = cl_table_new(3, head);
	cl_table_add(t, (const char *const[]){"service/billing-api", "service", "tier=1"});
	cl_table_add(t, (const char *const[]){"host/h", NULL, "a=b,c=d"});
	ck_assert_uint_eq(cl_table_rows(t), 2);
	char *s = cl_table_render(t);
	ck_assert_str_eq(s, "REF                  KIND     LABELS\n"
			    "service/billing-api  service  tier=1\n"
			    "host/h               -        a=b,c=d\n");
	free(s);
	cl_table_free(t);
}
END_TEST

START_TEST(utf8_width_and_no_trailing_blanks)
{
	static const char *const head[] = {"A", "B"};
	struct table *t = cl_table_new(2, head);
	cl_table_add(t, (const char *const[]){"caf\xc3\xa9", ""});
	cl_table_add(t, (const char *const[]){"x", "y"});
	char *s = cl_table_render(t);
	/* "café" is 4 columns wide, not 5 bytes; the empty last cell leaves no padding */
	ck_assert_str_eq(s, "A     B\ncaf\xc3\xa9\nx     y\n");
	free(s);
	cl_table_free(t);
}
END_TEST

START_TEST(control_characters_masked)
{
	static const char *const head[] = {"A", "B"};
	struct table *t = cl_table_new(2, head);
	cl_table_add(t, (const char *const[]){"a\nb", "\x1b[31mred"});
	char *s = cl_table_render(t);
	ck_assert_str_eq(s, "A    B\na?b  ?[31mred\n");
	free(s);
	cl_table_free(t);
	cl_table_free(NULL);
}
END_TEST

START_TEST(width_helpers)
{
	ck_assert_uint_eq(cl_text_width(""), 0);
	ck_assert_uint_eq(cl_text_width("abc"), 3);
	ck_assert_uint_eq(cl_text_width("\xe2\x86\x92x"), 2); /* "→x" */
	char *c = cl_text_sanitize("ok\ttab\x7f");
	ck_assert_str_eq(c, "ok?tab?");
	free(c);
}
END_TEST

Suite *
suite_client_table(void)
{
	Suite *s = suite_create("client_table");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, aligns_columns);
	tcase_add_test(tc, utf8_width_and_no_trailing_blanks);
	tcase_add_test(tc, control_characters_masked);
	tcase_add_test(tc, width_helpers);
	suite_add_tcase(s, tc);
	return s;
}
