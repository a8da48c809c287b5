/*
 * check_manifest.c — manifest v1 validation (cmdbd/manifest.c) against SPEC §3 and
 * schema/manifest-v1.schema.json: every rule the validator owns, the JSON path of
 * each error ("nodes[3].ref"), 413 for the count limits, duplicates, self-edges,
 * the 64 KiB attribute limit, and RFC 3339 date-times.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"

static const struct manifest_limits spec_limits = {10000, 10000};

/* The SPEC §3 example, verbatim. */
static const char spec_example[] =
    "{\"manifest\":\"cmdb/v1\",\"source\":\"capistrano:billing-api\",\"generation\":42,"
    "\"deployment\":{\"node\":\"service/billing-api\",\"version\":\"1.4.2\","
    "\"revision\":\"9f1c2ab\",\"environment\":\"prod\",\"actor\":\"alice\","
    "\"status\":\"succeeded\",\"started_at\":\"2026-11-21T10:00:00Z\","
    "\"finished_at\":\"2026-11-21T10:03:10Z\"},"
    "\"nodes\":["
    "{\"ref\":\"service/billing-api\",\"labels\":{\"tier\":\"1\"},"
    "\"attributes\":{\"repo\":\"git@example.com:pay/billing.git\"}},"
    "{\"ref\":\"host/web-01.prod\",\"attributes\":{\"ip\":\"10.0.0.5\"}},"
    "{\"ref\":\"team/payments\",\"attributes\":{\"email\":\"payments@example.com\","
    "\"oncall\":\"https://pager.example.com/payments\"}}],"
    "\"edges\":["
    "{\"from\":\"service/billing-api\",\"type\":\"runs_on\",\"to\":\"host/web-01.prod\"},"
    "{\"from\":\"service/billing-api\",\"type\":\"depends_on\",\"to\":\"database/pg-main\","
    "\"attributes\":{\"port\":5432}},"
    "{\"from\":\"service/billing-api\",\"type\":\"owned_by\",\"to\":\"team/payments\"}],"
    "\"extensions\":{\"x-heroku\":{\"dynos\":3}}}";

#define HEAD "{\"manifest\":\"cmdb/v1\",\"source\":\"s\""

static json_t *
load(const char *text)
{
	json_error_t e;
	json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &e);

	ck_assert_msg(v != NULL, "test JSON does not parse: %s: %s", e.text, text);
	return v;
}

/* Validates text; returns err.status (0 when valid). */
static int
validate(const char *text, const struct manifest_limits *lim, struct jv_err *err)
{
	json_t *m = load(text);
	bool ok;

	memset(err, 0, sizeof(*err));
	ok = manifest_validate(m, lim, err);
	json_decref(m);
	ck_assert_msg(ok == (err->status == 0), "result and status disagree");
	return ok ? 0 : err->status;
}

/* ---------------------------------------------------------------- valid ones */

