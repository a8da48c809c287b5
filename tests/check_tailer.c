/*
 * check_tailer.c — the change-log tailer (cmdbd/tailer.c) and the map loader
 * (cmdbd/loader.c).
 *
 * tcase "rows" (no database): tailer_row_apply() on a graph — what each op does,
 * and every kind of row it must refuse (with a reason, the graph unchanged).
 *
 * tcases "follow" and "load" (a real PostgreSQL: CMDB_TEST_ADMIN_URL, a migrated
 * scratch database per test, the server's statements on a real pool and loop):
 * the tailer follows writes made through the SQL functions; a row it cannot apply
 * (written into the log as a superuser) stops it before that row, counts it and
 * calls the failure callback once, and tailer_reset() with a reloaded graph goes
 * on from there; the limit holds the graph at a seq; waiters survive a
 * suspension; with polling it follows unpoked; a log that went back under the
 * map (a lossy failover) calls the failure callback. The loader builds, at one snapshot, the graph
 * and the node images the database's cmdb_node_json() shows, blocking and in the background, and a
 * background load fails or is cancelled cleanly.
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
#include "sql.h"
#include "tailer.h"

/* ------------------------------------------------------------ rows, pure */

#define IMG(ref, health)                                                                           \
	"{\"ref\": \"" ref "\", \"id\": \"0\", \"version\": 1, \"sources\": [], "                  \
	"\"health\": \"" health "\", \"last_seen_at\": null}"

static struct tailer_row
node_row(long long seq, const char *op, const char *ref, const char *health, const char *image)
{
	struct tailer_row r = {.seq = seq, .op = op, .ref = ref, .health = health, .image = image};

	r.image_len = image ? strlen(image) : 0;
	return r;
}

static struct tailer_row
edge_row(long long seq, const char *op, const char *from, const char *type, const char *to)
{
	struct tailer_row r = {.seq = seq, .op = op, .from = from, .type = type, .to = to};

	return r;
}

static void
apply_ok(graph *g, struct tailer_row r)
{
	const char *reason = NULL;

	ck_assert_msg(tailer_row_apply(g, &r, &reason) == 0, "seq %lld: %s", r.seq,
		      reason ? reason : "?");
}

START_TEST(test_row_ops)
{
	graph *g = graph_new();
	struct graph_node_view v;
	long a;

	ck_assert_ptr_nonnull(g);
	apply_ok(g, node_row(1, "node.created", "service/a", "ok", IMG("service/a", "ok")));
	apply_ok(g, node_row(2, "node.created", "host/h", "unknown", IMG("host/h", "unknown")));
	apply_ok(g, edge_row(3, "edge.created", "service/a", "runs_on", "host/h"));
	apply_ok(g, edge_row(4, "edge.updated", "service/a", "runs_on", "host/h"));
	ck_assert_uint_eq(graph_node_count(g), 2);
	ck_assert_uint_eq(graph_edge_count(g), 1);
	/* An update replaces health and image. */
	apply_ok(g, node_row(5, "node.updated", "service/a", "down", IMG("service/a", "down")));
	a = graph_find(g, "service/a");
	ck_assert_int_eq(graph_node_health(g, a), GRAPH_DOWN);
	ck_assert_int_eq(graph_node_view(g, a, &v), 0);
	ck_assert_ptr_nonnull(strstr(v.json, "\"down\""));
	/* Removing what is not there is a no-op, not a failure. */
	apply_ok(g, edge_row(6, "edge.deleted", "service/a", "depends_on", "host/h"));
	apply_ok(g, edge_row(7, "edge.deleted", "service/x", "runs_on", "host/h"));
	apply_ok(g, node_row(8, "node.deleted", "service/x", NULL, NULL));
	ck_assert_uint_eq(graph_edge_count(g), 1);
	apply_ok(g, edge_row(9, "edge.deleted", "service/a", "runs_on", "host/h"));
	ck_assert_uint_eq(graph_edge_count(g), 0);
	apply_ok(g, node_row(10, "node.deleted", "service/a", NULL, NULL));
	ck_assert_int_eq(graph_find(g, "service/a"), -1);
	ck_assert_uint_eq(graph_node_count(g), 1);
	graph_free(g);
}
END_TEST

