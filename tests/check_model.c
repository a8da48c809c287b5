/*
 * check_model.c — identifier syntax (cmdbd/model.c): kinds, sources, names, refs,
 * UTF-8, health states, edge types, percent-decoding and query parameter values. Table-driven: each
 * table row is one loop iteration, so a failure names the row (_i).
 */
#include <check.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

/* A string of n copies of c followed by tail (caller frees). */
static char *
repeat(char c, size_t n, const char *tail)
{
	size_t tl = strlen(tail);
	char *s = malloc(n + tl + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	memcpy(s + n, tail, tl + 1);
	return s;
}

/* ------------------------------------------------------------------------- kinds */

static const struct {
	const char *kind;
	bool valid;
} kinds[] = {
    {"service", true}, {"a", true},    {"load_balancer", true}, {"a0_", true},
    {"z9", true},      {"", false},    {"Service", false},	{"sErvice", false},
    {"1abc", false},   {"_a", false},  {"a-b", false},		{"a/b", false},
    {"a b", false},    {"a.b", false}, {"caf\xc3\xa9", false},	{"a\n", false},
};

START_TEST(test_kind_table)
{
	ck_assert_msg(model_kind_valid(kinds[_i].kind) == kinds[_i].valid, "kind \"%s\": want %s",
		      kinds[_i].kind, kinds[_i].valid ? "valid" : "invalid");
}
END_TEST

START_TEST(test_kind_length)
{
	char *k32 = repeat('k', MODEL_KIND_MAX, "");
	char *k33 = repeat('k', MODEL_KIND_MAX + 1, "");

	ck_assert(model_kind_valid(k32));
	ck_assert(!model_kind_valid(k33));
	ck_assert(!model_kind_valid(NULL));
	free(k32);
	free(k33);
}
END_TEST

/* ----------------------------------------------------------------------- sources */

static const struct {
	const char *source;
	bool valid;
} sources[] = {
    {"capistrano:billing-api", true},
    {"0", true},
    {"a", true},
    {"ci.github", true},
    {"a_b.c:d-e", true},
    {"terraform:infra", true},
    {"9lives", true},
    {"", false},
    {"-a", false},
    {".a", false},
    {":a", false},
    {"_a", false},
    {"A", false},
    {"capistrano:Billing", false},
    {"a b", false},
    {"a/b", false},
    {"api:*", false},
    {"a\t", false},
};

START_TEST(test_source_table)
{
	ck_assert_msg(model_source_valid(sources[_i].source) == sources[_i].valid,
		      "source \"%s\": want %s", sources[_i].source,
		      sources[_i].valid ? "valid" : "invalid");
}
END_TEST

START_TEST(test_source_length)
{
	char *s128 = repeat('s', MODEL_SOURCE_MAX, "");
	char *s129 = repeat('s', MODEL_SOURCE_MAX + 1, "");

	ck_assert(model_source_valid(s128));
	ck_assert(!model_source_valid(s129));
	ck_assert(!model_source_valid(NULL));
	free(s128);
	free(s129);
}
END_TEST

/* -------------------------------------------------------------------------- UTF-8 */

/* len < 0: use strlen. */
static const struct {
	const char *s;
	int len;
	bool valid;
	const char *why;
} utf8[] = {
    {"", -1, true, "empty"},
    {"abc", -1, true, "ASCII"},
    {"\xc3\xa9", -1, true, "U+00E9"},
    {"\xc2\x80", -1, true, "U+0080 (smallest 2-byte)"},
    {"\xdf\xbf", -1, true, "U+07FF"},
    {"\xe0\xa0\x80", -1, true, "U+0800 (smallest 3-byte)"},
    {"\xe2\x82\xac", -1, true, "U+20AC"},
    {"\xed\x9f\xbf", -1, true, "U+D7FF (below the surrogates)"},
    {"\xee\x80\x80", -1, true, "U+E000 (above the surrogates)"},
    {"\xef\xbf\xbf", -1, true, "U+FFFF"},
    {"\xf0\x90\x80\x80", -1, true, "U+10000 (smallest 4-byte)"},
    {"\xf0\x9f\x98\x80", -1, true, "U+1F600"},
    {"\xf4\x8f\xbf\xbf", -1, true, "U+10FFFF (largest)"},
    {"a\0b", 3, true, "NUL is valid UTF-8 (names reject it as a control)"},
    {"\xc0\x80", -1, false, "overlong NUL"},
    {"\xc1\xbf", -1, false, "overlong 2-byte"},
    {"\xe0\x80\x80", -1, false, "overlong 3-byte"},
    {"\xe0\x9f\xbf", -1, false, "overlong U+07FF in 3 bytes"},
    {"\xf0\x80\x80\x80", -1, false, "overlong 4-byte"},
    {"\xf0\x8f\xbf\xbf", -1, false, "overlong U+FFFF in 4 bytes"},
    {"\xed\xa0\x80", -1, false, "surrogate U+D800"},
    {"\xed\xbf\xbf", -1, false, "surrogate U+DFFF"},
    {"\xf4\x90\x80\x80", -1, false, "U+110000"},
    {"\xf5\x80\x80\x80", -1, false, "lead byte F5"},
    {"\xf8\x88\x80\x80\x80", -1, false, "5-byte form"},
    {"\xff", -1, false, "byte FF"},
    {"\xfe", -1, false, "byte FE"},
    {"\x80", -1, false, "lone continuation"},
    {"a\xbf", -1, false, "continuation after ASCII"},
    {"\xc3", -1, false, "truncated 2-byte"},
    {"\xe2\x82", -1, false, "truncated 3-byte"},
    {"\xf0\x9f\x98", -1, false, "truncated 4-byte"},
    {"a\xc3", -1, false, "truncated at the end"},
    {"\xc3\x28", -1, false, "bad continuation"},
    {"\xe2\x28\xa1", -1, false, "bad 2nd byte of 3"},
    {"\xe2\x82\x28", -1, false, "bad 3rd byte of 3"},
    {"\xc3\xa9", 1, false, "len cuts a sequence"},
};

START_TEST(test_utf8_table)
{
	size_t len = utf8[_i].len < 0 ? strlen(utf8[_i].s) : (size_t)utf8[_i].len;

	ck_assert_msg(model_utf8_valid(utf8[_i].s, len) == utf8[_i].valid, "%s: want %s",
		      utf8[_i].why, utf8[_i].valid ? "valid" : "invalid");
}
END_TEST

/* -------------------------------------------------------------------------- names */

static const struct {
	const char *name;
	int len; /* < 0: strlen */
	bool valid;
	const char *why;
} names[] = {
    {"web-01", -1, true, "plain"},
    {"pg-main:5432", -1, true, "colon"},
    {"10.20.0.0/16", -1, true, "slash"},
    {"a b", -1, true, "space"},
    {"caf\xc3\xa9", -1, true, "UTF-8"},
    {"\xc2\xa0", -1, true, "U+00A0 is not a control"},
    {"\xf0\x9f\x98\x80", -1, true, "emoji"},
    {"", -1, false, "empty"},
    {"a\tb", -1, false, "tab"},
    {"a\nb", -1, false, "newline"},
    {"\x1f", -1, false, "U+001F"},
    {"a\x7f", -1, false, "DEL"},
    {"\xc2\x80", -1, false, "C1 U+0080"},
    {"x\xc2\x9f", -1, false, "C1 U+009F"},
    {"a\0b", 3, false, "embedded NUL"},
    {"\xff", -1, false, "invalid UTF-8"},
    {"\xed\xa0\x80", -1, false, "surrogate"},
};

START_TEST(test_name_table)
{
	size_t len = names[_i].len < 0 ? strlen(names[_i].name) : (size_t)names[_i].len;

	ck_assert_msg(model_name_valid(names[_i].name, len) == names[_i].valid, "%s: want %s",
		      names[_i].why, names[_i].valid ? "valid" : "invalid");
}
END_TEST

/* The limit is 255 bytes, not characters. */
START_TEST(test_name_length)
{
	char *n255 = repeat('n', MODEL_NAME_MAX, "");
	char *n256 = repeat('n', MODEL_NAME_MAX + 1, "");
	char *mb255 = repeat('n', MODEL_NAME_MAX - 2, "\xc3\xa9"); /* 253 + 2 bytes */
	char *mb256 = repeat('n', MODEL_NAME_MAX - 1, "\xc3\xa9"); /* 254 + 2 bytes */

	ck_assert(model_name_valid(n255, strlen(n255)));
	ck_assert(!model_name_valid(n256, strlen(n256)));
	ck_assert(model_name_valid(mb255, strlen(mb255)));
	ck_assert(!model_name_valid(mb256, strlen(mb256)));
	ck_assert(!model_name_valid(NULL, 0));
	/* Only len bytes count: a valid prefix of a longer buffer. */
	ck_assert(model_name_valid("ab\x01", 2));
	free(n255);
	free(n256);
	free(mb255);
	free(mb256);
}
END_TEST

/* --------------------------------------------------------------------------- refs */

static const struct {
	const char *ref;
	const char *kind; /* expected on success */
	const char *name;
	const char *err; /* substring of the message, NULL on success */
} refs[] = {
    {"service/billing-api", "service", "billing-api", NULL},
    {"database/pg-main:5432", "database", "pg-main:5432", NULL},
    {"network/10.20.0.0/16", "network", "10.20.0.0/16", NULL},
    {"system/a/b/c", "system", "a/b/c", NULL},
    {"team/caf\xc3\xa9", "team", "caf\xc3\xa9", NULL},
    {"h//", "h", "/", NULL},
    {"", NULL, NULL, "KIND/NAME"},
    {"service", NULL, NULL, "no '/'"},
    {"/x", NULL, NULL, "kind"},
    {"Service/x", NULL, NULL, "kind"},
    {"1a/x", NULL, NULL, "kind"},
    {"a b/x", NULL, NULL, "kind"},
    {"service/", NULL, NULL, "name"},
    {"service/a\x01", NULL, NULL, "name"},
    {"service/a\xc2\x85", NULL, NULL, "name"},
    {"service/\xff", NULL, NULL, "name"},
};

START_TEST(test_ref_table)
{
	char kind[MODEL_KIND_MAX + 1] = "", name[MODEL_NAME_MAX + 1] = "";
	const char *why = model_ref_parse(refs[_i].ref, kind, name);

	if (refs[_i].err == NULL) {
		ck_assert_msg(why == NULL, "ref \"%s\": unexpected error %s", refs[_i].ref, why);
		ck_assert_str_eq(kind, refs[_i].kind);
		ck_assert_str_eq(name, refs[_i].name);
	} else {
		ck_assert_msg(why != NULL, "ref \"%s\": accepted", refs[_i].ref);
		ck_assert_msg(strstr(why, refs[_i].err) != NULL, "ref \"%s\": message \"%s\"",
			      refs[_i].ref, why);
	}
}
END_TEST

/* Kind and name at their limits fill the documented buffers exactly. */
START_TEST(test_ref_limits)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1];
	char *k32 = repeat('k', MODEL_KIND_MAX, "/x");
	char *k33 = repeat('k', MODEL_KIND_MAX + 1, "/x");
	char *n255 = repeat('n', MODEL_NAME_MAX, "");
	char *n256 = repeat('n', MODEL_NAME_MAX + 1, "");
	char *r255, *r256;

	ck_assert_ptr_null(model_ref_parse(k32, kind, name));
	ck_assert_uint_eq(strlen(kind), MODEL_KIND_MAX);
	ck_assert_str_eq(name, "x");
	ck_assert_ptr_nonnull(model_ref_parse(k33, kind, name));

	ck_assert_int_ge(asprintf(&r255, "host/%s", n255), 0);
	ck_assert_int_ge(asprintf(&r256, "host/%s", n256), 0);
	ck_assert_ptr_null(model_ref_parse(r255, kind, name));
	ck_assert_str_eq(name, n255);
	ck_assert_ptr_nonnull(model_ref_parse(r256, kind, name));
	ck_assert_uint_le(strlen(r255), MODEL_REF_MAX);

	/* Outputs are optional; NULL input is an error, not a crash. */
	ck_assert_ptr_null(model_ref_parse("service/x", NULL, NULL));
	ck_assert_ptr_nonnull(model_ref_parse(NULL, kind, name));
	free(k32);
	free(k33);
	free(n255);
	free(n256);
	free(r255);
	free(r256);
}
END_TEST