static const char *const valid[] = {
    spec_example,
    HEAD "}",
    "{\"source\":\"0\",\"manifest\":\"cmdb/v1\"}",
    HEAD ",\"generation\":0}",
    HEAD ",\"generation\":9223372036854775807}",
    HEAD ",\"ttl\":\"36h\"}",
    HEAD ",\"ttl\":\"7d\"}",
    HEAD ",\"nodes\":[],\"edges\":[]}",
    HEAD ",\"deployment\":{}}",
    HEAD ",\"extensions\":{}}",
    HEAD ",\"extensions\":{\"x\":[1,{\"y\":null}],\"z\":\"\"}}",
    HEAD ",\"nodes\":[{\"ref\":\"service/a\"}]}",
    HEAD ",\"nodes\":[{\"ref\":\"service/a\",\"labels\":{},\"attributes\":{}}]}",
    /* The same name under two kinds is two nodes. */
    HEAD ",\"nodes\":[{\"ref\":\"service/a\"},{\"ref\":\"host/a\"}]}",
    /* Names may hold '/', ':' and UTF-8. */
    HEAD ",\"nodes\":[{\"ref\":\"network/10.0.0.0/8\"},{\"ref\":\"database/pg:5432\"},"
	 "{\"ref\":\"team/\\u00e9quipe\"}]}",
    /* Endpoints need not be declared. */
    HEAD ",\"edges\":[{\"from\":\"service/a\",\"type\":\"depends_on\",\"to\":\"database/b\"}]}",
    /* One pair, several types; and both directions. */
    HEAD ",\"edges\":[{\"from\":\"service/a\",\"type\":\"depends_on\",\"to\":\"host/b\"},"
	 "{\"from\":\"service/a\",\"type\":\"runs_on\",\"to\":\"host/b\"},"
	 "{\"from\":\"host/b\",\"type\":\"depends_on\",\"to\":\"service/a\"}]}",
    /* Each of the five edge types. */
    HEAD ",\"edges\":[{\"from\":\"a/x\",\"type\":\"depends_on\",\"to\":\"a/y\"},"
	 "{\"from\":\"a/x\",\"type\":\"runs_on\",\"to\":\"a/y\"},"
	 "{\"from\":\"a/x\",\"type\":\"connects_to\",\"to\":\"a/y\"},"
	 "{\"from\":\"a/x\",\"type\":\"part_of\",\"to\":\"a/y\"},"
	 "{\"from\":\"a/x\",\"type\":\"owned_by\",\"to\":\"a/y\",\"attributes\":{\"p\":1}}]}",
    HEAD ",\"deployment\":{\"started_at\":\"2026-11-21T10:00:00.123+05:30\","
	 "\"finished_at\":\"2026-11-21t10:03:10z\",\"status\":\"rolled_back\"}}",
};

START_TEST(test_valid_table)
{
	struct jv_err err;

	ck_assert_msg(validate(valid[_i], &spec_limits, &err) == 0, "%s: %s", err.path, err.msg);
}
END_TEST

/* ------------------------------------------------------------- invalid ones */

