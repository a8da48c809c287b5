/*
 * check_graph.c — unit tests of the in-memory graph (cmdbd/graph*.c):
 * storage and mutations, every query of SPEC §2 "Graph queries" on small
 * hand-built graphs, and a randomized consistency check against a naive model.
 * Links only the graph module, jansson and Check.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cmdbd/graph.h"

Suite *suite_graph(void);

static graph *g;

static void
setup(void)
{
	g = graph_new();
	ck_assert_ptr_nonnull(g);
}

static void
teardown(void)
{
	graph_free(g);
	g = NULL;
}

/*
 * Loads a graph from lines:
 *   N ref health [attributes JSON]
 *   E from type to
 */
static void
load(const char *spec)
{
	char *copy = strdup(spec);
	ck_assert_ptr_nonnull(copy);
	char *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char a[300], b[300], c[300];
		line += strspn(line, " ");
		if (*line == '\0')
			continue;
		if (line[0] == 'N') {
			int used = 0;
			ck_assert_int_eq(sscanf(line + 1, " %299s %299s%n", a, b, &used), 2);
			const char *attrs = line + 1 + used;
			attrs += strspn(attrs, " ");
			ck_assert_int_eq(
			    graph_node_put(g, a, graph_health_parse(b), *attrs ? attrs : NULL), 0);
		} else {
			ck_assert_int_eq(line[0], 'E');
			ck_assert_int_eq(sscanf(line + 1, " %299s %299s %299s", a, b, c), 3);
			int t = graph_edge_type_parse(b);
			ck_assert_int_ge(t, 0);
			ck_assert_int_eq(graph_edge_put(g, a, t, c), 0);
		}
	}
	free(copy);
}

static long
id(const char *ref)
{
	long i = graph_find(g, ref);
	ck_assert_msg(i >= 0, "no node %s", ref);
	return i;
}

/* Asserts `got` equals the JSON `want`, written with ' for " to keep the
 * expectations readable. Consumes `got`. */
static void
expect_json(json_t *got, const char *want)
{
	char *w = strdup(want);
	ck_assert_ptr_nonnull(w);
	for (char *p = w; *p; p++)
		if (*p == '\'')
			*p = '"';
	json_error_t err;
	json_t *wj = json_loads(w, 0, &err);
	ck_assert_msg(wj != NULL, "bad expected JSON (%s): %s", err.text, w);
	char *gs = got ? json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	char *ws = json_dumps(wj, JSON_COMPACT | JSON_SORT_KEYS);
	ck_assert_msg(got != NULL && json_equal(got, wj), "\n got  %s\n want %s", gs ? gs : "NULL",
		      ws);
	free(gs);
	free(ws);
	free(w);
	json_decref(wj);
	json_decref(got);
}

#define ALL GRAPH_IMPACT_MASK
#define UNL GRAPH_UNLIMITED

/* ---- Names -------------------------------------------------------------- */

START_TEST(test_names)
{
	static const char *types[] = {"depends_on", "runs_on", "connects_to", "part_of",
				      "owned_by"};
	for (int t = 0; t < GRAPH_EDGE_TYPES; t++) {
		ck_assert_str_eq(graph_edge_type_name(t), types[t]);
		ck_assert_int_eq(graph_edge_type_parse(types[t]), t);
	}
	ck_assert_int_eq(graph_edge_type_parse("depends"), -1);
	ck_assert_int_eq(graph_edge_type_parse(NULL), -1);
	ck_assert_ptr_null(graph_edge_type_name(GRAPH_EDGE_TYPES));
	ck_assert_ptr_null(graph_edge_type_name(-1));
	ck_assert_int_eq(graph_health_parse("down"), GRAPH_DOWN);
	ck_assert_int_eq(graph_health_parse("unknown"), GRAPH_UNKNOWN);
	ck_assert_int_eq(graph_health_parse("DOWN"), -1);
	ck_assert_str_eq(graph_health_name(GRAPH_DEGRADED), "degraded");
	ck_assert_ptr_null(graph_health_name(4));
	ck_assert_int_eq(graph_direction_parse("both"), GRAPH_DIR_BOTH);
	ck_assert_int_eq(graph_direction_parse("up"), -1);

	unsigned m = 0;
	ck_assert_int_eq(graph_impact_mask_parse(NULL, &m), 0);
	ck_assert_uint_eq(m, GRAPH_IMPACT_MASK);
	ck_assert_int_eq(graph_impact_mask_parse("part_of,depends_on,part_of", &m), 0);
	ck_assert_uint_eq(m, GRAPH_TYPE_BIT(GRAPH_PART_OF) | GRAPH_TYPE_BIT(GRAPH_DEPENDS_ON));
	static const char *bad[] = {"",		"owned_by",	     "depends_on,",
				    ",runs_on", "runs_on,,part_of",  "runs_o",
				    "runs_onx", "depends_on runs_on"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		m = 77;
		ck_assert_msg(graph_impact_mask_parse(bad[i], &m) == -1, "accepted '%s'", bad[i]);
		ck_assert_uint_eq(m, 77);
	}
}
END_TEST

/* ---- Storage ------------------------------------------------------------ */

START_TEST(test_node_put_update_remove)
{
	ck_assert_int_eq(graph_node_put(g, "service/a", GRAPH_OK, "{\"x\":1}"), 0);
	ck_assert_int_eq(graph_node_put(g, "database/pg-main:5432", GRAPH_DOWN, "{}"), 0);
	ck_assert_int_eq(graph_node_put(g, "service/a/b", GRAPH_UNKNOWN, NULL), 0);
	ck_assert_uint_eq(graph_node_count(g), 3);
	long a = id("service/a");
	ck_assert_str_eq(graph_node_ref(g, a), "service/a");
	ck_assert_int_eq(graph_node_health(g, a), GRAPH_OK);
	ck_assert_int_eq(graph_node_health(g, id("database/pg-main:5432")), GRAPH_DOWN);
	ck_assert_int_eq(graph_find(g, "service/b"), -1);
	ck_assert_int_eq(graph_find(g, "service"), -1);

	/* Update: same index, new health, edges kept. */
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_DEPENDS_ON, "database/pg-main:5432"),
			 0);
	ck_assert_int_eq(graph_node_put(g, "service/a", GRAPH_DEGRADED, NULL), 0);
	ck_assert_int_eq(id("service/a"), a);
	ck_assert_int_eq(graph_node_health(g, a), GRAPH_DEGRADED);
	ck_assert_uint_eq(graph_node_count(g), 3);
	ck_assert_uint_eq(graph_edge_count(g), 1);

	/* Bad arguments. */
	static const char *bad_refs[] = {"noslash", "/name", "kind/", ""};
	for (size_t i = 0; i < sizeof bad_refs / sizeof bad_refs[0]; i++) {
		ck_assert_int_eq(graph_node_put(g, bad_refs[i], GRAPH_OK, NULL), GRAPH_EINVAL);
	}
	ck_assert_int_eq(graph_node_put(g, NULL, GRAPH_OK, NULL), GRAPH_EINVAL);
	ck_assert_int_eq(graph_node_put(g, "service/z", 9, NULL), GRAPH_EINVAL);
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_EDGE_TYPES, "service/b"),
			 GRAPH_EINVAL);
	ck_assert_int_eq(graph_find(g, "service/b"), -1); /* nothing created */
	ck_assert_uint_eq(graph_node_count(g), 3);

	/* Removal; a missing ref is a no-op. */
	ck_assert_int_eq(graph_node_remove(g, "service/a"), 0);
	ck_assert_int_eq(graph_node_remove(g, "service/a"), 0);
	ck_assert_int_eq(graph_find(g, "service/a"), -1);
	ck_assert_ptr_null(graph_node_ref(g, a));
	ck_assert_int_eq(graph_node_health(g, a), -1);
	ck_assert_uint_eq(graph_node_count(g), 2);
	ck_assert_uint_eq(graph_edge_count(g), 0);
	size_t in = 9, out = 9;
	graph_degree(g, id("database/pg-main:5432"), &in, &out);
	ck_assert_uint_eq(in, 0);
	ck_assert_uint_eq(out, 0);
	graph_degree(g, a, &in, &out); /* a dead index reads as no edges */
	ck_assert_uint_eq(in + out, 0);
	graph_degree(g, 12345, &in, &out);
	ck_assert_uint_eq(in + out, 0);
	graph_free(NULL);
}
END_TEST

START_TEST(test_edges_and_degrees)
{
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_DEPENDS_ON, "database/d"), 0);
	ck_assert_uint_eq(graph_node_count(g), 2); /* endpoints created bare */
	ck_assert_int_eq(graph_node_health(g, id("database/d")), GRAPH_UNKNOWN);
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_DEPENDS_ON, "database/d"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 1); /* unique per (from, type, to) */
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_CONNECTS_TO, "database/d"), 0);
	ck_assert_int_eq(graph_edge_put(g, "database/d", GRAPH_DEPENDS_ON, "service/a"), 0);
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_PART_OF, "system/s"), 0);
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_OWNED_BY, "team/t"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 5);
	size_t in, out;
	graph_degree(g, id("service/a"), &in, &out);
	ck_assert_uint_eq(in, 1);
	ck_assert_uint_eq(out, 4);
	graph_degree(g, id("database/d"), &in, &out);
	ck_assert_uint_eq(in, 2);
	ck_assert_uint_eq(out, 1);

	ck_assert_int_eq(graph_edge_remove(g, "service/a", GRAPH_CONNECTS_TO, "database/d"), 0);
	ck_assert_int_eq(graph_edge_remove(g, "service/a", GRAPH_CONNECTS_TO, "database/d"), 0);
	ck_assert_int_eq(graph_edge_remove(g, "service/x", GRAPH_CONNECTS_TO, "database/d"), 0);
	ck_assert_int_eq(graph_edge_remove(g, "service/a", GRAPH_RUNS_ON, "database/d"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 4);
	graph_degree(g, id("database/d"), &in, &out);
	ck_assert_uint_eq(in, 1);
	/* The remaining depends_on still walks after the removal shuffled lists. */
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 10),
		    "{'root':'database/d','count':2,'truncated':false,'nodes':["
		    "{'ref':'service/a','depth':1,'via':{'from':'service/"
		    "a','type':'depends_on','to':'database/d'}},"
		    "{'ref':'system/s','depth':2,'via':{'from':'service/"
		    "a','type':'part_of','to':'system/s'}}]}");
}
END_TEST

