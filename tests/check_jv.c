/*
 * check_jv.c — strict JSON body parsing and field checks (cmdbd/jv.c): one object
 * only, duplicates, NUL, invalid UTF-8, depth, trailing bytes; field types, unknown
 * and missing fields, each error naming its JSON path.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"

#define MAX_DEPTH 32

/* --------------------------------------------------------------- body parsing */

/* Bodies that are one JSON object. len < 0: strlen. */
static const struct {
	const char *body;
	int len;
	const char *key; /* a key the parsed object must hold, or NULL */
} good_bodies[] = {
    {"{}", -1, NULL},
    {" \r\n\t{} \n", -1, NULL}, /* whitespace around is JSON */
    {"{\"a\":1}", -1, "a"},
    {"{\"a\":{\"b\":[1,2,{\"c\":null}]}}", -1, "a"},
    {"{\"caf\xc3\xa9\":\"\xe2\x82\xac\"}", -1, "caf\xc3\xa9"},
    {"{\"a\":\"\\u00e9\\ud83d\\ude00\"}", -1, "a"}, /* escapes, surrogate pair */
    {"{\"a\":1}garbage", 7, "a"},		    /* only len bytes are read */
};

START_TEST(test_parse_good)
{
	struct jv_err err = {0};
	size_t len =
	    good_bodies[_i].len < 0 ? strlen(good_bodies[_i].body) : (size_t)good_bodies[_i].len;
	json_t *v = jv_parse_object(good_bodies[_i].body, len, MAX_DEPTH, &err);

	ck_assert_msg(v != NULL, "body %s: %s", good_bodies[_i].body, err.msg);
	ck_assert(json_is_object(v));
	if (good_bodies[_i].key != NULL)
		ck_assert_ptr_nonnull(json_object_get(v, good_bodies[_i].key));
	json_decref(v);
}
END_TEST

/* Bodies that must be a 400 with an empty path. */
static const struct {
	const char *body;
	int len;	 /* < 0: strlen */
	const char *msg; /* substring of err.msg, or NULL */
	const char *why;
} bad_bodies[] = {
    {"", 0, "empty", "empty body"},
    {"   ", -1, NULL, "only whitespace"},
    {"null", -1, NULL, "null"},
    {"[]", -1, "JSON object", "array"},
    {"[{}]", -1, "JSON object", "array of object"},
    {"1", -1, NULL, "number"},
    {"\"s\"", -1, NULL, "string"},
    {"true", -1, NULL, "boolean"},
    {"{} {}", -1, NULL, "two objects"},
    {"{}x", -1, NULL, "trailing garbage"},
    {"{\"a\":1}}", -1, NULL, "extra brace"},
    {"{}\0", 3, NULL, "trailing NUL byte"},
    {"{\"a\":1,\"a\":2}", -1, NULL, "duplicate key"},
    {"{\"o\":{\"k\":1,\"k\":1}}", -1, NULL, "nested duplicate key"},
    {"{\"a\":\"x\\u0000y\"}", -1, NULL, "escaped NUL in a value"},
    {"{\"a\\u0000\":1}", -1, NULL, "escaped NUL in a key"},
    {"{\"a\":\"\xff\"}", -1, NULL, "invalid UTF-8"},
    {"{\"a\":\"\xed\xa0\x80\"}", -1, NULL, "raw surrogate"},
    {"{\"a\":\"\\ud800\"}", -1, NULL, "lone escaped surrogate"},
    {"{", -1, NULL, "truncated"},
    {"{'a':1}", -1, NULL, "single quotes"},
    {"{\"a\":1,}", -1, NULL, "trailing comma"},
    {"{\"a\":NaN}", -1, NULL, "NaN"},
    {"{\"a\":01}", -1, NULL, "leading zero"},
    {"{\"a\":\"\x01\"}", -1, NULL, "raw control character in a string"},
    {"{a:1}", -1, NULL, "bare key"},
    {"{\"a\":1 /* c */}", -1, NULL, "comment"},
};

