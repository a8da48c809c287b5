/*
 * check_verify.c — comparing the in-memory graph with PostgreSQL: the digests
 * (cmdbd/graph_digest.c against sql.c SQL_VERIFY) and the verification itself
 * (cmdbd/verify.c) on a real loop, pool and database.
 *
 * tcase "digest" (no database): the digest reads an image whichever way its
 * JSON was written (PostgreSQL's spacing and escapes, the loader's compact form),
 * survives the image's normalisation by a GET, and refuses images that do not
 * read or disagree with the node.
 *
 * tcase "database" (CMDB_TEST_ADMIN_URL; a migrated scratch database per test):
 * the digests C computes — from the tailer's images, from the loader's, after a
 * GET rewrote them — equal PostgreSQL's for awkward attributes (numbers as
 * written, escapes, non-ASCII, nesting); a verification reports ok, then names
 * exactly what was changed behind the graph's back (updated, deleted, inserted
 * nodes; deleted edges) with counts and the list limit; it is cancelled cleanly.
 */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "db.h"
#include "graph.h"
#include "loader.h"
#include "pgtest.h"
#include "sha256.h"
#include "sql.h"
#include "tailer.h"
#include "verify.h"

#define HEX_LEN (2 * GRAPH_DIGEST_LEN)

/* ------------------------------------------------------------ digest, pure */

static void
node_digest_hex(graph *g, const char *ref, char hex[HEX_LEN + 1])
{
	unsigned char d[GRAPH_DIGEST_LEN];
	long i = graph_find(g, ref);

	ck_assert_msg(graph_node_digest(g, i, d) == 0, "%s: %s", ref,
		      graph_strerror(graph_node_digest(g, i, d)));
	sha256_hex(d, GRAPH_DIGEST_LEN, hex);
}

/* The same node written as PostgreSQL's jsonb text and as the loader's compact
 * text (other key order, escapes in other forms) has one digest. */
START_TEST(test_digest_reads_both_forms)
{
	static const char pg[] =
	    "{\"id\": \"0c5e\", \"ref\": \"service/a\", \"kind\": \"service\", \"name\": \"a\", "
	    "\"health\": \"ok\", \"labels\": {\"t\": \"1\"}, \"orphan\": false, \"sources\": "
	    "[\"api:t\"], \"version\": 3, \"health_at\": null, \"created_at\": "
	    "\"2026-01-01T00:00:00.000000Z\", \"attributes\": {\"x\": 1.50}, \"updated_at\": "
	    "\"2026-01-02T00:00:00.000000Z\", \"last_seen_at\": \"2026-01-03T00:00:00.000000Z\", "
	    "\"health_reason\": \"a\\u001fb \\\"c\\\" \\u00e9\"}";
	static const char compact[] =
	    "{\"id\":\"0c5e\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\","
	    "\"attributes\":{\"x\": 1.50},\"labels\":{\"t\": \"1\"},\"health\":\"ok\","
	    "\"health_reason\":\"a\\u001Fb \\\"c\\\" "
	    "é\",\"health_at\":\"2026-01-05T00:00:00.000000Z\","
	    "\"orphan\":false,\"sources\":[\"api:t\"],\"version\":3,\"created_at\":"
	    "\"2026-01-01T00:00:00.000000Z\",\"updated_at\":\"2026-01-02T00:00:00.000000Z\","
	    "\"last_seen_at\":null}";
	graph *g1 = graph_new(), *g2 = graph_new();
	char h1[HEX_LEN + 1], h2[HEX_LEN + 1], h3[HEX_LEN + 1];
	struct graph_node_view v;

	ck_assert_int_eq(
	    graph_node_put_image(g1, "service/a", GRAPH_OK, "{\"x\": 1.50}", pg, strlen(pg)), 0);
	ck_assert_int_eq(graph_node_put_image(g2, "service/a", GRAPH_OK, "{\"x\": 1.50}", compact,
					      strlen(compact)),
			 0);
	node_digest_hex(g1, "service/a", h1);
	node_digest_hex(g2, "service/a", h2);
	ck_assert_str_eq(h1, h2);
	/* A GET rewrites the text (1.50 becomes 1.5); the digest stays. */
	ck_assert_int_eq(graph_node_view(g1, graph_find(g1, "service/a"), &v), 0);
	ck_assert_ptr_null(strstr(v.json, "1.50"));
	node_digest_hex(g1, "service/a", h3);
	ck_assert_str_eq(h1, h3);
	/* The same number written otherwise is another value to PostgreSQL (jsonb
	 * keeps 1.50 as written), so another digest. */
	{
		char other[sizeof(pg)];
		char *p;

		memcpy(other, pg, sizeof(pg));
		p = strstr(other, "1.50");
		memmove(p + 3, p + 4, strlen(p + 4) + 1); /* "1.50" -> "1.5" */
		ck_assert_int_eq(graph_node_put_image(g2, "service/a", GRAPH_OK, "{\"x\": 1.5}",
						      other, strlen(other)),
				 0);
		node_digest_hex(g2, "service/a", h2);
		ck_assert_str_ne(h1, h2);
	}
	graph_free(g1);
	graph_free(g2);
}
END_TEST