/*
 * Regression, found by fuzz_changes (tests/fuzz/regressions/changes/): a node that never
 * had an edge has no adjacency array, and looking into it (the first edge put, a walk
 * from a bare node) computed NULL + 0, which C leaves undefined. clang's UBSan reports
 * it ("applying zero offset to null pointer"); gcc's does not check it, so this test
 * can only fail in a clang sanitizer build (make CC=clang SANITIZE=1, see
 * tests/fuzz/README.md).
 */
START_TEST(test_empty_adjacency)
{
	long bare;

	ck_assert_int_eq(graph_node_put(g, "host/bare", GRAPH_OK, NULL), 0);
	bare = id("host/bare");
	expect_json(graph_dependents(g, bare, UNL, ALL, 10),
		    "{'root':'host/bare','count':0,'truncated':false,'nodes':[]}");
	expect_json(graph_dependencies(g, bare, UNL, ALL, 10),
		    "{'root':'host/bare','count':0,'truncated':false,'nodes':[]}");
	expect_json(graph_owners(g, bare), "{'node':'host/bare','owners':[]}");
	json_decref(graph_subgraph(g, bare, UNL, GRAPH_DIR_BOTH));
	ck_assert_int_eq(graph_edge_remove(g, "host/bare", GRAPH_RUNS_ON, "host/none"), 0);
	/* The first edge of both ends, then of one of them. */
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_RUNS_ON, "host/bare"), 0);
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_PART_OF, "system/s"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 2);
	expect_json(graph_dependents(g, bare, UNL, ALL, 10),
		    "{'root':'host/bare','count':2,'truncated':false,'nodes':["
		    "{'ref':'service/a','depth':1,'via':{'from':'service/a','type':'runs_on',"
		    "'to':'host/bare'}},"
		    "{'ref':'system/s','depth':2,'via':{'from':'service/a','type':'part_of',"
		    "'to':'system/s'}}]}");
}
END_TEST

START_TEST(test_remove_readd_recycle)
{
	load("E service/a depends_on database/d\n"
	     "E service/b depends_on database/d\n"
	     "E database/d runs_on host/h\n"
	     "E database/d part_of system/s\n");
	long d = id("database/d");
	ck_assert_int_eq(graph_node_remove(g, "database/d"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 0);
	ck_assert_uint_eq(graph_node_count(g), 4);
	size_t in, out;
	for (const char *const *r =
		 (const char *const[]){"service/a", "service/b", "host/h", "system/s", NULL};
	     *r; r++) {
		graph_degree(g, id(*r), &in, &out);
		ck_assert_msg(in == 0 && out == 0, "%s still has edges", *r);
	}
	/* Re-adding gives a fresh node (no edges) at the recycled index. */
	ck_assert_int_eq(graph_node_put(g, "cache/c", GRAPH_OK, NULL), 0);
	ck_assert_int_eq(id("cache/c"), d);
	graph_degree(g, d, &in, &out);
	ck_assert_uint_eq(in + out, 0);
	ck_assert_int_eq(graph_node_put(g, "database/d", GRAPH_OK, NULL), 0);
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 10),
		    "{'root':'database/d','count':0,'truncated':false,'nodes':[]}");
	ck_assert_int_eq(graph_edge_put(g, "service/a", GRAPH_DEPENDS_ON, "database/d"), 0);
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 10),
		    "{'root':'database/d','count':1,'truncated':false,'nodes':["
		    "{'ref':'service/a','depth':1,'via':{'from':'service/"
		    "a','type':'depends_on','to':'database/d'}}]}");
}
END_TEST

/* Many inserts and removals: the hash table's backward-shift deletion must
 * keep every remaining key findable, and indexes must be reused. */
START_TEST(test_hash_churn)
{
	char ref[64];
	enum { N = 20000 };
	for (int i = 0; i < N; i++) {
		snprintf(ref, sizeof ref, "host/h-%d", i);
		ck_assert_int_eq(graph_node_put(g, ref, GRAPH_OK, NULL), 0);
	}
	for (int i = 0; i < N; i += 3) {
		snprintf(ref, sizeof ref, "host/h-%d", i);
		ck_assert_int_eq(graph_node_remove(g, ref), 0);
	}
	for (int i = 0; i < N; i++) {
		snprintf(ref, sizeof ref, "host/h-%d", i);
		long x = graph_find(g, ref);
		if (i % 3 == 0)
			ck_assert_msg(x == -1, "%s still found", ref);
		else
			ck_assert_msg(x >= 0 && strcmp(graph_node_ref(g, x), ref) == 0, "%s lost",
				      ref);
	}
	size_t live = graph_node_count(g);
	long maxidx = -1;
	for (int i = 0; i < N / 3; i++) {
		snprintf(ref, sizeof ref, "vm/v-%d", i);
		ck_assert_int_eq(graph_node_put(g, ref, GRAPH_OK, NULL), 0);
		if (id(ref) > maxidx)
			maxidx = id(ref);
	}
	ck_assert_uint_eq(graph_node_count(g), live + N / 3);
	ck_assert_int_lt(maxidx, N); /* recycled, not appended */
}
END_TEST

/* ---- Dependents / dependencies: one edge of each type ------------------- */

static const struct {
	const char *type;
	const char *impacted; /* the side a failure of the other impacts */
	const char *failing;
} impact_table[] = {
    {"depends_on", "service/a", "service/b"},
    {"runs_on", "service/a", "service/b"},
    {"connects_to", "service/a", "service/b"},
    {"part_of", "service/b", "service/a"},
    {"owned_by", NULL, NULL},
};

START_TEST(test_impact_direction)
{
	const char *type = impact_table[_i].type;
	int t = graph_edge_type_parse(type);
	ck_assert_int_eq(graph_edge_put(g, "service/a", t, "service/b"), 0);
	char want[512];
	if (impact_table[_i].impacted == NULL) {
		expect_json(graph_dependents(g, id("service/b"), UNL, ~0u, 10),
			    "{'root':'service/b','count':0,'truncated':false,'nodes':[]}");
		expect_json(graph_dependents(g, id("service/a"), UNL, ~0u, 10),
			    "{'root':'service/a','count':0,'truncated':false,'nodes':[]}");
		expect_json(graph_dependencies(g, id("service/a"), UNL, ~0u, 10),
			    "{'root':'service/a','count':0,'truncated':false,'nodes':[]}");
		return;
	}
	const char *imp = impact_table[_i].impacted, *fail = impact_table[_i].failing;
	char vbuf[128];
	snprintf(vbuf, sizeof vbuf, "{'from':'service/a','type':'%s','to':'service/b'}", type);
	snprintf(
	    want, sizeof want,
	    "{'root':'%s','count':1,'truncated':false,'nodes':[{'ref':'%s','depth':1,'via':%s}]}",
	    fail, imp, vbuf);
	expect_json(graph_dependents(g, id(fail), UNL, ALL, 10), want);
	snprintf(
	    want, sizeof want,
	    "{'root':'%s','count':1,'truncated':false,'nodes':[{'ref':'%s','depth':1,'via':%s}]}",
	    imp, fail, vbuf);
	expect_json(graph_dependencies(g, id(imp), UNL, ALL, 10), want);
	/* The other way round finds nothing. */
	snprintf(want, sizeof want, "{'root':'%s','count':0,'truncated':false,'nodes':[]}", imp);
	expect_json(graph_dependents(g, id(imp), UNL, ALL, 10), want);
	/* A mask without the type finds nothing either. */
	snprintf(want, sizeof want, "{'root':'%s','count':0,'truncated':false,'nodes':[]}", fail);
	expect_json(graph_dependents(g, id(fail), UNL, ALL & ~GRAPH_TYPE_BIT(t), 10), want);
}
END_TEST

START_TEST(test_diamond_ties)
{
	/* d is needed by b and c, both needed by a: a is found once, at depth 2,
	 * via b (the smaller parent ref). x reaches y two ways on one level:
	 * connects_to wins over depends_on by name. */
	load("E service/a depends_on service/c\n"
	     "E service/a depends_on service/b\n"
	     "E service/c depends_on database/d\n"
	     "E service/b depends_on database/d\n"
	     "E service/x depends_on service/y\n"
	     "E service/x connects_to service/y\n");
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 10),
		    "{'root':'database/d','count':3,'truncated':false,'nodes':["
		    "{'ref':'service/b','depth':1,'via':{'from':'service/"
		    "b','type':'depends_on','to':'database/d'}},"
		    "{'ref':'service/c','depth':1,'via':{'from':'service/"
		    "c','type':'depends_on','to':'database/d'}},"
		    "{'ref':'service/a','depth':2,'via':{'from':'service/"
		    "a','type':'depends_on','to':'service/b'}}]}");
	expect_json(graph_dependencies(g, id("service/a"), UNL, ALL, 10),
		    "{'root':'service/a','count':3,'truncated':false,'nodes':["
		    "{'ref':'service/b','depth':1,'via':{'from':'service/"
		    "a','type':'depends_on','to':'service/b'}},"
		    "{'ref':'service/c','depth':1,'via':{'from':'service/"
		    "a','type':'depends_on','to':'service/c'}},"
		    "{'ref':'database/d','depth':2,'via':{'from':'service/"
		    "b','type':'depends_on','to':'database/d'}}]}");
	expect_json(graph_dependents(g, id("service/y"), UNL, ALL, 10),
		    "{'root':'service/y','count':1,'truncated':false,'nodes':["
		    "{'ref':'service/x','depth':1,'via':{'from':'service/"
		    "x','type':'connects_to','to':'service/y'}}]}");
	expect_json(graph_dependents(g, id("service/y"), UNL, GRAPH_TYPE_BIT(GRAPH_DEPENDS_ON), 10),
		    "{'root':'service/y','count':1,'truncated':false,'nodes':["
		    "{'ref':'service/x','depth':1,'via':{'from':'service/"
		    "x','type':'depends_on','to':'service/y'}}]}");
}
END_TEST