START_TEST(test_parse_bad)
{
	struct jv_err err = {0};
	size_t len =
	    bad_bodies[_i].len < 0 ? strlen(bad_bodies[_i].body) : (size_t)bad_bodies[_i].len;
	json_t *v = jv_parse_object(bad_bodies[_i].body, len, MAX_DEPTH, &err);

	ck_assert_msg(v == NULL, "%s: accepted", bad_bodies[_i].why);
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.path, "");
	ck_assert_msg(err.msg[0] != '\0', "%s: no message", bad_bodies[_i].why);
	if (bad_bodies[_i].msg != NULL)
		ck_assert_msg(strstr(err.msg, bad_bodies[_i].msg) != NULL, "%s: message \"%s\"",
			      bad_bodies[_i].why, err.msg);
}
END_TEST

/* {"a":{"a":...{}}} with `levels` objects; caller frees. */
static char *
nested_objects(int levels)
{
	char *s = malloc((size_t)levels * 6 + 1), *p = s;

	ck_assert_ptr_nonnull(s);
	for (int i = 0; i < levels - 1; i++)
		p += sprintf(p, "{\"a\":");
	p += sprintf(p, "{}");
	for (int i = 0; i < levels - 1; i++)
		*p++ = '}';
	*p = '\0';
	return s;
}

/* {"a":[[...[]]]} with one object and levels - 1 arrays; caller frees. */
static char *
nested_arrays(int levels)
{
	char *s = malloc((size_t)levels * 2 + 8), *p = s;

	ck_assert_ptr_nonnull(s);
	p += sprintf(p, "{\"a\":");
	for (int i = 0; i < levels - 1; i++)
		*p++ = '[';
	for (int i = 0; i < levels - 1; i++)
		*p++ = ']';
	strcpy(p, "}");
	return s;
}

/* Nesting at the limit parses; one more level is a 400 naming the limit. */
START_TEST(test_parse_depth_limit)
{
	char *(*make[])(int) = {nested_objects, nested_arrays};

	for (size_t m = 0; m < 2; m++) {
		struct jv_err err = {0};
		char *at = make[m](MAX_DEPTH), *over = make[m](MAX_DEPTH + 1);
		json_t *v = jv_parse_object(at, strlen(at), MAX_DEPTH, &err);

		ck_assert_msg(v != NULL, "depth %d rejected: %s", MAX_DEPTH, err.msg);
		ck_assert_int_eq(jv_depth(v), MAX_DEPTH);
		json_decref(v);
		v = jv_parse_object(over, strlen(over), MAX_DEPTH, &err);
		ck_assert_ptr_null(v);
		ck_assert_int_eq(err.status, 400);
		ck_assert_msg(strstr(err.msg, "32") != NULL, "message: %s", err.msg);
		free(at);
		free(over);
	}
}
END_TEST

/* Far deeper than jansson's own limit: still a clean 400, no crash. */
START_TEST(test_parse_very_deep)
{
	struct jv_err err = {0};
	char *deep = nested_arrays(100000);
	json_t *v = jv_parse_object(deep, strlen(deep), MAX_DEPTH, &err);

	ck_assert_ptr_null(v);
	ck_assert_int_eq(err.status, 400);
	free(deep);
}
END_TEST

static const struct {
	const char *json;
	int depth;
} depths[] = {
    {"1", 0},
    {"\"s\"", 0},
    {"{}", 1},
    {"[]", 1},
    {"{\"a\":1}", 1},
    {"{\"a\":[]}", 2},
    {"[[[]]]", 3},
    {"{\"a\":{\"b\":{\"c\":1}}}", 3},
    {"{\"a\":[1,[2,[3]]],\"b\":{}}", 4},
    {"[{}, [[{}]], 1]", 4},
};

START_TEST(test_depth_table)
{
	json_t *v = json_loads(depths[_i].json, JSON_DECODE_ANY, NULL);

	ck_assert_ptr_nonnull(v);
	ck_assert_msg(jv_depth(v) == depths[_i].depth, "%s: depth %d", depths[_i].json,
		      jv_depth(v));
	json_decref(v);
}
END_TEST