/* ------------------------------------------------------------ health, edge types */

START_TEST(test_health)
{
	const char *spec[] = {"ok", "degraded", "down", "unknown"};
	const char *bad[] = {"", "OK", "up", "down ", " ok", "unknow", "healthy"};

	ck_assert_int_eq(MODEL_HEALTH_COUNT, 4);
	for (int i = 0; i < 4; i++) {
		ck_assert_msg(model_health_valid(spec[i]), "%s", spec[i]);
		ck_assert_int_eq(model_health_index(spec[i]), i);
		ck_assert_str_eq(model_health_name(i), spec[i]);
		ck_assert_str_eq(model_health_states[i], spec[i]);
	}
	ck_assert_int_eq(MODEL_HEALTH_UNKNOWN, 3);
	ck_assert_str_eq(MODEL_HEALTH_LIST, "ok, degraded, down, unknown");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_msg(!model_health_valid(bad[i]), "\"%s\"", bad[i]);
		ck_assert_int_eq(model_health_index(bad[i]), -1);
	}
	ck_assert(!model_health_valid(NULL));
	ck_assert_ptr_null(model_health_name(-1));
	ck_assert_ptr_null(model_health_name(MODEL_HEALTH_COUNT));
}
END_TEST

START_TEST(test_edge_types)
{
	const char *spec[] = {"depends_on", "runs_on", "connects_to", "part_of", "owned_by"};
	char list[128] = "";

	ck_assert_int_eq(MODEL_EDGE_TYPE_COUNT, 5);
	for (int i = 0; i < 5; i++) {
		ck_assert_str_eq(model_edge_types[i], spec[i]);
		ck_assert_str_eq(model_edge_type_name(i), spec[i]);
		ck_assert_int_eq(model_edge_type_index(spec[i]), i);
		if (i > 0)
			strcat(list, ", ");
		strcat(list, spec[i]);
	}
	/* The lists used in error messages say the same as the table; the impact
	 * types are its first four. */
	ck_assert_str_eq(MODEL_EDGE_TYPES_LIST, list);
	ck_assert_int_eq(MODEL_IMPACT_TYPE_COUNT, 4);
	ck_assert_int_eq(MODEL_EDGE_OWNED_BY, 4);
	ck_assert_str_eq(MODEL_IMPACT_TYPES_LIST, "depends_on, runs_on, connects_to, part_of");
	/* Any separator: the client's help text spells the list with spaces. */
	ck_assert_str_eq(MODEL_EDGE_TYPES(MODEL_X_STR, " "),
			 "depends_on runs_on connects_to part_of owned_by");
	ck_assert_int_eq(model_edge_type_index("DEPENDS_ON"), -1);
	ck_assert_int_eq(model_edge_type_index("depends"), -1);
	ck_assert_int_eq(model_edge_type_index("depends_on "), -1);
	ck_assert_int_eq(model_edge_type_index(""), -1);
	ck_assert_int_eq(model_edge_type_index(NULL), -1);
	ck_assert_ptr_null(model_edge_type_name(-1));
	ck_assert_ptr_null(model_edge_type_name(MODEL_EDGE_TYPE_COUNT));
}
END_TEST