START_TEST(test_cycle)
{
	load("E service/a depends_on service/b\n"
	     "E service/b depends_on service/c\n"
	     "E service/c depends_on service/a\n");
	expect_json(graph_dependents(g, id("service/a"), UNL, ALL, 10),
		    "{'root':'service/a','count':2,'truncated':false,'nodes':["
		    "{'ref':'service/c','depth':1,'via':{'from':'service/"
		    "c','type':'depends_on','to':'service/a'}},"
		    "{'ref':'service/b','depth':2,'via':{'from':'service/"
		    "b','type':'depends_on','to':'service/c'}}]}");
	expect_json(graph_dependencies(g, id("service/a"), UNL, ALL, 10),
		    "{'root':'service/a','count':2,'truncated':false,'nodes':["
		    "{'ref':'service/b','depth':1,'via':{'from':'service/"
		    "a','type':'depends_on','to':'service/b'}},"
		    "{'ref':'service/c','depth':2,'via':{'from':'service/"
		    "b','type':'depends_on','to':'service/c'}}]}");
}
END_TEST

START_TEST(test_mixed_types_depth_mask)
{
	/* host h <-runs_on- service s -part_of-> system p <-depends_on- service u
	 * lb -connects_to-> service u */
	load("E service/s runs_on host/h\n"
	     "E service/s part_of system/p\n"
	     "E service/u depends_on system/p\n"
	     "E load_balancer/lb connects_to service/u\n"
	     "E service/s owned_by team/t\n");
	expect_json(graph_dependents(g, id("host/h"), UNL, ALL, 10),
		    "{'root':'host/h','count':4,'truncated':false,'nodes':["
		    "{'ref':'service/s','depth':1,'via':{'from':'service/"
		    "s','type':'runs_on','to':'host/h'}},"
		    "{'ref':'system/p','depth':2,'via':{'from':'service/"
		    "s','type':'part_of','to':'system/p'}},"
		    "{'ref':'service/u','depth':3,'via':{'from':'service/"
		    "u','type':'depends_on','to':'system/p'}},"
		    "{'ref':'load_balancer/lb','depth':4,'via':{'from':'load_balancer/"
		    "lb','type':'connects_to','to':'service/u'}}]}");
	expect_json(graph_dependents(g, id("host/h"), 2, ALL, 10),
		    "{'root':'host/h','count':2,'truncated':false,'nodes':["
		    "{'ref':'service/s','depth':1,'via':{'from':'service/"
		    "s','type':'runs_on','to':'host/h'}},"
		    "{'ref':'system/p','depth':2,'via':{'from':'service/"
		    "s','type':'part_of','to':'system/p'}}]}");
	expect_json(graph_dependents(g, id("host/h"), 0, ALL, 10),
		    "{'root':'host/h','count':0,'truncated':false,'nodes':[]}");
	unsigned m;
	ck_assert_int_eq(graph_impact_mask_parse("runs_on,depends_on", &m), 0);
	expect_json(graph_dependents(g, id("host/h"), UNL, m, 10),
		    "{'root':'host/h','count':1,'truncated':false,'nodes':["
		    "{'ref':'service/s','depth':1,'via':{'from':'service/"
		    "s','type':'runs_on','to':'host/h'}}]}");
	expect_json(graph_dependencies(g, id("load_balancer/lb"), UNL, ALL, 10),
		    "{'root':'load_balancer/lb','count':4,'truncated':false,'nodes':["
		    "{'ref':'service/u','depth':1,'via':{'from':'load_balancer/"
		    "lb','type':'connects_to','to':'service/u'}},"
		    "{'ref':'system/p','depth':2,'via':{'from':'service/"
		    "u','type':'depends_on','to':'system/p'}},"
		    "{'ref':'service/s','depth':3,'via':{'from':'service/"
		    "s','type':'part_of','to':'system/p'}},"
		    "{'ref':'host/h','depth':4,'via':{'from':'service/"
		    "s','type':'runs_on','to':'host/h'}}]}");
}
END_TEST

START_TEST(test_limit_order_truncated)
{
	/* Depth-2 refs sort before depth-1 refs: order is depth first. */
	load("E service/e depends_on database/d\n"
	     "E service/c depends_on database/d\n"
	     "E service/d depends_on database/d\n"
	     "E app/a depends_on service/c\n"
	     "E app/b depends_on service/e\n");
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 2),
		    "{'root':'database/d','count':5,'truncated':true,'nodes':["
		    "{'ref':'service/c','depth':1,'via':{'from':'service/"
		    "c','type':'depends_on','to':'database/d'}},"
		    "{'ref':'service/d','depth':1,'via':{'from':'service/"
		    "d','type':'depends_on','to':'database/d'}}]}");
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 4),
		    "{'root':'database/d','count':5,'truncated':true,'nodes':["
		    "{'ref':'service/c','depth':1,'via':{'from':'service/"
		    "c','type':'depends_on','to':'database/d'}},"
		    "{'ref':'service/d','depth':1,'via':{'from':'service/"
		    "d','type':'depends_on','to':'database/d'}},"
		    "{'ref':'service/e','depth':1,'via':{'from':'service/"
		    "e','type':'depends_on','to':'database/d'}},"
		    "{'ref':'app/a','depth':2,'via':{'from':'app/"
		    "a','type':'depends_on','to':'service/c'}}]}");
	expect_json(graph_dependents(g, id("database/d"), UNL, ALL, 0),
		    "{'root':'database/d','count':5,'truncated':true,'nodes':[]}");
	json_t *r = graph_dependents(g, id("database/d"), UNL, ALL, 5);
	ck_assert(json_is_false(json_object_get(r, "truncated")));
	ck_assert_uint_eq(json_array_size(json_object_get(r, "nodes")), 5);
	ck_assert_str_eq(json_string_value(json_object_get(
			     json_array_get(json_object_get(r, "nodes"), 4), "ref")),
			 "app/b");
	json_decref(r);
}
END_TEST

/* A level far larger than the limit: only its smallest refs are returned,
 * in order (exercises the partial selection). */
START_TEST(test_limit_big_level)
{
	char ref[32];
	for (int i = 0; i < 500; i++) {
		snprintf(ref, sizeof ref, "service/s%03d", (i * 7919) % 500); /* shuffled */
		ck_assert_int_eq(graph_edge_put(g, ref, GRAPH_DEPENDS_ON, "database/hub"), 0);
	}
	for (size_t limit = 0; limit <= 500; limit += 37) {
		json_t *r = graph_dependents(g, id("database/hub"), UNL, ALL, limit);
		json_t *nodes = json_object_get(r, "nodes");
		ck_assert_int_eq(json_integer_value(json_object_get(r, "count")), 500);
		ck_assert_uint_eq(json_array_size(nodes), limit);
		for (size_t i = 0; i < limit; i++) {
			snprintf(ref, sizeof ref, "service/s%03zu", i);
			ck_assert_str_eq(
			    json_string_value(json_object_get(json_array_get(nodes, i), "ref")),
			    ref);
		}
		json_decref(r);
	}
}
END_TEST

START_TEST(test_query_bad_index)
{
	load("E service/a depends_on service/b\n");
	long a = id("service/a");
	ck_assert_int_eq(graph_node_remove(g, "service/a"), 0);
	long bad[] = {-1, a, 1000};
	for (size_t i = 0; i < 3; i++) {
		ck_assert_ptr_null(graph_dependents(g, bad[i], UNL, ALL, 10));
		ck_assert_int_eq(graph_error(g), GRAPH_EINVAL);
		ck_assert_ptr_null(graph_owners(g, bad[i]));
		ck_assert_ptr_null(graph_path(g, bad[i], id("service/b")));
		ck_assert_ptr_null(graph_subgraph(g, bad[i], 2, GRAPH_DIR_BOTH));
		ck_assert_ptr_null(graph_subgraph_dot(g, bad[i], 2, GRAPH_DIR_BOTH));
		ck_assert_ptr_null(graph_rootcause(g, &bad[i], 1, 16));
	}
	ck_assert_ptr_null(graph_subgraph(g, id("service/b"), 2, 0));
}
END_TEST

/* ---- Owners ------------------------------------------------------------- */

static const char owners_graph[] = "N team/pay ok {\"email\": \"pay@example.com\"}\n"
				   "N team/ops ok\n"
				   "N person/ann ok {\"chat\":\"@ann\"}\n"
				   "E service/direct owned_by team/pay\n"
				   "E service/direct owned_by person/ann\n"
				   "E service/direct part_of system/billing\n"
				   "E system/billing owned_by team/ops\n"
				   "E service/inherit part_of system/billing\n"
				   "E service/inherit part_of system/other\n"
				   "E system/other owned_by team/pay\n"
				   "E service/deep part_of system/mid\n"
				   "E system/mid part_of system/billing\n"
				   "E system/mid part_of system/top\n"
				   "E system/top owned_by team/pay\n"
				   "E system/top part_of system/billing\n"
				   "E service/web runs_on host/h\n"
				   "E service/web owned_by team/pay\n"
				   "E service/api runs_on host/h\n"
				   "E service/api part_of system/billing\n"
				   "E service/job runs_on host/h\n"
				   "E service/job part_of system/other\n"
				   "E service/lonely runs_on host/h\n"
				   "E vm/v runs_on host/h\n";

/*
 * The owners text is the bytes jansson writes for the same value: attributes
 * stored as the database prints jsonb (spaces, numeric scale) come out in
 * jansson's compact form, and a change of attributes is seen at once (the
 * written form is kept per node until then).
 */