/* Images the digest refuses (EPROTO): the verification reports their nodes. */
static const struct {
	const char *what;
	const char *attrs; /* as the graph holds them */
	int health;
	const char *image;
} bad_images[] = {
    {"not an object", NULL, GRAPH_OK, "[1, 2]"},
    {"truncated", NULL, GRAPH_OK, "{\"id\": \"x\", \"ref\": \"service/a\""},
    {"a field missing", NULL, GRAPH_OK,
     "{\"id\":\"x\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":{},"
     "\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"created_at\":\"c\",\"updated_at\":\"u\"}"},
    {"health disagrees with the node", NULL, GRAPH_DOWN,
     "{\"id\":\"x\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":{},"
     "\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"version\":1,\"created_at\":\"c\",\"updated_at\":\"u\"}"},
    {"attributes disagree with the node", "{\"a\": 1}", GRAPH_OK,
     "{\"id\":\"x\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":{},"
     "\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"version\":1,\"created_at\":\"c\",\"updated_at\":\"u\"}"},
    {"ref disagrees with the node", NULL, GRAPH_OK,
     "{\"id\":\"x\",\"ref\":\"service/b\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":{},"
     "\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"version\":1,\"created_at\":\"c\",\"updated_at\":\"u\"}"},
    {"version not an integer", NULL, GRAPH_OK,
     "{\"id\":\"x\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":{},"
     "\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"version\":\"1\",\"created_at\":\"c\",\"updated_at\":\"u\"}"},
    {"bad escape", NULL, GRAPH_OK,
     "{\"id\":\"x\\q\",\"ref\":\"service/a\",\"kind\":\"service\",\"name\":\"a\",\"attributes\":"
     "{},\"labels\":{},\"health\":\"ok\",\"health_reason\":null,\"orphan\":false,\"sources\":[],"
     "\"version\":1,\"created_at\":\"c\",\"updated_at\":\"u\"}"},
};

START_TEST(test_digest_refuses)
{
	graph *g = graph_new();
	unsigned char d[GRAPH_DIGEST_LEN];
	const char *img = bad_images[_i].image;

	ck_assert_int_eq(graph_node_put_image(g, "service/a", bad_images[_i].health,
					      bad_images[_i].attrs, img, strlen(img)),
			 0);
	errno = 0;
	ck_assert_msg(graph_node_digest(g, graph_find(g, "service/a"), d) == GRAPH_EPROTO,
		      "%s: digested", bad_images[_i].what);
	/* No image, no node. */
	ck_assert_int_eq(graph_node_put(g, "service/bare", GRAPH_OK, NULL), 0);
	ck_assert_int_eq(graph_node_digest(g, graph_find(g, "service/bare"), d), GRAPH_ENOENT);
	ck_assert_int_eq(graph_node_digest(g, 12345, d), GRAPH_EINVAL);
	ck_assert_int_eq(errno, 0); /* the graph reports through its return, never errno */
	graph_free(g);
}
END_TEST