/* ------------------------------------------------------------ paths and errors */

static const struct {
	const char *prefix, *field, *out;
} joins[] = {
    {"", "ref", "ref"},
    {NULL, "ref", "ref"},
    {"nodes[3]", "ref", "nodes[3].ref"},
    {"nodes", "[3]", "nodes[3]"},
    {"deployment", "", "deployment"},
    {"deployment", NULL, "deployment"},
    {"", "", ""},
    {"a.b", "c", "a.b.c"},
};

START_TEST(test_path_join_table)
{
	char out[JV_PATH_MAX];

	jv_path_join(out, sizeof(out), joins[_i].prefix, joins[_i].field);
	ck_assert_str_eq(out, joins[_i].out);
}
END_TEST

START_TEST(test_path_join_truncates)
{
	char out[8];

	jv_path_join(out, sizeof(out), "nodes[1234]", "attributes");
	ck_assert_uint_eq(strlen(out), sizeof(out) - 1);
	ck_assert_str_eq(out, "nodes[1");
}
END_TEST

START_TEST(test_fail)
{
	struct jv_err err = {0};
	char longmsg[2 * JV_MSG_MAX];

	ck_assert(!jv_fail(&err, "edges[2]", "type", "must be one of %s (got %d)", "x", 7));
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.path, "edges[2].type");
	ck_assert_str_eq(err.msg, "must be one of x (got 7)");

	/* A long message is cut, never overflows. */
	memset(longmsg, 'm', sizeof(longmsg) - 1);
	longmsg[sizeof(longmsg) - 1] = '\0';
	jv_fail(&err, "", "x", "%s", longmsg);
	ck_assert_uint_eq(strlen(err.msg), JV_MSG_MAX - 1);
}
END_TEST

/* ---------------------------------------------------------------- field checks */

static const struct jv_field fields[] = {
    {"name", JV_STRING, true},	      {"n", JV_INTEGER, false}, {"num", JV_NUMBER, false},
    {"o", JV_OBJECT, false},	      {"a", JV_ARRAY, false},	{"b", JV_BOOL, false},
    {"labels", JV_STRING_MAP, false}, {"any", JV_ANY, false},	{NULL, JV_ANY, false},
};

static const struct {
	const char *json;
	const char *path; /* NULL: passes */
	const char *msg;  /* substring of the message */
} checks[] = {
    {"{\"name\":\"x\"}", NULL, NULL},
    {"{\"name\":\"x\",\"n\":-3,\"num\":1.5,\"o\":{},\"a\":[],\"b\":false,"
     "\"labels\":{\"k\":\"v\"},\"any\":null}",
     NULL, NULL},
    {"{\"name\":\"x\",\"num\":2}", NULL, NULL},	    /* an integer is a number */
    {"{\"name\":\"x\",\"labels\":{}}", NULL, NULL}, /* an empty map is fine */
    {"{\"name\":\"x\",\"any\":[1,{}]}", NULL, NULL},
    {"{}", "name", "is required"},
    {"{\"n\":1}", "name", "is required"},
    {"{\"name\":\"x\",\"extra\":1}", "extra", "unknown field"},
    {"{\"name\":\"x\",\"Name\":\"y\"}", "Name", "unknown field"}, /* case matters */
    {"{\"name\":null}", "name", "must be a string"},
    {"{\"name\":1}", "name", "must be a string"},
    {"{\"name\":\"x\",\"n\":1.0}", "n", "must be an integer"},
    {"{\"name\":\"x\",\"n\":\"1\"}", "n", "must be an integer"},
    {"{\"name\":\"x\",\"num\":\"1\"}", "num", "must be a number"},
    {"{\"name\":\"x\",\"o\":[]}", "o", "must be an object"},
    {"{\"name\":\"x\",\"a\":{}}", "a", "must be an array"},
    {"{\"name\":\"x\",\"b\":0}", "b", "must be a boolean"},
    {"{\"name\":\"x\",\"labels\":[]}", "labels", "object of strings"},
    {"{\"name\":\"x\",\"labels\":{\"k\":1}}", "labels.k", "must be a string"},
    {"{\"name\":\"x\",\"labels\":{\"a\":\"v\",\"k\":null}}", "labels.k", "must be a string"},
    {"[]", "", "must be an object"},
};