static const struct {
	const char *json;
	const char *path;
	const char *msg; /* substring of the message */
} invalid[] = {
    {"[]", "", "must be an object"},
    {"{\"source\":\"s\"}", "manifest", "is required"},
    {"{\"manifest\":\"cmdb/v1\"}", "source", "is required"},
    {"{\"manifest\":\"cmdb/v2\",\"source\":\"s\"}", "manifest", "cmdb/v1"},
    {"{\"manifest\":\"\",\"source\":\"s\"}", "manifest", "unsupported"},
    {"{\"manifest\":\"CMDB/V1\",\"source\":\"s\"}", "manifest", "unsupported"},
    {"{\"manifest\":1,\"source\":\"s\"}", "manifest", "must be a string"},
    {"{\"manifest\":null,\"source\":\"s\"}", "manifest", "must be a string"},
    {"{\"manifest\":\"cmdb/v1\",\"source\":\"Bad Source\"}", "source", "[a-z0-9]"},
    {"{\"manifest\":\"cmdb/v1\",\"source\":\"\"}", "source", "[a-z0-9]"},
    {"{\"manifest\":\"cmdb/v1\",\"source\":\"-x\"}", "source", "[a-z0-9]"},
    {"{\"manifest\":\"cmdb/v1\",\"source\":[\"s\"]}", "source", "must be a string"},
    {HEAD ",\"foo\":1}", "foo", "unknown field"},
    {HEAD ",\"Nodes\":[]}", "Nodes", "unknown field"},
    {HEAD ",\"generation\":-1}", "generation", ">= 0"},
    {HEAD ",\"ttl\":\"36\"}", "ttl", "duration"},
    {HEAD ",\"ttl\":\"0s\"}", "ttl", "duration"},
    {HEAD ",\"ttl\":\"1h30m\"}", "ttl", "duration"},
    {HEAD ",\"ttl\":\"\"}", "ttl", "duration"},
    {HEAD ",\"ttl\":36}", "ttl", "string"},
    {HEAD ",\"ttl\":null}", "ttl", "string"},
    {HEAD ",\"generation\":1.5}", "generation", "integer"},
    {HEAD ",\"generation\":\"1\"}", "generation", "integer"},
    {HEAD ",\"generation\":null}", "generation", "integer"},
    /* deployment */
    {HEAD ",\"deployment\":[]}", "deployment", "must be an object"},
    {HEAD ",\"deployment\":{\"who\":\"x\"}}", "deployment.who", "unknown field"},
    {HEAD ",\"deployment\":{\"node\":\"nokind\"}}", "deployment.node", "KIND/NAME"},
    {HEAD ",\"deployment\":{\"node\":\"Service/x\"}}", "deployment.node", "kind"},
    {HEAD ",\"deployment\":{\"version\":1}}", "deployment.version", "must be a string"},
    {HEAD ",\"deployment\":{\"status\":null}}", "deployment.status", "must be a string"},
    {HEAD ",\"deployment\":{\"started_at\":\"yesterday\"}}", "deployment.started_at", "RFC 3339"},
    {HEAD ",\"deployment\":{\"finished_at\":\"2026-11-21T10:03:10\"}}", "deployment.finished_at",
     "RFC 3339"},
    {HEAD ",\"deployment\":{\"finished_at\":1700000000}}", "deployment.finished_at",
     "must be a string"},
    /* nodes */
    {HEAD ",\"nodes\":{}}", "nodes", "must be an array"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\"},\"a/c\"]}", "nodes[1]", "must be an object"},
    {HEAD ",\"nodes\":[{}]}", "nodes[0].ref", "is required"},
    {HEAD ",\"nodes\":[{\"ref\":1}]}", "nodes[0].ref", "must be a string"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\"},{\"ref\":\"nokind\"}]}", "nodes[1].ref", "KIND/NAME"},
    {HEAD ",\"nodes\":[{\"ref\":\"service/\"}]}", "nodes[0].ref", "name"},
    {HEAD ",\"nodes\":[{\"ref\":\"service/a\\u0007\"}]}", "nodes[0].ref", "control"},
    {HEAD ",\"nodes\":[{\"ref\":\"service/a\\u0085\"}]}", "nodes[0].ref", "control"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\",\"kind\":\"a\"}]}", "nodes[0].kind", "unknown field"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\",\"attributes\":[]}]}", "nodes[0].attributes",
     "must be an object"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\",\"attributes\":null}]}", "nodes[0].attributes",
     "must be an object"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/a\"},{\"ref\":\"a/b\"},"
	  "{\"ref\":\"a/c\",\"labels\":{\"ok\":\"1\",\"tier\":1}}]}",
     "nodes[2].labels.tier", "must be a string"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/b\",\"labels\":[]}]}", "nodes[0].labels", "object of strings"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/x\"},{\"ref\":\"a/y\"},{\"ref\":\"a/z\"},"
	  "{\"ref\":\"a/x\"}]}",
     "nodes[3].ref", "nodes[0]"},
    {HEAD ",\"nodes\":[{\"ref\":\"a/x\"},{\"ref\":\"a/y\"},{\"ref\":\"a/y\"}]}", "nodes[2].ref",
     "a/y"},
    /* edges */
    {HEAD ",\"edges\":{}}", "edges", "must be an array"},
    {HEAD ",\"edges\":[[]]}", "edges[0]", "must be an object"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"to\":\"a/c\"}]}", "edges[0].type", "is required"},
    {HEAD ",\"edges\":[{\"type\":\"runs_on\",\"to\":\"a/c\"}]}", "edges[0].from", "is required"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\"}]}", "edges[0].to", "is required"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"uses\",\"to\":\"a/c\"}]}", "edges[0].type",
     "depends_on, runs_on, connects_to, part_of, owned_by"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"Runs_On\",\"to\":\"a/c\"}]}", "edges[0].type",
     "must be one of"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":1,\"to\":\"a/c\"}]}", "edges[0].type",
     "must be a string"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\"},"
	  "{\"from\":\"ab\",\"type\":\"runs_on\",\"to\":\"a/c\"}]}",
     "edges[1].from", "KIND/NAME"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"A/c\"}]}", "edges[0].to",
     "kind"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/b\"}]}", "edges[0].to",
     "itself"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\","
	  "\"attributes\":\"x\"}]}",
     "edges[0].attributes", "must be an object"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\",\"port\":1}]}",
     "edges[0].port", "unknown field"},
    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\"},"
	  "{\"from\":\"a/b\",\"type\":\"depends_on\",\"to\":\"a/c\"},"
	  "{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\",\"attributes\":{\"x\":1}}]}",
     "edges[2]", "edges[0]"},
    /* extensions */
    {HEAD ",\"extensions\":[]}", "extensions", "must be an object"},
    {HEAD ",\"extensions\":\"x\"}", "extensions", "must be an object"},
};