/* Rows the tailer must refuse: each leaves the graph as it was. */
static const struct {
	const char *what;
	struct tailer_row row;
} refused[] = {
    {"unknown op", {.seq = 1, .op = "node.renamed", .ref = "service/a"}},
    {"no op", {.seq = 1, .ref = "service/a"}},
    {"node without image", {.seq = 1, .op = "node.updated", .ref = "service/a", .health = "ok"}},
    {"node with unknown health",
     {.seq = 1,
      .op = "node.created",
      .ref = "service/b",
      .health = "purple",
      .image = "{}",
      .image_len = 2}},
    {"node ref without a kind",
     {.seq = 1,
      .op = "node.created",
      .ref = "no-slash",
      .health = "ok",
      .image = "{}",
      .image_len = 2}},
    {"node delete without ref", {.seq = 1, .op = "node.deleted"}},
    {"edge of unknown type",
     {.seq = 1, .op = "edge.created", .from = "service/a", .type = "likes", .to = "host/h"}},
    {"edge without endpoints", {.seq = 1, .op = "edge.deleted", .type = "runs_on"}},
    {"edge to a node the map lacks",
     {.seq = 1, .op = "edge.created", .from = "service/a", .type = "runs_on", .to = "host/x"}},
    {"edge from a node the map lacks",
     {.seq = 1, .op = "edge.updated", .from = "service/x", .type = "runs_on", .to = "host/h"}},
};

START_TEST(test_row_refused)
{
	graph *g = graph_new();
	const char *reason = NULL;
	struct tailer_row row = refused[_i].row;

	ck_assert_ptr_nonnull(g);
	apply_ok(g, node_row(1, "node.created", "service/a", "ok", IMG("service/a", "ok")));
	apply_ok(g, node_row(2, "node.created", "host/h", "ok", IMG("host/h", "ok")));
	apply_ok(g, edge_row(3, "edge.created", "service/a", "depends_on", "host/h"));
	ck_assert_msg(tailer_row_apply(g, &row, &reason) == -1, "%s was applied", refused[_i].what);
	ck_assert_ptr_nonnull(reason);
	ck_assert_int_gt(strlen(reason), 0);
	ck_assert_uint_eq(graph_node_count(g), 2);
	ck_assert_uint_eq(graph_edge_count(g), 1);
	ck_assert_int_eq(graph_node_health(g, graph_find(g, "service/a")), GRAPH_OK);
	graph_free(g);
}
END_TEST

/* ------------------------------------------------------------ following */

static const char *admin_url;
static struct pgtest_map *const m = &pgtest_current_map;

static void
stop(struct tailer *t)
{
	pgtest_map_free_tailer(m, t);
}

static long long
put_node(const char *kind, const char *name, const char *attrs)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT cmdb_node_put('%s', '%s', '%s'::jsonb, NULL, NULL, 't', 'api:t')", kind,
		 name, attrs);
	return pgtest_map_write(m, sql);
}

static long long
put_edge(const char *from, const char *type, const char *to)
{
	char sql[512];

	snprintf(sql, sizeof(sql), "SELECT cmdb_edge_put('%s', '%s', '%s', NULL, 't', 'api:t')",
		 from, type, to);
	return pgtest_map_write(m, sql);
}

/* An edge.created row to a node nobody created, numbered and announced as
 * cmdb_commit_changes() would; returns its seq. */
static long long
insert_bad_row(void)
{
	pgtest_exec(m->side,
		    "WITH s AS (UPDATE change_seq SET last = last + 1 RETURNING last)"
		    " INSERT INTO changes (seq, actor, source, op, ref, after)"
		    " SELECT last, 't', 't', 'edge.created', 'x', '{\"from\": \"service/a\","
		    " \"type\": \"runs_on\", \"to\": \"host/ghost\"}' FROM s");
	return pgtest_value(m->side, "SELECT last FROM change_seq");
}

/* A graph loaded over the side connection; its seq in *seq. */
static graph *
load(long long *seq)
{
	graph *g = graph_new();

	ck_assert_ptr_nonnull(g);
	*seq = loader_load(m->side, g);
	ck_assert_int_ge(*seq, 0);
	return g;
}