START_TEST(test_check_table)
{
	json_t *v = json_loads(checks[_i].json, JSON_DECODE_ANY, NULL);
	struct jv_err err = {0};
	bool ok;

	ck_assert_ptr_nonnull(v);
	ok = jv_check_object(v, "", fields, &err);
	if (checks[_i].path == NULL) {
		ck_assert_msg(ok, "%s: %s: %s", checks[_i].json, err.path, err.msg);
	} else {
		ck_assert_msg(!ok, "%s: accepted", checks[_i].json);
		ck_assert_int_eq(err.status, 400);
		ck_assert_str_eq(err.path, checks[_i].path);
		ck_assert_msg(strstr(err.msg, checks[_i].msg) != NULL, "%s: message \"%s\"",
			      checks[_i].json, err.msg);
	}
	json_decref(v);
}
END_TEST

/* The object's own path prefixes every field path. */
START_TEST(test_check_prefix)
{
	json_t *v = json_loads("{\"name\":\"x\",\"labels\":{\"k\":true}}", 0, NULL);
	json_t *s = json_string("x");
	struct jv_err err = {0};

	ck_assert(!jv_check_object(v, "nodes[3]", fields, &err));
	ck_assert_str_eq(err.path, "nodes[3].labels.k");
	json_object_set_new(v, "labels", json_object());
	json_object_set_new(v, "zzz", json_true());
	ck_assert(!jv_check_object(v, "nodes[3]", fields, &err));
	ck_assert_str_eq(err.path, "nodes[3].zzz");
	json_object_del(v, "zzz");
	json_object_del(v, "name");
	ck_assert(!jv_check_object(v, "nodes[3]", fields, &err));
	ck_assert_str_eq(err.path, "nodes[3].name");
	ck_assert(!jv_check_object(s, "nodes[3]", fields, &err));
	ck_assert_str_eq(err.path, "nodes[3]");
	ck_assert(!jv_check_object(NULL, "x", fields, &err));
	json_decref(v);
	json_decref(s);
}
END_TEST

/* Serialised size is the compact UTF-8 byte count. */
START_TEST(test_serialized_size)
{
	const char *docs[] = {"{}",    "{\"a\":1}", "{\"a\":[1,2,{\"b\":\"caf\xc3\xa9\"}]}",
			      "\"x\"", "null",	    "{\"k\":\"\\u0001\"}"};

	for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
		json_t *v = json_loads(docs[i], JSON_DECODE_ANY, NULL);
		char *dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

		ck_assert_ptr_nonnull(dump);
		ck_assert_msg(jv_serialized_size(v) == strlen(dump), "%s: %zu vs %zu", docs[i],
			      jv_serialized_size(v), strlen(dump));
		free(dump);
		json_decref(v);
	}
	ck_assert_uint_eq(jv_serialized_size(NULL), 0);
}
END_TEST

Suite *
suite_jv(void)
{
	Suite *s = suite_create("jv");
	TCase *tc = tcase_create("unit");

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))
	tcase_add_loop_test(tc, test_parse_good, 0, N(good_bodies));
	tcase_add_loop_test(tc, test_parse_bad, 0, N(bad_bodies));
	tcase_add_test(tc, test_parse_depth_limit);
	tcase_add_test(tc, test_parse_very_deep);
	tcase_add_loop_test(tc, test_depth_table, 0, N(depths));
	tcase_add_loop_test(tc, test_path_join_table, 0, N(joins));
	tcase_add_test(tc, test_path_join_truncates);
	tcase_add_test(tc, test_fail);
	tcase_add_loop_test(tc, test_check_table, 0, N(checks));
	tcase_add_test(tc, test_check_prefix);
	tcase_add_test(tc, test_serialized_size);
#undef N
	suite_add_tcase(s, tc);
	return s;
}