START_TEST(test_invalid_table)
{
	struct jv_err err;
	int status = validate(invalid[_i].json, &spec_limits, &err);

	ck_assert_msg(status == 400, "%s: status %d", invalid[_i].json, status);
	ck_assert_msg(strcmp(err.path, invalid[_i].path) == 0, "%s: path \"%s\", want \"%s\"",
		      invalid[_i].json, err.path, invalid[_i].path);
	ck_assert_msg(strstr(err.msg, invalid[_i].msg) != NULL, "%s: message \"%s\"",
		      invalid[_i].json, err.msg);
}
END_TEST

/* Deployment strings: at most 1024 bytes (not characters). */
START_TEST(test_deployment_text_limit)
{
	const char *fields[] = {"version", "revision", "environment", "actor", "status"};

	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		json_t *m = load(HEAD "}");
		char *text = malloc(1026);
		char path[64];
		struct jv_err err = {0};

		/* 1022 ASCII + a 2-byte character = 1024 bytes: fine. */
		memset(text, 'v', 1022);
		strcpy(text + 1022, "\xc3\xa9");
		json_object_set_new(m, "deployment", json_pack("{s:s}", fields[f], text));
		ck_assert_msg(manifest_validate(m, &spec_limits, &err), "%s: %s", fields[f],
			      err.msg);
		/* 1023 + 2 = 1025 bytes: too long, though 1024 characters. */
		memset(text, 'v', 1023);
		strcpy(text + 1023, "\xc3\xa9");
		json_object_set_new(m, "deployment", json_pack("{s:s}", fields[f], text));
		ck_assert(!manifest_validate(m, &spec_limits, &err));
		ck_assert_int_eq(err.status, 400);
		snprintf(path, sizeof(path), "deployment.%s", fields[f]);
		ck_assert_str_eq(err.path, path);
		ck_assert_msg(strstr(err.msg, "1024") != NULL, "%s", err.msg);
		free(text);
		json_decref(m);
	}
}
END_TEST

/* An object {"k":"xxx…"} that serialises to exactly `size` bytes. */
static json_t *
object_of_size(size_t size)
{
	size_t n = size - strlen("{\"k\":\"\"}");
	char *s = malloc(n + 1);
	json_t *o;

	memset(s, 'x', n);
	s[n] = '\0';
	o = json_pack("{s:s}", "k", s);
	free(s);
	ck_assert_uint_eq(jv_serialized_size(o), size);
	return o;
}