struct failure {
	int calls;
	long long seq;
	char reason[200];
};

static void
on_failed(void *arg, long long seq, const char *reason)
{
	struct failure *f = arg;

	f->calls++;
	f->seq = seq;
	snprintf(f->reason, sizeof(f->reason), "%s", reason);
}

struct at_seq {
	struct tailer *t;
	long long seq;
};

static bool
reached(void *arg)
{
	struct at_seq *a = arg;

	return tailer_applied(a->t) >= a->seq;
}

static bool
synced(void *arg)
{
	return tailer_synced(arg);
}

static bool
failed(void *arg)
{
	return ((struct failure *)arg)->calls > 0;
}

/* Pokes and runs the loop until the tailer has applied seq. */
static void
catch_up(struct tailer *t, long long seq)
{
	struct at_seq a = {t, seq};

	tailer_poke(t);
	ck_assert_msg(pgtest_run_until(m->base, reached, &a, 5000), "applied %lld, want %lld",
		      tailer_applied(t), seq);
}

START_TEST(test_follows_the_log)
{
	long long seq0, seq;
	graph *g = load(&seq0);
	struct failure f = {0};
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, on_failed, &f);

	ck_assert_ptr_nonnull(t);
	ck_assert(!tailer_synced(t));
	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	put_node("service", "a", "{\"n\": 1}");
	put_node("host", "h", "{}");
	seq = put_edge("service/a", "runs_on", "host/h");
	catch_up(t, seq);
	ck_assert_int_eq(tailer_applied(t), seq);
	ck_assert_uint_eq(graph_node_count(g), 2);
	ck_assert_uint_eq(graph_edge_count(g), 1);
	ck_assert_ptr_eq(tailer_graph(t), g);
	ck_assert_int_eq(f.calls, 0);
	ck_assert_uint_eq(tailer_apply_failures(t), 0);
	stop(t);
	graph_free(g);
}
END_TEST

START_TEST(test_failure_stops_and_reset_goes_on)
{
	long long seq0, bad, after, seq2;
	graph *g = load(&seq0), *g2;
	struct failure f = {0};
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, on_failed, &f);
	unsigned gen;

	ck_assert_ptr_nonnull(t);
	put_node("service", "a", "{}");
	catch_up(t, put_node("host", "h", "{}"));
	ck_assert(tailer_synced(t));
	gen = tailer_generation(t);

	bad = insert_bad_row();
	after = put_node("service", "after", "{}");
	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, failed, &f, 5000));
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(f.seq, bad);
	ck_assert_str_eq(f.reason, "edge endpoint not in the map");
	/* Stopped before the bad row; nothing after it applied. */
	ck_assert_int_eq(tailer_applied(t), bad - 1);
	ck_assert_int_eq(graph_find(g, "service/after"), -1);
	ck_assert_uint_eq(graph_edge_count(g), 0);
	ck_assert_uint_eq(tailer_apply_failures(t), 1);
	ck_assert(!tailer_synced(t));
	ck_assert_uint_ne(tailer_generation(t), gen);
	/* Pokes do nothing now: no second failure, no progress. */
	tailer_poke(t);
	pgtest_run_until(m->base, NULL, NULL, 200);
	ck_assert_int_eq(f.calls, 1);
	ck_assert_int_eq(tailer_applied(t), bad - 1);

	/* The owner reloads; the tailer goes on from the new graph. */
	g2 = load(&seq2);
	ck_assert_int_ge(seq2, after);
	gen = tailer_generation(t);
	tailer_reset(t, g2, seq2);
	ck_assert_uint_ne(tailer_generation(t), gen);
	ck_assert_ptr_eq(tailer_graph(t), g2);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	ck_assert_int_ge(graph_find(g2, "service/after"), 0);
	catch_up(t, put_edge("service/after", "runs_on", "host/h"));
	ck_assert_uint_eq(graph_edge_count(g2), 1);
	ck_assert_int_eq(f.calls, 1);
	stop(t);
	graph_free(g);
	graph_free(g2);
}
END_TEST