/* Each length in model.h agrees with the pattern or rule that spells it in
 * messages; the limits are ordered as the API needs. */
START_TEST(test_vocabulary_agrees)
{
	char want[32];

	snprintf(want, sizeof(want), "{0,%d}", MODEL_KIND_MAX - 1);
	ck_assert_ptr_nonnull(strstr(MODEL_KIND_PATTERN, want));
	snprintf(want, sizeof(want), "{0,%d}", MODEL_SOURCE_MAX - 1);
	ck_assert_ptr_nonnull(strstr(MODEL_SOURCE_PATTERN, want));
	snprintf(want, sizeof(want), "1-%d bytes ", MODEL_NAME_MAX);
	ck_assert_ptr_eq(strstr(MODEL_NAME_RULE, want), MODEL_NAME_RULE);
	ck_assert_int_le(MODEL_PAGE_DEFAULT, MODEL_PAGE_MAX);
	ck_assert_int_le(MODEL_WALK_DEFAULT, MODEL_WALK_MAX);
	/* A cursor is the hex of a ref: the longest ref's fits. */
	ck_assert_int_ge(MODEL_CURSOR_MAX, 2 * MODEL_REF_MAX);
}
END_TEST

/* ------------------------------------------------------------- percent-decoding */

static const struct {
	const char *in;
	int len;	 /* < 0: strlen */
	const char *out; /* NULL: must fail */
	size_t out_len;
} pct[] = {
    {"abc", -1, "abc", 3},
    {"", -1, "", 0},
    {"pg-main%3A5432", -1, "pg-main:5432", 12},
    {"pg-main%3a5432", -1, "pg-main:5432", 12},
    {"a%2Fb", -1, "a/b", 3},
    {"a%2fb", -1, "a/b", 3},
    {"a+b", -1, "a+b", 3},
    {"%25", -1, "%", 1},
    {"%2525", -1, "%25", 3},
    {"%41%42", -1, "AB", 2},
    {"caf%C3%A9", -1, "caf\xc3\xa9", 5},
    {"%e2%82%ac", -1, "\xe2\x82\xac", 3},
    {"%ff", -1, "\xff", 1}, /* bytes, not checked as UTF-8 here */
    {"%01", -1, "\x01", 1},
    {"abc%41", 3, "abc", 3}, /* only len bytes are read */
    {"%", -1, NULL, 0},
    {"%4", -1, NULL, 0},
    {"a%", -1, NULL, 0},
    {"ab%4", -1, NULL, 0},
    {"%zz", -1, NULL, 0},
    {"%4g", -1, NULL, 0},
    {"%g4", -1, NULL, 0},
    {"%%41", -1, NULL, 0},
    {"% 41", -1, NULL, 0},
    {"%00", -1, NULL, 0},
    {"a%00b", -1, NULL, 0},
    {"a\0b", 3, NULL, 0},
    {"%41%4", -1, NULL, 0},
    {"%41", 2, NULL, 0}, /* the escape is cut by len */
};