/* Outgoing edges: the digest does not depend on the order they were added in. */
START_TEST(test_out_digest_order)
{
	graph *g1 = graph_new(), *g2 = graph_new();
	unsigned char d1[GRAPH_DIGEST_LEN], d2[GRAPH_DIGEST_LEN];
	size_t n1, n2;

	ck_assert_int_eq(graph_edge_put(g1, "s/a", GRAPH_RUNS_ON, "h/b"), 0);
	ck_assert_int_eq(graph_edge_put(g1, "s/a", GRAPH_PART_OF, "y/z"), 0);
	ck_assert_int_eq(graph_edge_put(g1, "s/a", GRAPH_DEPENDS_ON, "h/b"), 0);
	ck_assert_int_eq(graph_edge_put(g2, "s/a", GRAPH_DEPENDS_ON, "h/b"), 0);
	ck_assert_int_eq(graph_edge_put(g2, "s/a", GRAPH_RUNS_ON, "h/b"), 0);
	ck_assert_int_eq(graph_edge_put(g2, "s/a", GRAPH_PART_OF, "y/z"), 0);
	ck_assert_int_eq(graph_out_digest(g1, graph_find(g1, "s/a"), d1, &n1), 0);
	ck_assert_int_eq(graph_out_digest(g2, graph_find(g2, "s/a"), d2, &n2), 0);
	ck_assert_uint_eq(n1, 3);
	ck_assert_uint_eq(n2, 3);
	ck_assert_mem_eq(d1, d2, GRAPH_DIGEST_LEN);
	ck_assert_int_eq(graph_edge_remove(g2, "s/a", GRAPH_RUNS_ON, "h/b"), 0);
	ck_assert_int_eq(graph_out_digest(g2, graph_find(g2, "s/a"), d2, &n2), 0);
	ck_assert_uint_eq(n2, 2);
	ck_assert_mem_ne(d1, d2, GRAPH_DIGEST_LEN);
	graph_free(g1);
	graph_free(g2);
}
END_TEST

/* ------------------------------------------------------------ database */

static struct pgtest_map *const m = &pgtest_current_map;

static void
stop(struct tailer *t)
{
	pgtest_map_free_tailer(m, t);
}

/* The awkward node of every test here, and a few plain ones around it. */
static long long
populate(void)
{
	pgtest_map_write(m,
			 "SELECT cmdb_node_put('service', 'odd', '{\"ratio\": 1.50, \"big\":"
			 " 12345678901234, \"neg\": -0.25, \"e\": 1e3, \"text\": \"q \\\" b \\\\ "
			 "t \\t c \\u001f é 😀 / \\u2028\", \"nested\": {\"a\": [1, 2.0, null,"
			 " true, {\"b\": \"c\"}]}, \"\": \"empty key\"}'::jsonb, '{\"tier\":"
			 " \"1\", \"é\": \"ü\"}'::jsonb, NULL, 't', 'api:t')");
	pgtest_map_write(m, "SELECT cmdb_node_put('host', 'h', NULL, NULL, NULL, 't', 'api:t')");
	pgtest_map_write(m, "SELECT cmdb_node_put('team', 't', '{}', NULL, NULL, 't', 'api:u')");
	pgtest_map_write(m, "SELECT cmdb_node_put('database', 'pg:5432', NULL, NULL, NULL, 't', "
			    "'api:t')");
	pgtest_map_write(m, "SELECT cmdb_edge_put('service/odd', 'runs_on', 'host/h', NULL, 't', "
			    "'api:t')");
	pgtest_map_write(m, "SELECT cmdb_edge_put('service/odd', 'owned_by', 'team/t', NULL, 't', "
			    "'api:t')");
	pgtest_map_write(m, "SELECT cmdb_edge_put('service/odd', 'depends_on', "
			    "'database/pg:5432', NULL, 't', 'api:t')");
	pgtest_map_write(m, "SELECT cmdb_edge_put('host/h', 'part_of', 'team/t', NULL, 't', "
			    "'api:t')");
	return pgtest_map_write(m, "SELECT cmdb_node_health('host', 'h', 'degraded', 'disk\\n"
				   "full \"q\"', 't', 'api:t')");
}