START_TEST(test_owners_text)
{
	size_t len;
	char *t, *want;
	json_t *j;

	load("N service/a ok\nN team/t ok\nE service/a owned_by team/t\n");
	ck_assert_int_eq(
	    graph_node_put(g, "team/t", GRAPH_OK,
			   "{\"n\": 1.50, \"e\": \"x\\u00e9\\n\", \"l\": [1, {\"k\": null}]}"),
	    0);
	t = graph_owners_text(g, id("service/a"), false, &len);
	j = graph_owners(g, id("service/a"));
	want = json_dumps(j, JSON_COMPACT);
	ck_assert_str_eq(t, want);
	ck_assert_uint_eq(len, strlen(want));
	ck_assert_ptr_nonnull(strstr(t, "\"attributes\":{\"n\":1.5,\"e\":\"x\u00e9\\n\","));
	free(t);
	free(want);
	json_decref(j);

	/* New attributes replace the kept form; the array alone is the same array. */
	ck_assert_int_eq(graph_node_put(g, "team/t", GRAPH_OK, "{\"email\": \"t@x\"}"), 0);
	t = graph_owners_text(g, id("service/a"), true, &len);
	ck_assert_str_eq(t, "[{\"ref\":\"team/t\",\"attributes\":{\"email\":\"t@x\"},"
			    "\"rule\":\"direct\",\"via\":[\"service/a\",\"team/t\"]}]");
	free(t);
	/* Text that is not an object shows as {}; no owners is []. */
	ck_assert_int_eq(graph_node_put(g, "team/t", GRAPH_OK, "[1]"), 0);
	t = graph_owners_text(g, id("service/a"), true, &len);
	ck_assert_ptr_nonnull(strstr(t, "\"attributes\":{},"));
	free(t);
	t = graph_owners_text(g, id("team/t"), false, &len);
	ck_assert_str_eq(t, "{\"node\":\"team/t\",\"owners\":[]}");
	free(t);
	ck_assert_ptr_null(graph_owners_text(g, 4242, false, &len));
	ck_assert_int_eq(graph_error(g), GRAPH_EINVAL);
}
END_TEST

START_TEST(test_owners_rules)
{
	load(owners_graph);
	/* direct wins, even though its system has an owner too. */
	expect_json(
	    graph_owners(g, id("service/direct")),
	    "{'node':'service/direct','owners':["
	    "{'ref':'person/ann','attributes':{'chat':'@ann'},'rule':'direct','via':['service/"
	    "direct','person/ann']},"
	    "{'ref':'team/"
	    "pay','attributes':{'email':'pay@example.com'},'rule':'direct','via':['service/"
	    "direct','team/pay']}]}");
	/* part_of, union across the nearest level. */
	expect_json(graph_owners(g, id("service/inherit")),
		    "{'node':'service/inherit','owners':["
		    "{'ref':'team/ops','attributes':{},'rule':'part_of','via':['service/"
		    "inherit','system/billing','team/ops']},"
		    "{'ref':'team/"
		    "pay','attributes':{'email':'pay@example.com'},'rule':'part_of','via':['"
		    "service/inherit','system/other','team/pay']}]}");
	/* part_of: level 1 (system/mid) has none, level 2 has billing and top:
	 * both owners, each once; level 3 (top -> billing again) is not reached. */
	expect_json(graph_owners(g, id("service/deep")),
		    "{'node':'service/deep','owners':["
		    "{'ref':'team/ops','attributes':{},'rule':'part_of','via':['service/"
		    "deep','system/mid','system/billing','team/ops']},"
		    "{'ref':'team/"
		    "pay','attributes':{'email':'pay@example.com'},'rule':'part_of','via':['"
		    "service/deep','system/mid','system/top','team/pay']}]}");
	/* runs_on: union over web (direct), api (part_of), job (part_of, same
	 * owner as web: the shorter chain wins), lonely and vm (none). */
	expect_json(graph_owners(g, id("host/h")),
		    "{'node':'host/h','owners':["
		    "{'ref':'team/ops','attributes':{},'rule':'runs_on','via':['host/h','service/"
		    "api','system/billing','team/ops']},"
		    "{'ref':'team/"
		    "pay','attributes':{'email':'pay@example.com'},'rule':'runs_on','via':['host/"
		    "h','service/web','team/pay']}]}");
	expect_json(graph_owners(g, id("service/lonely")), "{'node':'service/lonely','owners':[]}");
	expect_json(graph_owners(g, id("team/pay")), "{'node':'team/pay','owners':[]}");
}
END_TEST

START_TEST(test_owners_runs_on_not_recursive)
{
	/* A vm on a host: the host's owners come from what runs on it (the vm),
	 * by the vm's direct/part_of owners only — not the vm's own runs_on. */
	load("E vm/v runs_on host/h\n"
	     "E service/s runs_on vm/v\n"
	     "E service/s owned_by team/t\n");
	expect_json(graph_owners(g, id("vm/v")),
		    "{'node':'vm/v','owners':[{'ref':'team/"
		    "t','attributes':{},'rule':'runs_on','via':['vm/v','service/s','team/t']}]}");
	expect_json(graph_owners(g, id("host/h")), "{'node':'host/h','owners':[]}");
}
END_TEST

START_TEST(test_owners_part_of_cycle_and_attrs)
{
	load("N team/t ok [1,2]\n" /* not an object: shown as {} */
	     "E system/a part_of system/b\n"
	     "E system/b part_of system/a\n"
	     "E service/s part_of system/a\n"
	     "E system/b owned_by team/t\n");
	expect_json(graph_owners(g, id("service/s")),
		    "{'node':'service/s','owners':[{'ref':'team/"
		    "t','attributes':{},'rule':'part_of','via':['service/s','system/a','system/"
		    "b','team/t']}]}");
	expect_json(
	    graph_owners(g, id("system/a")),
	    "{'node':'system/a','owners':[{'ref':'team/"
	    "t','attributes':{},'rule':'part_of','via':['system/a','system/b','team/t']}]}");
}
END_TEST

/* ---- Path --------------------------------------------------------------- */

START_TEST(test_path)
{
	load("E service/web depends_on service/api\n"
	     "E service/api depends_on database/db\n"
	     "E service/web depends_on cache/c\n"
	     "E cache/c depends_on database/db\n"
	     "E service/web depends_on system/s\n"
	     "E service/comp part_of system/s\n"
	     "E service/comp runs_on host/h\n"
	     "E service/web owned_by team/t\n"
	     "E database/db runs_on host/h\n");
	/* Two shortest chains to db: via cache/c (smaller parent ref) chosen. */
	expect_json(graph_path(g, id("service/web"), id("database/db")),
		    "{'from':'service/web','to':'database/db','hops':["
		    "{'from':'service/web','type':'depends_on','to':'cache/c'},"
		    "{'from':'cache/c','type':'depends_on','to':'database/db'}]}");
	/* Through a system to its component: the part_of hop reads as stored. */
	expect_json(graph_path(g, id("service/web"), id("service/comp")),
		    "{'from':'service/web','to':'service/comp','hops':["
		    "{'from':'service/web','type':'depends_on','to':'system/s'},"
		    "{'from':'service/comp','type':'part_of','to':'system/s'}]}");
	expect_json(graph_path(g, id("system/s"), id("host/h")),
		    "{'from':'system/s','to':'host/h','hops':["
		    "{'from':'service/comp','type':'part_of','to':'system/s'},"
		    "{'from':'service/comp','type':'runs_on','to':'host/h'}]}");
	expect_json(graph_path(g, id("host/h"), id("host/h")),
		    "{'from':'host/h','to':'host/h','hops':[]}");
	/* Wrong direction and owned_by do not make a path. */
	ck_assert_ptr_null(graph_path(g, id("database/db"), id("service/web")));
	ck_assert_int_eq(graph_error(g), GRAPH_ENOENT);
	ck_assert_ptr_null(graph_path(g, id("service/web"), id("team/t")));
	ck_assert_int_eq(graph_error(g), GRAPH_ENOENT);
}
END_TEST

/* ---- Rootcause ---------------------------------------------------------- */

START_TEST(test_rootcause_basic)
{
	load("N database/db down\n"
	     "N host/h ok\n"
	     "E service/a depends_on database/db\n"
	     "E service/b depends_on database/db\n"
	     "E database/db runs_on host/h\n"
	     "E service/a owned_by team/t\n");
	long f[] = {id("service/b"), id("service/a"), id("service/a")};
	expect_json(
	    graph_rootcause(g, f, 3, 16),
	    "{'candidates':["
	    "{'ref':'database/db','explains':['service/a','service/b'],'health':'down','depth':1},"
	    "{'ref':'host/h','explains':['service/a','service/b'],'health':'ok','depth':2},"
	    "{'ref':'service/a','explains':['service/a'],'health':'unknown','depth':0},"
	    "{'ref':'service/b','explains':['service/b'],'health':'unknown','depth':0}],"
	    "'root_causes':['database/db'],'minimal_cover':['database/db']}");
	/* max_depth 1 leaves the host out. */
	expect_json(
	    graph_rootcause(g, f, 2, 1),
	    "{'candidates':["
	    "{'ref':'database/db','explains':['service/a','service/b'],'health':'down','depth':1},"
	    "{'ref':'service/a','explains':['service/a'],'health':'unknown','depth':0},"
	    "{'ref':'service/b','explains':['service/b'],'health':'unknown','depth':0}],"
	    "'root_causes':['database/db'],'minimal_cover':['database/db']}");
	/* max_depth 0: only the failing nodes, both root causes. */
	expect_json(
	    graph_rootcause(g, f, 2, 0),
	    "{'candidates':["
	    "{'ref':'service/a','explains':['service/a'],'health':'unknown','depth':0},"
	    "{'ref':'service/b','explains':['service/b'],'health':'unknown','depth':0}],"
	    "'root_causes':['service/a','service/b'],'minimal_cover':['service/a','service/b']}");
	expect_json(graph_rootcause(g, NULL, 0, 16),
		    "{'candidates':[],'root_causes':[],'minimal_cover':[]}");
}
END_TEST

/* The "everything now failing" set of SPEC §6: live down or degraded nodes, in index order. */
START_TEST(test_unhealthy)
{
	long *idx = (long *)1, n;

	load("N service/a ok\n");
	ck_assert_int_eq(graph_unhealthy(g, &idx), 0);
	ck_assert_ptr_null(idx);
	load("N database/db down\n"
	     "N service/b degraded\n"
	     "N service/c unknown\n"
	     "N host/h down\n");
	ck_assert_int_eq(graph_node_remove(g, "host/h"), 0); /* a free slot is not live */
	for (int i = 0; i < 40; i++) {			     /* past the first growth */
		char ref[32];

		snprintf(ref, sizeof(ref), "service/x%02d", i);
		ck_assert_int_eq(graph_node_put(g, ref, i % 2 ? GRAPH_DOWN : GRAPH_OK, NULL), 0);
	}
	n = graph_unhealthy(g, &idx);
	ck_assert_int_eq(n, 2 + 20);
	ck_assert_str_eq(graph_node_ref(g, idx[0]), "database/db");
	ck_assert_str_eq(graph_node_ref(g, idx[1]), "service/b");
	for (long i = 1; i < n; i++)
		ck_assert_int_lt(idx[i - 1], idx[i]);
	for (long i = 2; i < n; i++)
		ck_assert_int_eq(graph_node_health(g, idx[i]), GRAPH_DOWN);
	free(idx);
}
END_TEST

