/*
 * check_client_fmt.c — display text for server JSON and key=value
 * arguments (client/fmt.c).
 * Links: client/fmt.o client/buf.o, -ljansson.
 */
#include <check.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../client/fmt.h"

Suite *suite_client_fmt(void);

static json_t *
parse(const char *text)
{
	json_t *j = json_loads(text, JSON_DECODE_ANY, NULL);
	ck_assert_ptr_nonnull(j);
	return j;
}

/* Checks f(parse(json)) == want and frees both. */
static void
check_text(char *(*f)(const json_t *), const char *json, const char *want)
{
	json_t *j = json ? parse(json) : NULL;
	char *s = f(j);
	ck_assert_str_eq(s, want);
	free(s);
	json_decref(j);
}

START_TEST(json_text)
{
	check_text(cl_json_text, "\"plain\"", "plain");
	check_text(cl_json_text, "5432", "5432");
	check_text(cl_json_text, "true", "true");
	check_text(cl_json_text, "null", "-");
	check_text(cl_json_text, NULL, "-");
	check_text(cl_json_text, "{\"b\":1,\"a\":[1,\"x\"]}", "{\"a\":[1,\"x\"],\"b\":1}");
}
END_TEST

START_TEST(labels_contacts_edges)
{
	check_text(cl_fmt_labels, "{\"tier\":\"1\",\"env\":\"prod\"}", "env=prod,tier=1");
	check_text(cl_fmt_labels, "{}", "");
	check_text(cl_fmt_labels, "[1]", "");
	check_text(cl_fmt_labels, NULL, "");
	check_text(cl_fmt_contacts, "{\"phone\":\"1\",\"repo\":\"r\",\"email\":\"e@x\"}",
		   "email=e@x phone=1");
	check_text(cl_fmt_contacts, "{\"repo\":\"r\"}", "");
	check_text(cl_fmt_contacts, "\"oops\"", "");
	check_text(cl_fmt_edge, "{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"host/h\"}",
		   "a/b --runs_on--> host/h");
	check_text(cl_fmt_edge, "{\"from\":\"a/b\"}", "a/b --?--> ?");
	check_text(cl_fmt_edge, "7", "? --?--> ?");
}
END_TEST

START_TEST(join)
{
	json_t *a = parse("[\"a/x\",\"b/y\",3]");
	char *s = cl_fmt_join(a, " -> ");
	ck_assert_str_eq(s, "a/x -> b/y -> ?");
	free(s);
	json_decref(a);
	s = cl_fmt_join(NULL, ",");
	ck_assert_str_eq(s, "");
	free(s);
}
END_TEST

START_TEST(key_values)
{
	char err[256], *key;
	json_t *v;
	ck_assert_int_eq(cl_parse_kv("repo=git@x:a=b", "--attr", 1, &key, &v, err, sizeof err), 0);
	ck_assert_str_eq(key, "repo");
	ck_assert_str_eq(json_string_value(v), "git@x:a=b");
	free(key);
	json_decref(v);

	ck_assert_int_eq(cl_parse_kv("port:=5432", "--attr", 1, &key, &v, err, sizeof err), 0);
	ck_assert_str_eq(key, "port");
	ck_assert(json_is_integer(v) && json_integer_value(v) == 5432);
	free(key);
	json_decref(v);

	/* without JSON values, ":=" is part of the key */
	ck_assert_int_eq(cl_parse_kv("a:=1", "--label", 0, &key, &v, err, sizeof err), 0);
	ck_assert_str_eq(key, "a:");
	ck_assert_str_eq(json_string_value(v), "1");
	free(key);
	json_decref(v);

	ck_assert_int_eq(cl_parse_kv("empty=", "--label", 0, &key, &v, err, sizeof err), 0);
	ck_assert_str_eq(json_string_value(v), "");
	free(key);
	json_decref(v);

	static const char *const bad[] = {"novalue", "=x", ":=1", "k:={bad", "k:=1 2"};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		err[0] = '\0';
		ck_assert_int_eq(cl_parse_kv(bad[i], "--attr", 1, &key, &v, err, sizeof err), -1);
		ck_assert_ptr_nonnull(strstr(err, "--attr"));
	}
}
END_TEST

Suite *
suite_client_fmt(void)
{
	Suite *s = suite_create("client_fmt");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, json_text);
	tcase_add_test(tc, labels_contacts_edges);
	tcase_add_test(tc, join);
	tcase_add_test(tc, key_values);
	suite_add_tcase(s, tc);
	return s;
}