START_TEST(test_limit_holds)
{
	long long seq0, s1, s2, s3;
	graph *g = load(&seq0);
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, NULL, NULL);

	ck_assert_ptr_nonnull(t);
	catch_up(t, put_node("service", "a", "{}"));
	tailer_set_limit(t, tailer_applied(t));
	s1 = put_node("service", "b", "{}");
	s2 = put_node("service", "c", "{}");
	s3 = put_node("service", "d", "{}");
	tailer_poke(t);
	pgtest_run_until(m->base, NULL, NULL, 300);
	ck_assert_int_eq(tailer_applied(t), s1 - 1);
	ck_assert_int_eq(graph_find(g, "service/b"), -1);
	/* A limit below what is applied means "where it is". */
	tailer_set_limit(t, 0);
	tailer_set_limit(t, s2);
	catch_up(t, s2);
	pgtest_run_until(m->base, NULL, NULL, 200);
	ck_assert_int_eq(tailer_applied(t), s2);
	ck_assert_int_ge(graph_find(g, "service/c"), 0);
	ck_assert_int_eq(graph_find(g, "service/d"), -1);
	tailer_set_limit(t, TAILER_NO_LIMIT);
	catch_up(t, s3);
	stop(t);
	graph_free(g);
}
END_TEST

struct woke {
	int calls;
	bool reached;
};

static void
woke_cb(void *arg, bool r)
{
	struct woke *w = arg;

	w->calls++;
	w->reached = r;
}

static bool
woken(void *arg)
{
	return ((struct woke *)arg)->calls > 0;
}

START_TEST(test_waiters_survive_a_reload)
{
	long long seq0, seq, seq2;
	graph *g = load(&seq0), *g2;
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, NULL, NULL);
	struct woke w = {0, false};

	ck_assert_ptr_nonnull(t);
	tailer_suspend(t);
	seq = put_node("service", "a", "{}");
	ck_assert_int_eq(tailer_wait(t, seq, 5000, woke_cb, &w), 0);
	tailer_poke(t);
	pgtest_run_until(m->base, NULL, NULL, 200);
	ck_assert_int_eq(w.calls, 0); /* suspended: nothing applied, still waiting */
	ck_assert_int_eq(tailer_applied(t), seq0);
	g2 = load(&seq2);
	tailer_reset(t, g2, seq2);
	ck_assert(pgtest_run_until(m->base, woken, &w, 1000));
	ck_assert(w.reached);
	stop(t);
	graph_free(g);
	graph_free(g2);
}
END_TEST

/* With polling (a read database NOTIFY does not reach), changes arrive unpoked. */
START_TEST(test_polls_without_pokes)
{
	long long seq0, seq;
	graph *g = load(&seq0);
	struct tailer *t = tailer_new(m->base, m->db, SQL_CHANGES_TAIL, -1, g, seq0, NULL, NULL);
	struct at_seq a;

	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(tailer_set_poll(t, 10, 100), 0);
	tailer_poke(t);
	ck_assert(pgtest_run_until(m->base, synced, t, 5000));
	/* Idle for a while: the interval has backed off to its maximum. */
	pgtest_run_until(m->base, NULL, NULL, 400);
	seq = put_node("service", "polled", "{}");
	a = (struct at_seq){t, seq};
	ck_assert_msg(pgtest_run_until(m->base, reached, &a, 1000),
		      "applied %lld without a poke, want %lld", tailer_applied(t), seq);
	ck_assert_int_ge(graph_find(g, "service/polled"), 0);
	stop(t);
	graph_free(g);
}
END_TEST

/*
 * A lossy failover, as the database shows it: the last change the map applied is
 * gone and its seq is reused by another change. The sightings poll notices and
 * calls the failure callback (the server reloads the map).
 */