/* Attributes (nodes and edges) and labels: at most 64 KiB serialised. */
START_TEST(test_attribute_size)
{
	static const struct {
		const char *base;
		const char *array; /* "nodes" or "edges" */
		const char *field;
	} where[] = {
	    {HEAD ",\"nodes\":[{\"ref\":\"a/b\"}]}", "nodes", "attributes"},
	    {HEAD ",\"nodes\":[{\"ref\":\"a/b\"}]}", "nodes", "labels"},
	    {HEAD ",\"edges\":[{\"from\":\"a/b\",\"type\":\"runs_on\",\"to\":\"a/c\"}]}", "edges",
	     "attributes"},
	};

	for (size_t w = 0; w < sizeof(where) / sizeof(where[0]); w++) {
		json_t *m = load(where[w].base);
		json_t *item = json_array_get(json_object_get(m, where[w].array), 0);
		struct jv_err err = {0};
		char path[64];

		json_object_set_new(item, where[w].field, object_of_size(65536));
		ck_assert_msg(manifest_validate(m, &spec_limits, &err), "%s.%s at 64 KiB: %s",
			      where[w].array, where[w].field, err.msg);
		json_object_set_new(item, where[w].field, object_of_size(65537));
		ck_assert(!manifest_validate(m, &spec_limits, &err));
		ck_assert_int_eq(err.status, 400);
		snprintf(path, sizeof(path), "%s[0].%s", where[w].array, where[w].field);
		ck_assert_str_eq(err.path, path);
		ck_assert_msg(strstr(err.msg, "65536") != NULL, "%s", err.msg);
		json_decref(m);
	}
}
END_TEST

/* A manifest with n distinct nodes and n distinct edges. */
static json_t *
big_manifest(size_t nodes, size_t edges)
{
	json_t *m = load(HEAD "}");
	json_t *na = json_array(), *ea = json_array();

	for (size_t i = 0; i < nodes; i++) {
		char ref[32];

		snprintf(ref, sizeof(ref), "host/h%zu", i);
		json_array_append_new(na, json_pack("{s:s}", "ref", ref));
	}
	for (size_t i = 0; i < edges; i++) {
		char to[32];

		snprintf(to, sizeof(to), "host/h%zu", i);
		json_array_append_new(ea, json_pack("{s:s,s:s,s:s}", "from", "service/app", "type",
						    "runs_on", "to", to));
	}
	json_object_set_new(m, "nodes", na);
	json_object_set_new(m, "edges", ea);
	return m;
}

/* The SPEC limits: 10,000 nodes and 10,000 edges; one more is a 413 naming the limit. */
START_TEST(test_count_limits_spec)
{
	struct jv_err err = {0};
	json_t *m = big_manifest(10000, 10000);

	ck_assert_msg(manifest_validate(m, &spec_limits, &err), "%s: %s", err.path, err.msg);
	json_array_append_new(json_object_get(m, "nodes"), json_pack("{s:s}", "ref", "a/extra"));
	ck_assert(!manifest_validate(m, &spec_limits, &err));
	ck_assert_int_eq(err.status, 413);
	ck_assert_str_eq(err.path, "nodes");
	ck_assert_msg(strstr(err.msg, "10000") != NULL, "%s", err.msg);
	json_decref(m);

	m = big_manifest(0, 10001);
	ck_assert(!manifest_validate(m, &spec_limits, &err));
	ck_assert_int_eq(err.status, 413);
	ck_assert_str_eq(err.path, "edges");
	ck_assert_msg(strstr(err.msg, "10000") != NULL, "%s", err.msg);
	json_decref(m);
}
END_TEST

/* Configured limits apply; the count is checked before the items. */
START_TEST(test_count_limits_configured)
{
	struct manifest_limits lim = {3, 2};
	struct jv_err err = {0};
	json_t *m = big_manifest(3, 2);

	ck_assert(manifest_validate(m, &lim, &err));
	json_array_append_new(json_object_get(m, "edges"), json_string("not even an edge"));
	ck_assert(!manifest_validate(m, &lim, &err));
	ck_assert_int_eq(err.status, 413);
	ck_assert_str_eq(err.path, "edges");
	ck_assert_msg(strstr(err.msg, "limit is 2") != NULL, "%s", err.msg);
	json_decref(m);
}
END_TEST