START_TEST(test_rootcause_ranking)
{
	/* x and y both explain f1 and f2; y is down, so it ranks first.
	 * p and q explain f3 only at equal health; p's total depth is smaller.
	 * A failing node that the other needs explains both and is failing. */
	load("N service/y down\n"
	     "E service/f1 depends_on service/x\n"
	     "E service/f2 depends_on service/x\n"
	     "E service/f1 depends_on service/y\n"
	     "E service/f2 depends_on service/m\n"
	     "E service/m depends_on service/y\n"
	     "E service/f3 depends_on service/q\n"
	     "E service/q depends_on service/p\n");
	long f[] = {id("service/f1"), id("service/f2"), id("service/f3")};
	expect_json(
	    graph_rootcause(g, f, 3, 16),
	    "{'candidates':["
	    "{'ref':'service/y','explains':['service/f1','service/f2'],'health':'down','depth':1},"
	    "{'ref':'service/x','explains':['service/f1','service/"
	    "f2'],'health':'unknown','depth':1},"
	    "{'ref':'service/f1','explains':['service/f1'],'health':'unknown','depth':0},"
	    "{'ref':'service/f2','explains':['service/f2'],'health':'unknown','depth':0},"
	    "{'ref':'service/f3','explains':['service/f3'],'health':'unknown','depth':0},"
	    "{'ref':'service/m','explains':['service/f2'],'health':'unknown','depth':1},"
	    "{'ref':'service/q','explains':['service/f3'],'health':'unknown','depth':1},"
	    "{'ref':'service/p','explains':['service/f3'],'health':'unknown','depth':2}],"
	    "'root_causes':['service/y','service/f3'],"
	    "'minimal_cover':['service/y','service/f3']}");
}
END_TEST

START_TEST(test_rootcause_failing_chain_and_part_of)
{
	/* f1 needs f2 (also failing); the system s fails because its component
	 * c is part of it; c runs on host h, which is down. */
	load("N host/h down\n"
	     "E service/f1 depends_on service/f2\n"
	     "E service/c part_of system/s\n"
	     "E service/c runs_on host/h\n");
	long f[] = {id("service/f1"), id("service/f2"), id("system/s")};
	expect_json(graph_rootcause(g, f, 3, 16),
		    "{'candidates':["
		    "{'ref':'service/f2','explains':['service/f1','service/"
		    "f2'],'health':'unknown','depth':0},"
		    "{'ref':'host/h','explains':['system/s'],'health':'down','depth':2},"
		    "{'ref':'service/f1','explains':['service/f1'],'health':'unknown','depth':0},"
		    "{'ref':'system/s','explains':['system/s'],'health':'unknown','depth':0},"
		    "{'ref':'service/c','explains':['system/s'],'health':'unknown','depth':1}],"
		    "'root_causes':['service/f2','host/h'],"
		    "'minimal_cover':['service/f2','host/h']}");
}
END_TEST

START_TEST(test_rootcause_many_failing)
{
	/* 150 failing services (three bitset words) all needing one database. */
	char ref[32];
	long f[150];
	for (int i = 0; i < 150; i++) {
		snprintf(ref, sizeof ref, "service/s%03d", i);
		ck_assert_int_eq(graph_edge_put(g, ref, GRAPH_DEPENDS_ON, "database/db"), 0);
		f[i] = id(ref);
	}
	ck_assert_int_eq(graph_edge_put(g, "service/s149", GRAPH_DEPENDS_ON, "cache/c"), 0);
	json_t *r = graph_rootcause(g, f, 150, 16);
	ck_assert_ptr_nonnull(r);
	json_t *c = json_object_get(r, "candidates");
	ck_assert_uint_eq(json_array_size(c), 152);
	json_t *first = json_array_get(c, 0);
	ck_assert_str_eq(json_string_value(json_object_get(first, "ref")), "database/db");
	ck_assert_uint_eq(json_array_size(json_object_get(first, "explains")), 150);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(first, "explains"), 149)),
			 "service/s149");
	expect_json(json_incref(json_object_get(r, "minimal_cover")), "['database/db']");
	/* The database is not down, so each failing service is its own root
	 * cause; once it is down, it is the only one. */
	ck_assert_uint_eq(json_array_size(json_object_get(r, "root_causes")), 150);
	json_decref(r);
	ck_assert_int_eq(graph_node_put(g, "database/db", GRAPH_DOWN, NULL), 0);
	r = graph_rootcause(g, f, 150, 16);
	expect_json(json_incref(json_object_get(r, "root_causes")), "['database/db']");
	expect_json(json_incref(json_object_get(r, "minimal_cover")), "['database/db']");
	json_decref(r);
}
END_TEST

/* ---- Subgraph ----------------------------------------------------------- */

START_TEST(test_subgraph)
{
	load("N service/api ok\n"
	     "N database/db down\n"
	     "E service/web depends_on service/api\n"
	     "E service/api depends_on database/db\n"
	     "E service/api owned_by team/t\n"
	     "E database/db runs_on host/h\n"
	     "E service/web depends_on database/db\n");
	expect_json(graph_subgraph(g, id("service/api"), 1, GRAPH_DIR_BOTH),
		    "{'root':'service/api','nodes':["
		    "{'ref':'service/api','kind':'service','health':'ok','depth':0},"
		    "{'ref':'database/db','kind':'database','health':'down','depth':1},"
		    "{'ref':'service/web','kind':'service','health':'unknown','depth':1}],"
		    "'edges':["
		    "{'from':'service/api','type':'depends_on','to':'database/db'},"
		    "{'from':'service/web','type':'depends_on','to':'database/db'},"
		    "{'from':'service/web','type':'depends_on','to':'service/api'}]}");
	expect_json(graph_subgraph(g, id("service/web"), GRAPH_UNLIMITED, GRAPH_DIR_DEPENDENCIES),
		    "{'root':'service/web','nodes':["
		    "{'ref':'service/web','kind':'service','health':'unknown','depth':0},"
		    "{'ref':'database/db','kind':'database','health':'down','depth':1},"
		    "{'ref':'service/api','kind':'service','health':'ok','depth':1},"
		    "{'ref':'host/h','kind':'host','health':'unknown','depth':2}],"
		    "'edges':["
		    "{'from':'database/db','type':'runs_on','to':'host/h'},"
		    "{'from':'service/api','type':'depends_on','to':'database/db'},"
		    "{'from':'service/web','type':'depends_on','to':'database/db'},"
		    "{'from':'service/web','type':'depends_on','to':'service/api'}]}");
	expect_json(graph_subgraph(g, id("host/h"), 0, GRAPH_DIR_DEPENDENTS),
		    "{'root':'host/h','nodes':[{'ref':'host/"
		    "h','kind':'host','health':'unknown','depth':0}],'edges':[]}");
}
END_TEST

START_TEST(test_subgraph_dot)
{
	load("N database/pg-main:5432 down\n"
	     "E service/we\"ird\\ depends_on database/pg-main:5432\n"
	     "E service/we\"ird\\ owned_by team/t\n"
	     "E team/t part_of service/we\"ird\\\n");
	char *dot = graph_subgraph_dot(g, id("service/we\"ird\\"), 2, GRAPH_DIR_BOTH);
	ck_assert_ptr_nonnull(dot);
	ck_assert_msg(strncmp(dot, "digraph cmdb {\n", 15) == 0, "%s", dot);
	ck_assert_msg(strstr(dot, "\"database/pg-main:5432\" [label=\"database\\npg-main:5432\", "
				  "fillcolor=\"tomato\"") != NULL,
		      "%s", dot);
	ck_assert_msg(strstr(dot, "\"service/we\\\"ird\\\\\" -> \"database/pg-main:5432\" "
				  "[label=\"depends_on\"];") != NULL,
		      "%s", dot);
	ck_assert_msg(strstr(dot, "[label=\"owned_by\", style=dashed]") != NULL, "%s", dot);
	ck_assert_msg(strcmp(dot + strlen(dot) - 2, "}\n") == 0, "%s", dot);
	free(dot);
}
END_TEST

/* ---- Walk answers as text ----------------------------------------------- */

/* graph_walk_text() must give exactly json_dumps(graph_dependents()...). */
static void
expect_walk_text_equal(long root, int dir, int depth, unsigned mask, size_t limit)
{
	json_t *j = dir == GRAPH_DIR_DEPENDENTS ? graph_dependents(g, root, depth, mask, limit)
						: graph_dependencies(g, root, depth, mask, limit);
	ck_assert_ptr_nonnull(j);
	char *want = json_dumps(j, JSON_COMPACT);
	size_t len = 0;
	char *got = graph_walk_text(g, root, dir, depth, mask, limit, &len);
	ck_assert_ptr_nonnull(got);
	ck_assert_uint_eq(len, strlen(got));
	ck_assert_str_eq(got, want);
	free(got);
	free(want);
	json_decref(j);
}