START_TEST(test_percent_table)
{
	size_t len = pct[_i].len < 0 ? strlen(pct[_i].in) : (size_t)pct[_i].len;
	size_t out_len = 12345;
	char *out = model_percent_decode(pct[_i].in, len, &out_len);

	if (pct[_i].out == NULL) {
		ck_assert_msg(out == NULL, "\"%s\": decoded to \"%s\"", pct[_i].in, out);
	} else {
		ck_assert_msg(out != NULL, "\"%s\": rejected", pct[_i].in);
		ck_assert_uint_eq(out_len, pct[_i].out_len);
		ck_assert_mem_eq(out, pct[_i].out, out_len + 1); /* NUL-terminated too */
	}
	free(out);
}
END_TEST

START_TEST(test_percent_no_out_len)
{
	char *out = model_percent_decode("x%20y", 5, NULL);

	ck_assert_str_eq(out, "x y");
	free(out);
}
END_TEST

/* --------------------------------------------------------- query parameter values */

static const struct {
	const char *v;
	long min, max;
	enum model_long_result want;
	long out;
} longs[] = {
    {"0", 0, 10, MODEL_LONG_OK, 0},
    {"10", 0, 10, MODEL_LONG_OK, 10},
    {"007", 0, 10, MODEL_LONG_OK, 7},
    {"-3", -5, 5, MODEL_LONG_OK, -3},
    {"-0", 0, 1, MODEL_LONG_OK, 0},
    {"9223372036854775807", 0, LONG_MAX, MODEL_LONG_OK, LONG_MAX},
    {"-9223372036854775808", LONG_MIN, 0, MODEL_LONG_OK, LONG_MIN},
    {"11", 0, 10, MODEL_LONG_RANGE, 0},
    {"-1", 0, 10, MODEL_LONG_RANGE, 0},
    {"9223372036854775807", 0, LONG_MAX - 1, MODEL_LONG_RANGE, 0},
    {"9223372036854775808", 0, LONG_MAX, MODEL_LONG_SYNTAX, 0}, /* overflow */
    {"-9223372036854775809", LONG_MIN, 0, MODEL_LONG_SYNTAX, 0},
    {"", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"-", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"+5", 0, 10, MODEL_LONG_SYNTAX, 0},
    {" 5", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"5 ", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"5x", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"0x5", 0, 10, MODEL_LONG_SYNTAX, 0},
    {"1e3", 0, 10000, MODEL_LONG_SYNTAX, 0},
    {"--1", -5, 5, MODEL_LONG_SYNTAX, 0},
    {"- 1", -5, 5, MODEL_LONG_SYNTAX, 0},
};

