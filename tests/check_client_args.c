/*
 * check_client_args.c — command-line parsing (client/args.c).
 * Links: client/args.o client/buf.o.
 */
#include <check.h>
#include <string.h>

#include "../client/args.h"

Suite *suite_client_args(void);

static const struct arg_spec global[] = {
    {"json", ARG_FLAG},
    {"url", ARG_VALUE},
    {"help", ARG_FLAG},
    {NULL, ARG_FLAG},
};
static const struct arg_spec cmd[] = {
    {"kind", ARG_VALUE},  {"label", ARG_VALUE}, {"all", ARG_FLAG},
    {"limit", ARG_VALUE}, {NULL, ARG_FLAG},
};

/* argv vectors end with NULL; argc is counted. */
static int
count(char **argv)
{
	int n = 0;
	while (argv[n])
		n++;
	return n;
}

static int
find(char **argv)
{
	char err[256];
	return cl_args_find_command(count(argv), argv, global, err, sizeof err);
}

START_TEST(find_command_skips_globals)
{
	ck_assert_int_eq(find((char *[]){"cmdb", "get", "a/b", NULL}), 1);
	ck_assert_int_eq(find((char *[]){"cmdb", "--url", "http://x", "get", NULL}), 3);
	ck_assert_int_eq(find((char *[]){"cmdb", "--url=http://x", "--json", "ls", NULL}), 3);
	ck_assert_int_eq(find((char *[]){"cmdb", "--json", NULL}), 0);
	ck_assert_int_eq(find((char *[]){"cmdb", NULL}), 0);
	ck_assert_int_eq(find((char *[]){"cmdb", "--kind", "x", "ls", NULL}), -1);
	ck_assert_int_eq(find((char *[]){"cmdb", "--", "ls", NULL}), 2);
}
END_TEST

START_TEST(options_anywhere)
{
	char *argv[] = {"cmdb",	       "--json",  "ls",	 "pos1", "--kind", "service",
			"--label=a=b", "--label", "c=d", "-",	 "--all",  NULL};
	struct args a;
	char err[256];
	ck_assert_int_eq(cl_args_parse(count(argv), argv, 2, global, cmd, &a, err, sizeof err), 0);
	ck_assert_uint_eq(a.npos, 2);
	ck_assert_str_eq(a.pos[0], "pos1");
	ck_assert_str_eq(a.pos[1], "-");
	ck_assert(cl_args_has(&a, "json"));
	ck_assert(cl_args_has(&a, "all"));
	ck_assert(!cl_args_has(&a, "help"));
	ck_assert_str_eq(cl_args_get(&a, "kind"), "service");
	ck_assert_str_eq(cl_args_get(&a, "label"), "c=d"); /* last one */
	size_t it = 0;
	ck_assert_str_eq(cl_args_next(&a, "label", &it), "a=b");
	ck_assert_str_eq(cl_args_next(&a, "label", &it), "c=d");
	ck_assert_ptr_null(cl_args_next(&a, "label", &it));
	ck_assert_ptr_null(cl_args_get(&a, "url"));
	cl_args_free(&a);
}
END_TEST

START_TEST(double_dash_and_short_help)
{
	char *argv[] = {"cmdb", "get", "-h", "--", "--kind", NULL};
	struct args a;
	char err[256];
	ck_assert_int_eq(cl_args_parse(count(argv), argv, 1, global, cmd, &a, err, sizeof err), 0);
	ck_assert(cl_args_has(&a, "help"));
	ck_assert_uint_eq(a.npos, 1);
	ck_assert_str_eq(a.pos[0], "--kind");
	cl_args_free(&a);
}
END_TEST

static char *const *bad_lines[] = {
    (char *[]){"cmdb", "ls", "--bogus", NULL},
    (char *[]){"cmdb", "ls", "--kind", NULL},	 /* value missing */
    (char *[]){"cmdb", "ls", "--all=yes", NULL}, /* flag with a value */
    (char *[]){"cmdb", "ls", "-k", NULL},	 /* no short options */
};

START_TEST(parse_errors)
{
	struct args a;
	char err[256] = "";
	char *const *argv = bad_lines[_i];
	ck_assert_int_eq(
	    cl_args_parse(count((char **)argv), argv, 1, global, cmd, &a, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "option"));
	ck_assert_ptr_null(a.pos);
	ck_assert_ptr_null(a.opts);
}
END_TEST

START_TEST(numbers)
{
	char *argv[] = {"cmdb", "ls", "--limit", "42", NULL};
	struct args a;
	char err[256];
	long long v = -1;
	ck_assert_int_eq(cl_args_parse(count(argv), argv, 1, global, cmd, &a, err, sizeof err), 0);
	ck_assert_int_eq(cl_args_number(&a, "limit", 1, 1000, &v, err, sizeof err), 1);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(cl_args_number(&a, "kind", 1, 1000, &v, err, sizeof err), 0);
	ck_assert_int_eq(cl_args_number(&a, "limit", 1, 10, &v, err, sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "--limit"));
	cl_args_free(&a);

	static const char *const junk[] = {
	    "", "abc", "4x", " 5", "+5", "1e3", "99999999999999999999"};
	for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
		char *line[] = {"cmdb", "ls", "--limit", (char *)junk[i], NULL};
		ck_assert_int_eq(cl_args_parse(4, line, 1, global, cmd, &a, err, sizeof err), 0);
		ck_assert_int_eq(
		    cl_args_number(&a, "limit", 0, 0x7fffffffffffffffLL, &v, err, sizeof err), -1);
		cl_args_free(&a);
	}
}
END_TEST

Suite *
suite_client_args(void)
{
	Suite *s = suite_create("client_args");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, find_command_skips_globals);
	tcase_add_test(tc, options_anywhere);
	tcase_add_test(tc, double_dash_and_short_help);
	tcase_add_loop_test(tc, parse_errors, 0, (int)(sizeof bad_lines / sizeof *bad_lines));
	tcase_add_test(tc, numbers);
	suite_add_tcase(s, tc);
	return s;
}