/* Every node's and out-edge set's digest in g equals the database's. */
static void
assert_digests_equal_sql(graph *g, const char *what)
{
	PGresult *res = PQexec(m->side, sql_statements[SQL_VERIFY].sql);
	int compared = 0;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQresultErrorMessage(res));
	for (int i = 0; i < PQntuples(res); i++) {
		const char *tag = PQgetvalue(res, i, 0), *ref = PQgetvalue(res, i, 1);
		unsigned char d[GRAPH_DIGEST_LEN];
		char hex[HEX_LEN + 1];
		size_t n = 0;
		long idx;

		if (tag[0] == 's')
			continue;
		idx = graph_find(g, ref);
		ck_assert_msg(idx >= 0, "%s: %s not in the graph", what, ref);
		if (tag[0] == 'n')
			ck_assert_msg(graph_node_digest(g, idx, d) == 0, "%s: %s: %s", what, ref,
				      graph_strerror(graph_node_digest(g, idx, d)));
		else
			ck_assert_int_eq(graph_out_digest(g, idx, d, &n), 0);
		sha256_hex(d, GRAPH_DIGEST_LEN, hex);
		ck_assert_msg(strcmp(hex, PQgetvalue(res, i, 2)) == 0,
			      "%s: %s %s: memory %s, SQL %s", what, tag, ref, hex,
			      PQgetvalue(res, i, 2));
		if (tag[0] == 'e')
			ck_assert_int_eq((long long)n, atoll(PQgetvalue(res, i, 3)));
		compared++;
	}
	ck_assert_int_eq(compared, 4 + 2); /* four nodes, two with outgoing edges */
	PQclear(res);
}

static bool
synced(void *arg)
{
	return tailer_synced(arg);
}

START_TEST(test_digests_equal_postgres)
{
	graph *empty = graph_new(), *loaded = graph_new();
	long long seq0 = loader_load(m->side, empty), seq;
	struct tailer *t =
	    tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, empty, seq0, NULL, NULL);
	struct graph_node_view v;

	ck_assert_int_eq(seq0, 0);
	ck_assert_ptr_nonnull(t);
	seq = populate();
	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	ck_assert_int_eq(tailer_applied(t), seq);
	/* The tailer's images: after::text of each change row. */
	assert_digests_equal_sql(empty, "tailed");
	/* The loader's: built from the nodes' columns. */
	ck_assert_int_eq(loader_load(m->side, loaded), seq);
	assert_digests_equal_sql(loaded, "loaded");
	/* After a GET rewrote the images. */
	for (long i = 0; i < graph_index_end(loaded); i++)
		if (graph_node_ref(loaded, i) != NULL)
			ck_assert_int_eq(graph_node_view(loaded, i, &v), 0);
	assert_digests_equal_sql(loaded, "loaded, then read");
	stop(t);
	graph_free(empty);
	graph_free(loaded);
}
END_TEST

struct outcome {
	int calls;
	json_t *report;
	char error[300];
};

static void
done(void *arg, json_t *report, const char *error)
{
	struct outcome *o = arg;

	o->calls++;
	o->report = report;
	snprintf(o->error, sizeof(o->error), "%s", error ? error : "");
}

static bool
called(void *arg)
{
	return ((struct outcome *)arg)->calls > 0;
}

/* Runs one verification to its end; the report (caller frees). */
static json_t *
run_verify(struct tailer *t, size_t max_differ)
{
	struct outcome o = {0};
	struct verify *v = verify_start(m->base, m->db, SQL_VERIFY, t, max_differ, done, &o);

	ck_assert_ptr_nonnull(v);
	ck_assert_int_eq(o.calls, 0);
	ck_assert(pgtest_run_until(m->base, called, &o, 10000));
	ck_assert_msg(o.report != NULL, "verification failed: %s", o.error);
	return o.report;
}

static void
assert_side(json_t *report, const char *side, long long memory, long long database,
	    const char *differ)
{
	json_t *s = json_object_get(report, side);
	char *list = json_dumps(json_object_get(s, "differ"), JSON_COMPACT);

	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "memory")), memory);
	ck_assert_int_eq(json_integer_value(json_object_get(s, "database")), database);
	ck_assert_msg(strcmp(list, differ) == 0, "%s.differ %s, want %s", side, list, differ);
	free(list);
}