START_TEST(test_log_went_back)
{
	long long seq0, kept, lost, again;
	graph *g = load(&seq0);
	struct failure f = {0};
	struct tailer *t =
	    tailer_new(m->base, m->db, SQL_CHANGES_TAIL, SQL_SOURCES_SEEN, g, seq0, on_failed, &f);

	ck_assert_ptr_nonnull(t);
	kept = put_node("service", "kept", "{}");
	lost = put_node("service", "lost", "{}");
	catch_up(t, lost);
	/* Two polls with the log intact: no alarm. */
	pgtest_run_until(m->base, NULL, NULL, 2200);
	ck_assert_int_eq(f.calls, 0);
	pgtest_exec(m->side, "SET session_replication_role = replica");
	pgtest_exec(m->side, "DELETE FROM changes WHERE seq > (SELECT last - 1 FROM change_seq)");
	pgtest_exec(m->side, "UPDATE change_seq SET last = last - 1");
	pgtest_exec(m->side, "SET session_replication_role = origin");
	again = put_node("service", "other", "{}");
	ck_assert_int_eq(again, lost); /* the premise: the seq is reused */
	ck_assert(pgtest_run_until(m->base, failed, &f, 3000));
	ck_assert_int_eq(f.calls, 1);
	ck_assert_str_eq(f.reason, "the change log is behind the map");
	ck_assert(!tailer_synced(t));
	ck_assert_int_gt(lost, kept);
	stop(t);
	graph_free(g);
}
END_TEST

/* ------------------------------------------------------------ loading */

START_TEST(test_load_builds_the_images)
{
	static const char *const nodes[] = {"service/a", "host/h", "database/pg:5432"};
	PGresult *res;
	long long seq;
	graph *g;

	put_node("service", "a",
		 "{\"ratio\": 1.50, \"big\": 12345678901234, \"text\": \"q \\\" b \\\\ t \\t "
		 "\\u001f é 😀\", \"nested\": {\"a\": [1, 2.0, null, true]}}");
	put_node("host", "h", "{}");
	put_node("database", "pg:5432", "{\"port\": 5432}");
	put_edge("service/a", "runs_on", "host/h");
	put_edge("service/a", "depends_on", "database/pg:5432");
	pgtest_map_write(m, "SELECT cmdb_node_health('host', 'h', 'down', 'disk \"full\"', 't', "
			    "'api:t')");
	g = load(&seq);
	ck_assert_int_eq(seq, pgtest_value(m->side, "SELECT last FROM change_seq"));
	ck_assert_uint_eq(graph_node_count(g), 3);
	ck_assert_uint_eq(graph_edge_count(g), 2);
	ck_assert_int_eq(graph_node_health(g, graph_find(g, "host/h")), GRAPH_DOWN);
	/* Each image is the node as the database shapes it (last_seen_at aside). */
	for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
		struct graph_node_view v;
		const char *params[1] = {nodes[i]};
		json_t *mine, *theirs;

		ck_assert_int_eq(graph_node_view(g, graph_find(g, nodes[i]), &v), 0);
		res = PQexecParams(m->side,
				   "SELECT (cmdb_node_json(n) - 'last_seen_at')::text FROM nodes n"
				   " WHERE n.kind || '/' || n.name = $1",
				   1, NULL, params, NULL, NULL, 0);
		ck_assert_int_eq(PQntuples(res), 1);
		mine = json_loadb(v.json, v.len, 0, NULL);
		theirs = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
		ck_assert_msg(json_equal(mine, theirs), "%s: memory %.*s, database %s", nodes[i],
			      (int)v.len, v.json, PQgetvalue(res, 0, 0));
		json_decref(mine);
		json_decref(theirs);
		PQclear(res);
	}
	graph_free(g);
}
END_TEST

START_TEST(test_load_unmigrated_fails)
{
	char name[64];
	PGconn *conn = pgtest_create_db(admin_url, "cmdb_check_tailer_empty", false, name);
	graph *g = graph_new();

	ck_assert_int_eq(loader_load(conn, g), -1);
	/* The connection is usable again. */
	ck_assert_int_eq(pgtest_value(conn, "SELECT 7"), 7);
	PQfinish(conn);
	graph_free(g);
	pgtest_drop_db(admin_url, name);
}
END_TEST

struct bg {
	int calls;
	graph *g;
	long long seq;
	char error[256];
};