START_TEST(test_walk_text_escapes)
{
	/* Refs the model would refuse still serialise as jansson does. */
	load("E service/a\"q depends_on database/db\n"
	     "E service/b\\s depends_on database/db\n"
	     "E service/\xc3\xa9t\xc3\xa9 runs_on database/db\n"
	     "E system/s part_of database/db\n"
	     "E database/db part_of system/big\n");
	ck_assert_int_eq(
	    graph_edge_put(g, "service/ctl\x01\x1f\t\b\f\r\n/x", GRAPH_DEPENDS_ON, "service/a\"q"),
	    0);
	long db = id("database/db");
	for (size_t limit = 1; limit <= 8; limit++) {
		expect_walk_text_equal(db, GRAPH_DIR_DEPENDENTS, UNL, ALL, limit);
		expect_walk_text_equal(db, GRAPH_DIR_DEPENDENCIES, UNL, ALL, limit);
	}
	expect_walk_text_equal(db, GRAPH_DIR_DEPENDENTS, 1, GRAPH_TYPE_BIT(GRAPH_RUNS_ON), 5);
	expect_walk_text_equal(db, GRAPH_DIR_DEPENDENTS, 0, ALL, 5);
	size_t len;
	ck_assert_ptr_null(graph_walk_text(g, db, GRAPH_DIR_BOTH, UNL, ALL, 5, &len));
	ck_assert_int_eq(graph_error(g), GRAPH_EINVAL);
	ck_assert_ptr_null(graph_walk_text(g, 9999, GRAPH_DIR_DEPENDENTS, UNL, ALL, 5, &len));
	ck_assert_ptr_null(graph_walk_text(NULL, 0, GRAPH_DIR_DEPENDENTS, UNL, ALL, 5, &len));
}
END_TEST

/* ---- Node images and last_seen_at ---------------------------------------- */

#define T1 "2026-11-21T10:00:00.000001Z"
#define T2 "2026-11-21T10:00:00.000002Z"
#define T3 "2026-11-21T10:00:00.000003Z"
#define T4 "2026-11-21T10:00:00.000004Z"

/* A node image as the change log would carry it (jsonb text: spaces, numbers as
 * PostgreSQL prints them). */
static char *
image(const char *ref, const char *id_, long version, const char *sources, const char *seen,
      const char *health_at)
{
	char *s = NULL;
	ck_assert_int_ge(
	    asprintf(&s,
		     "{\"id\": \"%s\", \"ref\": \"%s\", \"attributes\": {\"n\": 1.50, "
		     "\"big\": 1e3, \"u\": \"\\u00e9\\u001f/\"}, \"sources\": [%s], "
		     "\"version\": %ld, \"health_at\": %s%s%s, \"last_seen_at\": \"%s\"}",
		     id_, ref, sources, version, health_at ? "\"" : "",
		     health_at ? health_at : "null", health_at ? "\"" : "", seen),
	    0);
	return s;
}

static void
put_image(const char *ref, const char *img)
{
	ck_assert_int_eq(graph_node_put_image(g, ref, GRAPH_OK, NULL, img, strlen(img)), 0);
}

/* The view's JSON must be what jansson makes of the image, less last_seen_at. */
static void
expect_view(const char *ref, const char *img, long long version, const char *last_seen)
{
	struct graph_node_view v;
	ck_assert_int_eq(graph_node_view(g, id(ref), &v), 0);
	json_t *j = json_loads(img, 0, NULL);
	ck_assert_ptr_nonnull(j);
	json_object_del(j, "last_seen_at");
	char *want = json_dumps(j, JSON_COMPACT);
	ck_assert_uint_eq(v.len, strlen(want));
	ck_assert_int_eq(memcmp(v.json, want, v.len), 0);
	ck_assert_int_eq(v.version, version);
	ck_assert_str_eq(v.last_seen_at, last_seen);
	free(want);
	json_decref(j);
}

START_TEST(test_node_image_view)
{
	char *img = image("service/a", "id-a", 3, "\"ci\", \"api:bob\"", T2, NULL);
	put_image("service/a", img);
	expect_view("service/a", img, 3, T2); /* parsed on first use */
	expect_view("service/a", img, 3, T2); /* and served as stored */
	struct graph_node_view v;
	ck_assert_ptr_nonnull(strstr(img, "1.50"));
	ck_assert_int_eq(graph_node_view(g, id("service/a"), &v), 0);
	ck_assert_ptr_nonnull(strstr(v.json, "\"n\":1.5,")); /* jansson's number, as before */
	ck_assert_ptr_null(strstr(v.json, "last_seen_at"));

	/* A newer image replaces it; graph_node_put() drops it; edges make bare nodes. */
	char *img2 = image("service/a", "id-a", 4, "\"ci\"", T3, T1);
	put_image("service/a", img2);
	expect_view("service/a", img2, 4, T3);
	ck_assert_int_eq(graph_node_put(g, "service/a", GRAPH_DOWN, NULL), 0);
	ck_assert_int_eq(graph_node_view(g, id("service/a"), &v), GRAPH_ENOENT);
	ck_assert_int_eq(graph_edge_put(g, "service/b", GRAPH_DEPENDS_ON, "service/c"), 0);
	ck_assert_int_eq(graph_node_view(g, id("service/c"), &v), GRAPH_ENOENT);
	ck_assert_int_eq(graph_node_view(g, 9999, &v), GRAPH_EINVAL);

	/* What is not a node image is refused (the caller asks the database). */
	put_image("service/bad", "{\"id\": \"x\"}");
	ck_assert_int_eq(graph_node_view(g, id("service/bad"), &v), GRAPH_EPROTO);
	put_image("service/bad", "[1, 2");
	ck_assert_int_eq(graph_node_view(g, id("service/bad"), &v), GRAPH_EPROTO);
	ck_assert_int_eq(graph_node_remove(g, "service/bad"), 0);
	free(img);
	free(img2);
}
END_TEST

START_TEST(test_last_seen_derived)
{
	char *img = image("service/a", "id-a", 1, "\"ci\", \"deploy:x\"", T2, NULL);
	put_image("service/a", img);
	ck_assert_ptr_null(graph_source_seen_at(g, "ci"));
	/* A sighting of one of its sources, later than the image, wins. */
	ck_assert_int_eq(graph_source_seen(g, "ci", T3), 0);
	expect_view("service/a", img, 1, T3);
	/* An older sighting never lowers it; other sources do not count. */
	ck_assert_int_eq(graph_source_seen(g, "ci", T1), 0);
	ck_assert_str_eq(graph_source_seen_at(g, "ci"), T3);
	ck_assert_int_eq(graph_source_seen(g, "other", T4), 0);
	expect_view("service/a", img, 1, T3);
	ck_assert_int_eq(graph_source_seen(g, "deploy:x", T4), 0);
	expect_view("service/a", img, 1, T4);
	/* Sightings learned before the node arrives count too. */
	char *img2 = image("service/b", "id-b", 1, "\"other\"", T1, NULL);
	put_image("service/b", img2);
	expect_view("service/b", img2, 1, T4);
	/* Malformed times and arguments are refused. */
	ck_assert_int_eq(graph_source_seen(g, "ci", "2026-11-21 10:00:00Z"), GRAPH_EINVAL);
	ck_assert_int_eq(graph_source_seen(g, NULL, T1), GRAPH_EINVAL);
	ck_assert_int_eq(graph_source_seen(NULL, "ci", T1), GRAPH_EINVAL);
	ck_assert_ptr_null(graph_source_seen_at(NULL, "ci"));
	/* Many sources: the table grows and keeps them. */
	char name[32];
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof name, "src%d", i);
		ck_assert_int_eq(graph_source_seen(g, name, i % 2 ? T1 : T2), 0);
	}
	for (int i = 0; i < 500; i++) {
		snprintf(name, sizeof name, "src%d", i);
		ck_assert_str_eq(graph_source_seen_at(g, name), i % 2 ? T1 : T2);
	}
	free(img);
	free(img2);
}
END_TEST

START_TEST(test_node_refresh)
{
	char *img = image("service/a", "id-a", 5, "\"api:bob\"", T2, T1);
	put_image("service/a", img);
	/* A reply about another incarnation of the node changes nothing. */
	ck_assert_int_eq(graph_node_refresh(g, "service/a", "id-old", T4, T4), 0);
	expect_view("service/a", img, 5, T2);
	/* Older times change nothing; later ones win, health_at inside the image. */
	ck_assert_int_eq(graph_node_refresh(g, "service/a", "id-a", T1, NULL), 0);
	expect_view("service/a", img, 5, T2);
	ck_assert_int_eq(graph_node_refresh(g, "service/a", "id-a", T3, T3), 0);
	char *want = image("service/a", "id-a", 5, "\"api:bob\"", T3, T3);
	expect_view("service/a", want, 5, T3);
	ck_assert_int_eq(graph_node_refresh(g, "service/a", "id-a", "junk", T2), 0);
	expect_view("service/a", want, 5, T3);
	/* Missing nodes and nodes without an image are left alone. */
	ck_assert_int_eq(graph_node_refresh(g, "service/none", "id-a", T3, T3), 0);
	ck_assert_int_eq(graph_node_put(g, "service/bare", GRAPH_OK, NULL), 0);
	ck_assert_int_eq(graph_node_refresh(g, "service/bare", "id-a", T3, T3), 0);
	ck_assert_int_eq(graph_node_refresh(g, NULL, "id-a", T3, T3), GRAPH_EINVAL);
	free(img);
	free(want);
}
END_TEST

/* A refresh this process saw survives the image of a change committed before it that
 * the tailer applies only afterwards; a new incarnation of the node drops it. */
START_TEST(test_node_refresh_survives_older_image)
{
	char *img = image("service/a", "id-a", 5, "\"api:bob\"", T1, T1);
	char *v6 = image("service/a", "id-a", 6, "\"api:bob\"", T2, T2);
	char *v6_fresh = image("service/a", "id-a", 6, "\"api:bob\"", T3, T4);
	char *other = image("service/a", "id-b", 1, "\"api:bob\"", T2, T2);

	put_image("service/a", img);
	ck_assert_int_eq(graph_node_refresh(g, "service/a", "id-a", T3, T4), 0);
	put_image("service/a", v6); /* the earlier change, applied late */
	expect_view("service/a", v6_fresh, 6, T3);
	put_image("service/a", v6); /* again, and again before a view normalises it */
	put_image("service/a", v6);
	expect_view("service/a", v6_fresh, 6, T3);
	put_image("service/a", other); /* deleted and created again: another id */
	expect_view("service/a", other, 1, T2);
	free(img);
	free(v6);
	free(v6_fresh);
	free(other);
}
END_TEST