/* Duplicates are found wherever they are, and the first one is named. */
START_TEST(test_duplicates_far_apart)
{
	struct jv_err err = {0};
	json_t *m = big_manifest(500, 500);

	json_array_append_new(json_object_get(m, "nodes"), json_pack("{s:s}", "ref", "host/h123"));
	ck_assert(!manifest_validate(m, &spec_limits, &err));
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.path, "nodes[500].ref");
	ck_assert_msg(strstr(err.msg, "nodes[123]") != NULL, "%s", err.msg);
	json_decref(m);

	m = big_manifest(0, 500);
	json_array_append_new(
	    json_object_get(m, "edges"),
	    json_pack("{s:s,s:s,s:s}", "from", "service/app", "type", "runs_on", "to", "host/h7"));
	ck_assert(!manifest_validate(m, &spec_limits, &err));
	ck_assert_str_eq(err.path, "edges[500]");
	ck_assert_msg(strstr(err.msg, "edges[7]") != NULL, "%s", err.msg);
	json_decref(m);
}
END_TEST

/* ------------------------------------------------------------ RFC 3339 times */

static const struct {
	const char *t;
	bool valid;
} times[] = {
    {"2026-11-21T10:00:00Z", true},
    {"2026-11-21t10:00:00z", true},
    {"2026-11-21 10:00:00Z", false}, /* the §5.6 NOTE's space: not accepted */
    {"2026-11-21T10:00:00.5Z", true},
    {"2026-11-21T10:00:00.123456789+05:30", true},
    {"2026-11-21T10:00:00-00:00", true},
    {"2026-11-21T10:00:00+15:59", true},
    {"2026-11-21T10:00:00+16:00", false}, /* beyond PostgreSQL's offsets */
    {"2026-12-31T23:59:60Z", false},	  /* leap second: not accepted */
    {"2024-02-29T00:00:00Z", true},	  /* leap year */
    {"2000-02-29T00:00:00Z", true},	  /* divisible by 400 */
    {"2026-01-31T00:00:00Z", true},
    {"", false},
    {"yesterday", false},
    {"2026-11-21", false},
    {"2026-11-21T10:00:00", false},
    {"2026-11-21T10:00Z", false},
    {"2026-11-21T10:00:00.Z", false},
    {"2026-11-21T10:00:00,5Z", false},
    {"2026-11-21T10:00:00+0530", false},
    {"2026-11-21T10:00:00+05", false},
    {"2026-11-21T10:00:00+24:00", false},
    {"2026-11-21T10:00:00+05:60", false},
    {"2026-11-21T10:00:00ZZ", false},
    {"2026-11-21T10:00:00Z ", false},
    {" 2026-11-21T10:00:00Z", false},
    {"2026-11-21X10:00:00Z", false},
    {"2026/11/21T10:00:00Z", false},
    {"26-11-21T10:00:00Z", false},
    {"2026-1-21T10:00:00Z", false},
    {"2026-00-21T10:00:00Z", false},
    {"2026-13-21T10:00:00Z", false},
    {"2026-11-00T10:00:00Z", false},
    {"2026-11-32T10:00:00Z", false},
    {"2026-11-21T24:00:00Z", false},
    {"2026-11-21T10:60:00Z", false},
    {"2026-11-21T10:00:61Z", false},
    {"2026-11-21T1a:00:00Z", false},
    /* Days that do not exist in their month (RFC 3339 §5.7; PostgreSQL rejects
     * them too, so they must not get past the validator). */
    {"2026-02-29T00:00:00Z", false},
    {"2026-02-30T00:00:00Z", false},
    {"2026-04-31T00:00:00Z", false},
    {"2026-06-31T00:00:00Z", false},
    {"2100-02-29T00:00:00Z", false}, /* divisible by 100, not by 400 */
};

START_TEST(test_time_table)
{
	ck_assert_msg(manifest_time_valid(times[_i].t) == times[_i].valid, "\"%s\": want %s",
		      times[_i].t, times[_i].valid ? "valid" : "invalid");
}
END_TEST