START_TEST(test_verify_reports)
{
	long long seq = populate(), seq0;
	graph *g = graph_new();
	struct tailer *t;
	json_t *r;

	seq0 = loader_load(m->side, g);
	ck_assert_int_eq(seq0, seq);
	t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, NULL, NULL);
	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));

	r = run_verify(t, 100);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), seq);
	assert_side(r, "nodes", 4, 4, "[]");
	assert_side(r, "edges", 4, 4, "[]");
	json_decref(r);

	/* Behind the graph's back: no change rows. */
	pgtest_exec(m->side, "UPDATE nodes SET health_reason = 'other' WHERE name = 'h'");
	pgtest_exec(m->side, "DELETE FROM edges WHERE type = 'runs_on'");
	pgtest_exec(m->side, "DELETE FROM nodes WHERE kind = 'database'");
	pgtest_exec(m->side, "INSERT INTO nodes (id, kind, name, sources) VALUES"
			     " (gen_random_uuid(), 'service', 'aaa', '[]'),"
			     " (gen_random_uuid(), 'service', 'zzz', '[]')");
	/* A write through the log after that is applied and not a difference. */
	pgtest_map_write(m, "SELECT cmdb_node_put('team', 't', '{\"n\": 2}', NULL, NULL, 't', "
			    "'api:t')");
	r = run_verify(t, 100);
	ck_assert(json_is_false(json_object_get(r, "ok")));
	ck_assert_int_eq(json_integer_value(json_object_get(r, "seq")), seq + 1);
	assert_side(r, "nodes", 4, 5,
		    "[\"database/pg:5432\",\"host/h\",\"service/aaa\",\"service/zzz\"]");
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(r, "nodes"), "differ_count")), 4);
	/* service/odd lost two edges (one deleted, one went with its node). */
	assert_side(r, "edges", 4, 2, "[\"service/odd\"]");
	json_decref(r);
	/* The list is capped, the count is not. */
	r = run_verify(t, 1);
	assert_side(r, "nodes", 4, 5, "[\"database/pg:5432\"]");
	ck_assert_int_eq(
	    json_integer_value(json_object_get(json_object_get(r, "nodes"), "differ_count")), 4);
	json_decref(r);
	stop(t);
	graph_free(g);
}
END_TEST

START_TEST(test_verify_cancel)
{
	graph *g = graph_new();
	long long seq0 = loader_load(m->side, g);
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, NULL, NULL);
	struct outcome o = {0};
	struct verify *v;
	json_t *r;

	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	/* Cancelled while its statement runs: answered at once, freed when it returns. */
	v = verify_start(m->base, m->db, SQL_VERIFY, t, 10, done, &o);
	ck_assert_ptr_nonnull(v);
	verify_cancel(v, "stop");
	ck_assert_int_eq(o.calls, 1);
	ck_assert_ptr_null(o.report);
	ck_assert_str_eq(o.error, "stop");
	pgtest_run_until(m->base, NULL, NULL, 200);
	ck_assert_int_eq(o.calls, 1);
	/* The tailer's limit was released: it follows the log again. */
	populate();
	tailer_poke(t);
	pgtest_run_until(m->base, NULL, NULL, 300);
	ck_assert_int_eq(tailer_applied(t), pgtest_value(m->side, "SELECT last FROM change_seq"));
	/* A reload in the middle ends a verification with an error. */
	o.calls = 0;
	v = verify_start(m->base, m->db, SQL_VERIFY, t, 10, done, &o);
	ck_assert_ptr_nonnull(v);
	tailer_suspend(t);
	ck_assert(pgtest_run_until(m->base, called, &o, 15000));
	ck_assert_ptr_null(o.report);
	ck_assert_msg(strstr(o.error, "reloaded") != NULL, "%s", o.error);
	tailer_reset(t, g, tailer_applied(t));
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	r = run_verify(t, 10);
	ck_assert(json_is_true(json_object_get(r, "ok")));
	json_decref(r);
	stop(t);
	graph_free(g);
}
END_TEST

Suite *
suite_verify(void)
{
	Suite *s = suite_create("verify");
	TCase *tc = tcase_create("digest");

	tcase_add_test(tc, test_digest_reads_both_forms);
	tcase_add_loop_test(tc, test_digest_refuses, 0,
			    (int)(sizeof(bad_images) / sizeof(bad_images[0])));
	tcase_add_test(tc, test_out_digest_order);
	suite_add_tcase(s, tc);
	if (pgtest_admin_url(s) == NULL)
		return s;
	tc = tcase_create("database");
	tcase_add_checked_fixture(tc, pgtest_map_fixture_setup, pgtest_map_fixture_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_digests_equal_postgres);
	tcase_add_test(tc, test_verify_reports);
	tcase_add_test(tc, test_verify_cancel);
	suite_add_tcase(s, tc);
	return s;
}