START_TEST(test_edge_put_idx)
{
	load("N service/a ok\nN database/b ok\n");
	ck_assert_int_eq(graph_edge_put_idx(g, id("service/a"), GRAPH_DEPENDS_ON, id("database/b")),
			 0);
	ck_assert_int_eq(graph_edge_put_idx(g, id("service/a"), GRAPH_DEPENDS_ON, id("database/b")),
			 0);
	ck_assert_uint_eq(graph_edge_count(g), 1);
	ck_assert_int_eq(graph_edge_put_idx(g, id("service/a"), GRAPH_DEPENDS_ON, 4242),
			 GRAPH_EINVAL);
	ck_assert_int_eq(graph_edge_put_idx(g, id("service/a"), 99, id("database/b")),
			 GRAPH_EINVAL);
	json_t *r = graph_dependents(g, id("database/b"), UNL, ALL, 10);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "count")), 1);
	json_decref(r);
}
END_TEST

/* ---- History (graph_history.c) ------------------------------------------ */

/* A copy answers as the original, and the two are independent afterwards. */
START_TEST(test_copy)
{
	load("N team/pay ok {\"email\": \"p@x\"}\nN service/a down\nN service/gone ok\n"
	     "E service/a depends_on database/b\nE service/a part_of system/s\n"
	     "E system/s owned_by team/pay\nE service/gone depends_on database/b\n");
	ck_assert_int_eq(graph_node_remove(g, "service/gone"), 0); /* a free slot to copy */
	graph *c = graph_copy(g);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_eq(graph_node_count(c), graph_node_count(g));
	ck_assert_uint_eq(graph_edge_count(c), graph_edge_count(g));
	ck_assert_uint_gt(graph_bytes(c), 0);
	size_t la, lb;
	char *a = graph_walk_text(g, id("database/b"), GRAPH_DIR_DEPENDENTS, UNL, ALL, 100, &la);
	char *b = graph_walk_text(c, graph_find(c, "database/b"), GRAPH_DIR_DEPENDENTS, UNL, ALL,
				  100, &lb);
	ck_assert_str_eq(a, b);
	free(a);
	free(b);
	json_t *oa = graph_owners(g, id("service/a"));
	json_t *ob = graph_owners(c, graph_find(c, "service/a"));
	ck_assert(json_equal(oa, ob));
	json_decref(oa);
	json_decref(ob);
	ck_assert_int_eq(graph_node_health(c, graph_find(c, "service/a")), GRAPH_DOWN);
	/* Independent: a change to the copy (reusing the free slot) leaves g alone. */
	ck_assert_int_eq(graph_edge_put(c, "service/new", GRAPH_DEPENDS_ON, "database/b"), 0);
	ck_assert_int_eq(graph_node_remove(c, "service/a"), 0);
	ck_assert_int_ge(graph_find(g, "service/a"), 0);
	ck_assert_int_lt(graph_find(g, "service/new"), 0);
	ck_assert_uint_eq(graph_edge_count(g), 3);
	json_t *refs = graph_node_edge_refs(g, id("service/a"), true, true, -1);
	/* in adjacency order (part_of first); cmdb_history_images sorts */
	expect_json(refs, "['service/a part_of system/s','service/a depends_on database/b']");
	refs = graph_node_edge_refs(g, id("database/b"), false, true, GRAPH_DEPENDS_ON);
	expect_json(refs, "['service/a depends_on database/b']");
	refs = graph_node_edge_refs(g, id("database/b"), true, false, -1);
	expect_json(refs, "[]");
	errno = 0;
	ck_assert_ptr_null(graph_node_edge_refs(g, 4242, true, true, -1));
	ck_assert_int_eq(errno, EINVAL);
	graph_free(c);
	/* An empty graph copies too. */
	graph *e = graph_new(), *ec = graph_copy(e);
	ck_assert_ptr_nonnull(ec);
	ck_assert_uint_eq(graph_node_count(ec), 0);
	ck_assert_int_eq(graph_node_put(ec, "service/x", GRAPH_OK, NULL), 0);
	graph_free(ec);
	graph_free(e);
}
END_TEST

/* ---- Randomized consistency --------------------------------------------- */

enum { RN = 24 };

/* Naive model: edge[from][type][to]. */
static bool model_edge[RN][GRAPH_EDGE_TYPES][RN];
static bool model_node[RN];

static void
rname(int i, char *buf, size_t n)
{
	static const char *kinds[] = {"service", "host", "system", "team"};
	snprintf(buf, n, "%s/n%02d", kinds[i % 4], i);
}

/* Naive BFS on the model: the number of nodes a dependents walk finds. */
static int
model_dependents(int root)
{
	int depth[RN], q[RN], head = 0, tail = 0, found = 0;
	for (int i = 0; i < RN; i++)
		depth[i] = -1;
	depth[root] = 0;
	q[tail++] = root;
	while (head < tail) {
		int u = q[head++];
		for (int v = 0; v < RN; v++) {
			bool imp =
			    model_edge[v][GRAPH_DEPENDS_ON][u] || model_edge[v][GRAPH_RUNS_ON][u] ||
			    model_edge[v][GRAPH_CONNECTS_TO][u] || model_edge[u][GRAPH_PART_OF][v];
			if (imp && depth[v] < 0) {
				depth[v] = depth[u] + 1;
				q[tail++] = v;
				found++;
			}
		}
	}
	return found;
}

static void
model_check(void)
{
	size_t nodes = 0, edges = 0;
	char ref[32];
	for (int i = 0; i < RN; i++) {
		rname(i, ref, sizeof ref);
		long x = graph_find(g, ref);
		ck_assert_msg((x >= 0) == model_node[i], "node %s presence", ref);
		if (!model_node[i])
			continue;
		nodes++;
		size_t in = 0, out = 0, min = 0, mout = 0;
		for (int t = 0; t < GRAPH_EDGE_TYPES; t++)
			for (int j = 0; j < RN; j++) {
				mout += model_edge[i][t][j];
				min += model_edge[j][t][i];
			}
		edges += mout;
		graph_degree(g, x, &in, &out);
		ck_assert_msg(in == min && out == mout, "%s degree %zu/%zu, model %zu/%zu", ref, in,
			      out, min, mout);
		json_t *r = graph_dependents(g, x, UNL, ALL, 1000);
		ck_assert_int_eq(json_integer_value(json_object_get(r, "count")),
				 model_dependents(i));
		json_decref(r);
		/* The text answers equal the jansson ones, limits and masks included. */
		expect_walk_text_equal(x, GRAPH_DIR_DEPENDENTS, UNL, ALL, 1 + (size_t)i % 5);
		expect_walk_text_equal(
		    x, GRAPH_DIR_DEPENDENCIES, i % 3 ? UNL : 2,
		    i % 2 ? ALL : GRAPH_TYPE_BIT(GRAPH_PART_OF) | GRAPH_TYPE_BIT(GRAPH_DEPENDS_ON),
		    1000);
	}
	ck_assert_uint_eq(graph_node_count(g), nodes);
	ck_assert_uint_eq(graph_edge_count(g), edges);
}

START_TEST(test_random_consistency)
{
	memset(model_edge, 0, sizeof model_edge);
	memset(model_node, 0, sizeof model_node);
	unsigned seed = 12345u + (unsigned)_i;
	char a[32], b[32];
	for (int step = 0; step < 3000; step++) {
		int op = rand_r(&seed) % 10, i = rand_r(&seed) % RN, j = rand_r(&seed) % RN;
		int t = rand_r(&seed) % GRAPH_EDGE_TYPES;
		rname(i, a, sizeof a);
		rname(j, b, sizeof b);
		if (op < 5) {
			ck_assert_int_eq(graph_edge_put(g, a, t, b), 0);
			model_edge[i][t][j] = model_node[i] = model_node[j] = true;
		} else if (op < 8) {
			ck_assert_int_eq(graph_edge_remove(g, a, t, b), 0);
			model_edge[i][t][j] = false;
		} else if (op < 9) {
			ck_assert_int_eq(graph_node_remove(g, a), 0);
			model_node[i] = false;
			for (int k = 0; k < RN; k++)
				for (int tt = 0; tt < GRAPH_EDGE_TYPES; tt++)
					model_edge[i][tt][k] = model_edge[k][tt][i] = false;
		} else {
			ck_assert_int_eq(graph_node_put(g, a, GRAPH_OK, NULL), 0);
			model_node[i] = true;
		}
		if (step % 50 == 0)
			model_check();
	}
	model_check();
}
END_TEST

/* ---- Read sets (graph_reads.c) ------------------------------------------ */

START_TEST(test_read_sets)
{
	load("E service/b depends_on service/a\n"
	     "E service/c depends_on service/b\n"
	     "E service/x depends_on service/y\n"
	     "E service/a part_of system/s\n"
	     "E system/s part_of system/top\n"
	     "E system/top owned_by team/t\n"
	     "E vm/h owned_by team/h\n"
	     "E service/a runs_on vm/h\n");
	uint32_t *r = NULL;
	size_t n = 0;
	/* Truncated or not, the whole walk: a, b, c, s, top (part_of carries impact up). */
	ck_assert_int_eq(
	    graph_reads_walk(g, id("service/a"), GRAPH_DIR_DEPENDENTS, UNL, ALL, &r, &n), 0);
	ck_assert_uint_eq(n, 5);
	for (size_t i = 1; i < n; i++)
		ck_assert_uint_lt(r[i - 1], r[i]);
	free(r);
	ck_assert_int_eq(graph_reads_walk(g, id("service/a"), GRAPH_DIR_BOTH, 1, ALL, &r, &n), 0);
	ck_assert_uint_eq(n, 4); /* a, b, s, vm/h */
	free(r);
	/* owners of vm/h: itself, its owner, what runs on it (a), a's part_of closure and
	 * its owners. */
	ck_assert_int_eq(graph_reads_owners(g, id("vm/h"), &r, &n), 0);
	ck_assert_uint_eq(n, 6); /* vm/h, team/h, service/a, system/s, system/top, team/t */
	free(r);
	ck_assert_int_eq(graph_reads_neighbours(g, id("service/a"), &r, &n), 0);
	ck_assert_uint_eq(n, 3); /* b, s, vm/h */
	free(r);
	ck_assert_int_eq(graph_reads_walk(g, 999, GRAPH_DIR_DEPENDENTS, UNL, ALL, &r, &n),
			 GRAPH_EINVAL);
	ck_assert_int_eq(graph_reads_owners(g, -1, &r, &n), GRAPH_EINVAL);
}
END_TEST