/* Pairs of JSON texts and whether they are the same manifest for the fast no-op. */
static const struct {
	const char *a, *b;
	bool same;
} fingerprints[] = {
    {"{\"a\":1,\"b\":[1,2]}", "{ \"b\" : [1, 2], \"a\" : 1 }", true}, /* order, space */
    {"{\"n\":{\"x\":1,\"y\":{\"p\":\"q\",\"r\":null}}}",
     "{\"n\":{\"y\":{\"r\":null,\"p\":\"q\"},\"x\":1}}", true}, /* nested objects */
    {"{\"s\":\"\\u00e9\"}", "{\"s\":\"\xc3\xa9\"}", true},	/* same UTF-8 string */
    {"{\"a\":1,\"b\":[1,2]}", "{\"a\":1,\"b\":[2,1]}", false},	/* array order */
    {"{\"a\":1}", "{\"a\":1.0}", false},			/* int vs real */
    {"{\"a\":1}", "{\"a\":\"1\"}", false},			/* number vs string */
    {"{\"a\":true}", "{\"a\":false}", false},
    {"{\"a\":null}", "{}", false},
    {"{\"ab\":\"c\"}", "{\"a\":\"bc\"}", false}, /* where a key ends matters */
    {"{\"a\":[\"x\",\"y\"]}", "{\"a\":[\"xy\"]}", false},
    {"{\"a\":{}}", "{\"a\":[]}", false},
};

static void
fingerprint_of(const char *text, char *hex)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	ck_assert_msg(j != NULL, "%s: %s", text, e.text);
	ck_assert_int_eq(manifest_fingerprint(j, hex), 0);
	ck_assert_uint_eq(strlen(hex), MANIFEST_FINGERPRINT_HEX);
	json_decref(j);
}

START_TEST(test_fingerprint_table)
{
	char a[MANIFEST_FINGERPRINT_HEX + 1], b[MANIFEST_FINGERPRINT_HEX + 1];

	fingerprint_of(fingerprints[_i].a, a);
	fingerprint_of(fingerprints[_i].b, b);
	ck_assert_msg((strcmp(a, b) == 0) == fingerprints[_i].same, "%s vs %s: same=%d",
		      fingerprints[_i].a, fingerprints[_i].b, fingerprints[_i].same);
}
END_TEST

/* The ttl in seconds (SPEC §5), 0 when absent. */
START_TEST(test_ttl_seconds)
{
	static const struct {
		const char *text;
		long long seconds;
	} cases[] = {
	    {HEAD "}", 0},
	    {HEAD ",\"ttl\":\"45s\"}", 45},
	    {HEAD ",\"ttl\":\"90m\"}", 5400},
	    {HEAD ",\"ttl\":\"36h\"}", 129600},
	    {HEAD ",\"ttl\":\"7d\"}", 604800},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *m = json_loads(cases[i].text, 0, NULL);

		ck_assert_ptr_nonnull(m);
		ck_assert_int_eq(manifest_ttl(m), cases[i].seconds);
		json_decref(m);
	}
}
END_TEST

Suite *
suite_manifest(void)
{
	Suite *s = suite_create("manifest");
	TCase *tc = tcase_create("unit");

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))
	tcase_add_loop_test(tc, test_valid_table, 0, N(valid));
	tcase_add_loop_test(tc, test_invalid_table, 0, N(invalid));
	tcase_add_test(tc, test_deployment_text_limit);
	tcase_add_test(tc, test_attribute_size);
	tcase_add_test(tc, test_count_limits_spec);
	tcase_add_test(tc, test_count_limits_configured);
	tcase_add_test(tc, test_duplicates_far_apart);
	tcase_add_loop_test(tc, test_time_table, 0, N(times));
	tcase_add_loop_test(tc, test_fingerprint_table, 0, N(fingerprints));
	tcase_add_test(tc, test_ttl_seconds);
#undef N
	suite_add_tcase(s, tc);
	return s;
}