static void
bg_done(void *arg, graph *g, long long seq, const char *error)
{
	struct bg *b = arg;

	b->calls++;
	b->g = g;
	b->seq = seq;
	snprintf(b->error, sizeof(b->error), "%s", error ? error : "");
}

static bool
bg_called(void *arg)
{
	return ((struct bg *)arg)->calls > 0;
}

START_TEST(test_background_load)
{
	struct bg b = {0};
	struct loader *l;
	long long seq;

	put_node("service", "a", "{}");
	put_node("host", "h", "{}");
	seq = put_edge("service/a", "runs_on", "host/h");
	l = loader_start(m->base, m->conninfo, 5, bg_done, &b);
	ck_assert_ptr_nonnull(l);
	ck_assert_int_eq(b.calls, 0); /* never from loader_start itself */
	ck_assert(pgtest_run_until(m->base, bg_called, &b, 10000));
	pgtest_run_until(m->base, NULL, NULL, 50);
	ck_assert_int_eq(b.calls, 1);
	ck_assert_ptr_nonnull(b.g);
	ck_assert_int_eq(b.seq, seq);
	ck_assert_uint_eq(graph_node_count(b.g), 2);
	ck_assert_uint_eq(graph_edge_count(b.g), 1);
	graph_free(b.g);
}
END_TEST

START_TEST(test_background_load_fails)
{
	struct bg b = {0};
	char *bad = pgtest_conninfo(admin_url, "cmdb_check_no_such_database");
	struct loader *l = loader_start(m->base, bad, 5, bg_done, &b);

	ck_assert_ptr_nonnull(l);
	ck_assert(pgtest_run_until(m->base, bg_called, &b, 10000));
	ck_assert_int_eq(b.calls, 1);
	ck_assert_ptr_null(b.g);
	ck_assert_int_eq(b.seq, -1);
	ck_assert_msg(strstr(b.error, "cmdb_check_no_such_database") != NULL, "error: %s", b.error);
	free(bad);
}
END_TEST

START_TEST(test_background_load_cancelled)
{
	struct bg b = {0};
	struct loader *l;

	for (int i = 0; i < 20; i++)
		put_node("service", i % 2 ? "a" : "b", "{}");
	/* Cancelled at once, and after it started: no callback, nothing leaks. */
	l = loader_start(m->base, m->conninfo, 5, bg_done, &b);
	ck_assert_ptr_nonnull(l);
	loader_cancel(l);
	l = loader_start(m->base, m->conninfo, 5, bg_done, &b);
	ck_assert_ptr_nonnull(l);
	pgtest_run_until(m->base, NULL, NULL, 1);
	loader_cancel(l);
	pgtest_run_until(m->base, NULL, NULL, 100);
	ck_assert_int_eq(b.calls, 0);
	loader_cancel(NULL);
}
END_TEST

Suite *
suite_tailer(void)
{
	Suite *s = suite_create("tailer");
	TCase *tc = tcase_create("rows");

	tcase_add_test(tc, test_row_ops);
	tcase_add_loop_test(tc, test_row_refused, 0, (int)(sizeof(refused) / sizeof(refused[0])));
	suite_add_tcase(s, tc);
	if ((admin_url = pgtest_admin_url(s)) == NULL)
		return s;
	tc = tcase_create("follow");
	tcase_add_checked_fixture(tc, pgtest_map_fixture_setup, pgtest_map_fixture_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_follows_the_log);
	tcase_add_test(tc, test_failure_stops_and_reset_goes_on);
	tcase_add_test(tc, test_limit_holds);
	tcase_add_test(tc, test_waiters_survive_a_reload);
	tcase_add_test(tc, test_polls_without_pokes);
	tcase_add_test(tc, test_log_went_back);
	suite_add_tcase(s, tc);
	tc = tcase_create("load");
	tcase_add_checked_fixture(tc, pgtest_map_fixture_setup, pgtest_map_fixture_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_load_builds_the_images);
	tcase_add_test(tc, test_load_unmigrated_fails);
	tcase_add_test(tc, test_background_load);
	tcase_add_test(tc, test_background_load_fails);
	tcase_add_test(tc, test_background_load_cancelled);
	suite_add_tcase(s, tc);
	return s;
}