/* The answer of query `kind` (0 dependents, 1 dependencies, 2 owners, 3 subgraph) as
 * text, and its read set. */
static char *
rs_answer(int kind, long root, int depth, unsigned mask, uint32_t **r, size_t *n)
{
	size_t len;
	char *text = NULL;
	int rc = -1;
	switch (kind) {
	case 0:
	case 1: {
		int dir = kind == 0 ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES;
		text = graph_walk_text(g, root, dir, depth, mask, 5, &len);
		rc = graph_reads_walk(g, root, dir, depth, mask, r, n);
		break;
	}
	case 2: {
		json_t *j = graph_owners(g, root);
		text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		rc = graph_reads_owners(g, root, r, n);
		break;
	}
	default: {
		json_t *j = graph_subgraph(g, root, depth, GRAPH_DIR_BOTH);
		text = json_dumps(j, JSON_COMPACT);
		json_decref(j);
		rc = graph_reads_walk(g, root, GRAPH_DIR_BOTH, depth, ALL, r, n);
	}
	}
	ck_assert_ptr_nonnull(text);
	ck_assert_int_eq(rc, 0);
	return text;
}

static bool
rs_has(const uint32_t *r, size_t n, long v)
{
	for (size_t i = 0; i < n; i++)
		if ((long)r[i] == v)
			return true;
	return false;
}

/*
 * The watchers' premise (DESIGN.md "Watching an answer"), on random graphs: a
 * mutation that touches no node of an answer's read set — the node it writes or
 * removes (and a removed node's neighbours), the endpoints of an edge — leaves the
 * answer byte for byte as it was.
 */
START_TEST(test_read_sets_random)
{
	unsigned seed = 977u + (unsigned)_i;
	char ref[64], ref2[64];
	int checked = 0, changed = 0;
	for (int i = 0; i < 120; i++) {
		snprintf(ref, sizeof ref, "service/n%d", rand_r(&seed) % 40);
		snprintf(ref2, sizeof ref2, "service/n%d", rand_r(&seed) % 40);
		ck_assert_int_eq(graph_edge_put(g, ref, rand_r(&seed) % GRAPH_EDGE_TYPES, ref2), 0);
	}
	for (int it = 0; it < 2000; it++) {
		long root = -1;
		while (root < 0) {
			snprintf(ref, sizeof ref, "service/n%d", rand_r(&seed) % 60);
			root = graph_find(g, ref);
		}
		int kind = rand_r(&seed) % 4, depth = rand_r(&seed) % 5 - 1;
		unsigned mask = (unsigned)(rand_r(&seed) % 15 + 1) & ALL;
		if (mask == 0)
			mask = ALL;
		uint32_t *r = NULL;
		size_t n = 0;
		char *before = rs_answer(kind, root, depth, mask, &r, &n);
		/* One random mutation and the nodes it touches. */
		long touched[64];
		size_t nt = 0;
		int op = rand_r(&seed) % 4, type = rand_r(&seed) % GRAPH_EDGE_TYPES;
		snprintf(ref, sizeof ref, "service/n%d", rand_r(&seed) % 60);
		snprintf(ref2, sizeof ref2, "service/n%d", rand_r(&seed) % 60);
		touched[nt++] = graph_find(g, ref);
		touched[nt++] = graph_find(g, ref2);
		if (op == 0) {
			ck_assert_int_eq(graph_edge_put(g, ref, type, ref2), 0);
		} else if (op == 1) {
			ck_assert_int_eq(graph_edge_remove(g, ref, type, ref2), 0);
		} else if (op == 2) {
			nt = 1;
			ck_assert_int_eq(graph_node_put(g, ref, rand_r(&seed) % 4,
							rand_r(&seed) % 2 ? "{\"o\":1}" : NULL),
					 0);
		} else {
			nt = 1;
			uint32_t *nb = NULL;
			size_t nn = 0;
			if (touched[0] >= 0) {
				ck_assert_int_eq(graph_reads_neighbours(g, touched[0], &nb, &nn),
						 0);
				for (size_t k = 0; k < nn && nt < 64; k++)
					touched[nt++] = nb[k];
				if (nn >= 63)
					nt = 0; /* too many to list: treat as touching everything */
				free(nb);
			}
			ck_assert_int_eq(graph_node_remove(g, ref), 0);
		}
		touched[nt < 64 ? nt++ : 0] = graph_find(g, ref); /* as created */
		if (op < 2)
			touched[nt < 64 ? nt++ : 0] = graph_find(g, ref2);
		bool hit = nt == 0;
		for (size_t k = 0; k < nt && !hit; k++)
			hit = touched[k] >= 0 && rs_has(r, n, touched[k]);
		if (!hit) {
			uint32_t *r2 = NULL;
			size_t n2 = 0;
			ck_assert_msg(graph_find(g, graph_node_ref(g, root)) == root,
				      "the root is in its read set");
			char *after = rs_answer(kind, root, depth, mask, &r2, &n2);
			ck_assert_msg(strcmp(before, after) == 0,
				      "kind %d root %ld: an untouched read set, yet\n %s\n %s",
				      kind, root, before, after);
			checked++;
			free(after);
			free(r2);
		} else {
			changed++;
		}
		free(before);
		free(r);
	}
	/* Not vacuous: both branches ran many times. */
	ck_assert_int_gt(checked, 200);
	ck_assert_int_gt(changed, 50);
}
END_TEST

/* Failures come back as codes (graph.h), and errno is never touched. */
START_TEST(test_error_codes_not_errno)
{
	graph *gr = graph_new();
	struct graph_node_view v;

	ck_assert_int_eq(graph_node_put(gr, "service/a", GRAPH_OK, NULL), 0);
	ck_assert_int_eq(graph_node_put(gr, "host/h", GRAPH_OK, NULL), 0);
	errno = 12345;
	ck_assert_int_eq(graph_node_put(gr, "no-slash", GRAPH_OK, NULL), GRAPH_EINVAL);
	ck_assert_int_eq(graph_edge_put(gr, "service/a", 99, "host/h"), GRAPH_EINVAL);
	ck_assert_int_eq(graph_edge_put_idx(gr, 0, GRAPH_RUNS_ON, 4242), GRAPH_EINVAL);
	ck_assert_int_eq(graph_node_view(gr, graph_find(gr, "service/a"), &v), GRAPH_ENOENT);
	ck_assert_ptr_null(graph_path(gr, graph_find(gr, "service/a"), graph_find(gr, "host/h")));
	ck_assert_int_eq(graph_error(gr), GRAPH_ENOENT);
	ck_assert_ptr_null(graph_owners(gr, 4242));
	ck_assert_int_eq(graph_error(gr), GRAPH_EINVAL);
	ck_assert_ptr_null(graph_subgraph_dot(gr, 4242, 1, GRAPH_DIR_BOTH));
	ck_assert_int_eq(graph_error(gr), GRAPH_EINVAL);
	ck_assert_int_eq(errno, 12345);
	ck_assert_int_eq(graph_error(NULL), GRAPH_EINVAL);
	ck_assert_str_eq(graph_strerror(GRAPH_ENOMEM), "out of memory");
	ck_assert_str_eq(graph_strerror(42), "unknown graph error");
	graph_free(gr);
}
END_TEST

Suite *
suite_graph(void)
{
	Suite *s = suite_create("graph");
	struct {
		const char *name;
		const TTest *test;
	} basic[] = {
	    {"names", test_names},
	    {"error_codes_not_errno", test_error_codes_not_errno},
	    {"node_put_update_remove", test_node_put_update_remove},
	    {"edges_and_degrees", test_edges_and_degrees},
	    {"empty_adjacency", test_empty_adjacency},
	    {"remove_readd_recycle", test_remove_readd_recycle},
	    {"hash_churn", test_hash_churn},
	    {"diamond_ties", test_diamond_ties},
	    {"cycle", test_cycle},
	    {"mixed_types_depth_mask", test_mixed_types_depth_mask},
	    {"limit_order_truncated", test_limit_order_truncated},
	    {"limit_big_level", test_limit_big_level},
	    {"query_bad_index", test_query_bad_index},
	    {"owners_rules", test_owners_rules},
	    {"owners_text", test_owners_text},
	    {"owners_runs_on_not_recursive", test_owners_runs_on_not_recursive},
	    {"owners_part_of_cycle_and_attrs", test_owners_part_of_cycle_and_attrs},
	    {"path", test_path},
	    {"rootcause_basic", test_rootcause_basic},
	    {"unhealthy", test_unhealthy},
	    {"rootcause_ranking", test_rootcause_ranking},
	    {"rootcause_failing_chain_and_part_of", test_rootcause_failing_chain_and_part_of},
	    {"rootcause_many_failing", test_rootcause_many_failing},
	    {"subgraph", test_subgraph},
	    {"subgraph_dot", test_subgraph_dot},
	    {"walk_text_escapes", test_walk_text_escapes},
	    {"node_image_view", test_node_image_view},
	    {"last_seen_derived", test_last_seen_derived},
	    {"node_refresh", test_node_refresh},
	    {"node_refresh_survives_older_image", test_node_refresh_survives_older_image},
	    {"edge_put_idx", test_edge_put_idx},
	    {"read_sets", test_read_sets},
	    {"copy", test_copy},
	};
	for (size_t i = 0; i < sizeof basic / sizeof basic[0]; i++) {
		TCase *tc = tcase_create(basic[i].name);
		tcase_add_checked_fixture(tc, setup, teardown);
		tcase_add_test(tc, basic[i].test);
		suite_add_tcase(s, tc);
	}
	TCase *tc = tcase_create("impact_direction");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_impact_direction, 0,
			    (int)(sizeof impact_table / sizeof impact_table[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("read_sets_random");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_read_sets_random, 0, 4);
	suite_add_tcase(s, tc);
	tc = tcase_create("random_consistency");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_loop_test(tc, test_random_consistency, 0, 4);
	suite_add_tcase(s, tc);
	return s;
}