START_TEST(test_parse_long_table)
{
	long out = 4242;
	enum model_long_result r =
	    model_parse_long(longs[_i].v, longs[_i].min, longs[_i].max, &out);

	ck_assert_msg(r == longs[_i].want, "\"%s\": got %d, want %d", longs[_i].v, (int)r,
		      (int)longs[_i].want);
	ck_assert_int_eq(out, r == MODEL_LONG_OK ? longs[_i].out : 4242); /* else untouched */
}
END_TEST

START_TEST(test_parse_bool)
{
	ck_assert_int_eq(model_parse_bool("true"), 1);
	ck_assert_int_eq(model_parse_bool("1"), 1);
	ck_assert_int_eq(model_parse_bool("false"), 0);
	ck_assert_int_eq(model_parse_bool("0"), 0);
	ck_assert_int_eq(model_parse_bool("TRUE"), -1);
	ck_assert_int_eq(model_parse_bool("yes"), -1);
	ck_assert_int_eq(model_parse_bool(""), -1);
	ck_assert_int_eq(model_parse_bool("true "), -1);
	ck_assert_int_eq(model_parse_bool(NULL), -1);
}
END_TEST

START_TEST(test_label_filter_key)
{
	ck_assert_uint_eq(model_label_filter_key("team:payments"), 4);
	ck_assert_uint_eq(model_label_filter_key("team:"), 4);
	ck_assert_uint_eq(model_label_filter_key("a:b:c"), 1);
	ck_assert_uint_eq(model_label_filter_key("caf\xc3\xa9:x"), 5);
	ck_assert_uint_eq(model_label_filter_key(":value"), 0);
	ck_assert_uint_eq(model_label_filter_key("novalue"), 0);
	ck_assert_uint_eq(model_label_filter_key(""), 0);
	ck_assert_uint_eq(model_label_filter_key("k:\xff"), 0);
	ck_assert_uint_eq(model_label_filter_key(NULL), 0);
}
END_TEST

Suite *
suite_model(void)
{
	Suite *s = suite_create("model");
	TCase *tc = tcase_create("unit");

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))
	tcase_add_loop_test(tc, test_kind_table, 0, N(kinds));
	tcase_add_test(tc, test_kind_length);
	tcase_add_loop_test(tc, test_source_table, 0, N(sources));
	tcase_add_test(tc, test_source_length);
	tcase_add_loop_test(tc, test_utf8_table, 0, N(utf8));
	tcase_add_loop_test(tc, test_name_table, 0, N(names));
	tcase_add_test(tc, test_name_length);
	tcase_add_loop_test(tc, test_ref_table, 0, N(refs));
	tcase_add_test(tc, test_ref_limits);
	tcase_add_test(tc, test_health);
	tcase_add_test(tc, test_edge_types);
	tcase_add_test(tc, test_vocabulary_agrees);
	tcase_add_loop_test(tc, test_percent_table, 0, N(pct));
	tcase_add_test(tc, test_percent_no_out_len);
	tcase_add_loop_test(tc, test_parse_long_table, 0, N(longs));
	tcase_add_test(tc, test_parse_bool);
	tcase_add_test(tc, test_label_filter_key);
#undef N
	suite_add_tcase(s, tc);
	return s;
}
