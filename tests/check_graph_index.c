/*
 * check_graph_index.c — the walks over the walk index (cmdbd/graph_index.c and
 * graph_walk() in graph_query.c): every answer equal, byte for byte, to one
 * computed by definition (SPEC §2) from a naive model, whether the index is off,
 * rebuilt before every walk, or left stale by mutations; the index's own
 * invariants (ranks in ref byte order, every node ranked after a build, a
 * current node's entries equal to its lists, sorted by neighbour's rank); and the edge cases one by
 * one. White-box: includes graph_impl.h.
 */
#include <check.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../cmdbd/graph_impl.h"
#include "../cmdbd/strbuf.h"

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

#define ALL GRAPH_IMPACT_MASK
#define UNL GRAPH_UNLIMITED

static const int policies[] = {GRAPH_INDEX_AUTO, GRAPH_INDEX_OFF, GRAPH_INDEX_ALWAYS};
static const char *const policy_names[] = {"auto", "off", "always"};

/* ---- The model ------------------------------------------------------------ */

/* Refs that sort in every tricky way: prefixes of each other, shared prefixes
 * longer than the index sort's 24-byte chunks, UTF-8 (bytes above 0x7f), and the
 * characters JSON escapes. */
enum { RN = 24 };
static const char *const names[RN] = {
    "service/a",
    "service/a-b",
    "service/ab",
    "service/b",
    "host/x",
    "host/\xc3\xa4",
    "host/Z",
    "system/s",
    "team/t",
    "database/d",
    "service/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1",
    "service/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2",
    "service/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "service/q\"uote",
    "service/back\\slash",
    "queue/k",
    "cache/c",
    "service/ctl\x01x",
    "service/~",
    "lb/l",
    "container/c1",
    "container/c10",
    "container/c2",
    "system/top",
};

static bool model_edge[RN][GRAPH_EDGE_TYPES][RN];
static bool model_node[RN];

/* Whether the walk in `dir` steps from u to v along an edge of type t. */
static bool
model_step(int u, int v, int t, int dir)
{
	if (t == GRAPH_OWNED_BY)
		return false;
	if ((dir == GRAPH_DIR_DEPENDENTS) == (t == GRAPH_PART_OF))
		return model_edge[u][t][v];
	return model_edge[v][t][u];
}

static int
cmp_model(const void *pa, const void *pb, void *depth)
{
	int a = *(const int *)pa, b = *(const int *)pb, *d = depth;
	if (d[a] != d[b])
		return d[a] < d[b] ? -1 : 1;
	return strcmp(names[a], names[b]);
}

/* The answer by definition: BFS depths, each node's parent the smallest ref one
 * level nearer (then the smallest type name), order by depth then ref. */
static char *
model_walk(int root, int dir, int max_depth, unsigned mask, size_t limit)
{
	int depth[RN], parent[RN], ptype[RN], found[RN], n = 0;
	for (int i = 0; i < RN; i++)
		depth[i] = -1;
	depth[root] = 0;
	for (int d = 0; max_depth < 0 || d < max_depth; d++) {
		bool more = false;
		for (int v = 0; v < RN; v++) {
			if (!model_node[v] || depth[v] >= 0)
				continue;
			int best = -1, best_t = 0;
			for (int u = 0; u < RN; u++) {
				if (depth[u] != d)
					continue;
				for (int t = 0; t < GRAPH_EDGE_TYPES; t++) {
					if (!(mask & GRAPH_TYPE_BIT(t)) ||
					    !model_step(u, v, t, dir))
						continue;
					if (best < 0 || strcmp(names[u], names[best]) < 0 ||
					    (u == best &&
					     strcmp(graph_edge_type_name(t),
						    graph_edge_type_name(best_t)) < 0)) {
						best = u;
						best_t = t;
					}
				}
			}
			if (best >= 0) {
				depth[v] = d + 1;
				parent[v] = best;
				ptype[v] = best_t;
				found[n++] = v;
				more = true;
			}
		}
		if (!more)
			break;
	}
	qsort_r(found, (size_t)n, sizeof *found, cmp_model, depth);
	json_t *nodes = json_array();
	for (int i = 0; i < n && (size_t)i < limit; i++) {
		int v = found[i], p = parent[v], t = ptype[v];
		bool from_parent = (dir == GRAPH_DIR_DEPENDENTS) == (t == GRAPH_PART_OF);
		json_t *via = json_pack("{s:s,s:s,s:s}", "from", names[from_parent ? p : v], "type",
					graph_edge_type_name(t), "to", names[from_parent ? v : p]);
		json_array_append_new(nodes, json_pack("{s:s,s:I,s:o}", "ref", names[v], "depth",
						       (json_int_t)depth[v], "via", via));
	}
	json_t *r = json_pack("{s:s,s:I,s:b,s:o}", "root", names[root], "count", (json_int_t)n,
			      "truncated", (size_t)n > limit, "nodes", nodes);
	char *text = json_dumps(r, JSON_COMPACT);
	json_decref(r);
	return text;
}

static void
expect_model_walk(graph *gr, int root, int dir, int depth, unsigned mask, size_t limit)
{
	size_t len;
	char *want = model_walk(root, dir, depth, mask, limit);
	char *got = graph_walk_text(gr, graph_find(gr, names[root]), dir, depth, mask, limit, &len);
	ck_assert_msg(got != NULL && strcmp(got, want) == 0,
		      "%s of %s depth %d mask %x limit %zu (index policy %d)\n got  %s\n want %s",
		      dir == GRAPH_DIR_DEPENDENTS ? "dependents" : "dependencies", names[root],
		      depth, mask, limit, gr->index.policy, got ? got : "NULL", want);
	ck_assert_uint_eq(len, strlen(want));
	free(got);
	free(want);
}

/*
 * The index's invariants: ranked nodes compare by rank as by strcmp; every node
 * the index holds current has exactly its lists' steps (owned_by left out), in
 * each direction; a free slot below the range is stale or has no entries.
 */
static void
check_index(const graph *gr)
{
	const struct graph_index *x = &gr->index;
	if (x->range > 0 && x->dirty == 0) /* just built: every node ranked */
		ck_assert_uint_eq(x->norder, graph_node_count(gr));
	/* The ranked nodes, in rank order, are in strictly increasing ref order. */
	const char *prev = NULL;
	for (uint32_t p = 0; p < x->norder; p++) {
		uint32_t i = x->order[p];
		if (x->rank[i] != p)
			continue; /* removed since the build */
		ck_assert_ptr_nonnull(gr->ref[i]);
		ck_assert_msg(prev == NULL || strcmp(prev, gr->ref[i]) < 0, "%s ranked before %s",
			      prev, gr->ref[i]);
		prev = gr->ref[i];
	}
	for (uint32_t a = 0; a < x->range; a++) {
		if (gr->ref[a] == NULL) {
			ck_assert_uint_eq(x->rank[a], GRAPH_NONE);
			continue;
		}
		if (x->dirty == 0)
			ck_assert_uint_ne(x->rank[a], GRAPH_NONE);
		if (x->rank[a] != GRAPH_NONE)
			ck_assert_uint_eq(x->order[x->rank[a]], a);
		/* graph_cmp_nodes agrees with strcmp, ranked or not (small maps). */
		for (uint32_t b = 0; x->range <= 64 && b < x->range; b++) {
			if (gr->ref[b] == NULL)
				continue;
			int c = strcmp(gr->ref[a], gr->ref[b]), r = graph_cmp_nodes(gr, a, b);
			ck_assert_int_eq((r > 0) - (r < 0), (c > 0) - (c < 0));
		}
		if (x->off[0][a] & GRAPH_INDEX_STALE)
			continue;
		for (int k = 0; k < 2; k++) {
			int dir = k == 0 ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES;
			uint32_t b = x->off[k][a], e = x->off[k][a + 1] & ~GRAPH_INDEX_STALE;
			size_t want = 0;
			/* The lists' steps, owned_by left out: the same count, and each
			 * entry of the index among them. */
			const struct graph_adj *fwd =
			    dir == GRAPH_DIR_DEPENDENTS ? &gr->out[a] : &gr->in[a];
			const struct graph_adj *rev =
			    dir == GRAPH_DIR_DEPENDENTS ? &gr->in[a] : &gr->out[a];
			for (uint32_t i = 0; i < fwd->npart; i++)
				want++;
			for (uint32_t i = rev->npart; i < rev->n; i++)
				want += GRAPH_ENT_TYPE(rev->e[i]) != GRAPH_OWNED_BY;
			ck_assert_uint_eq(e - b, want);
			for (uint32_t i = b; i < e; i++) {
				uint32_t ent = x->ent[k][i];
				/* In the order of preference: neighbour's rank, then
				 * type name. */
				if (i > b) {
					uint32_t before = x->ent[k][i - 1];
					uint32_t rp = x->rank[GRAPH_ENT_NODE(before)],
						 rc = x->rank[GRAPH_ENT_NODE(ent)];
					ck_assert_uint_ne(rc, GRAPH_NONE);
					ck_assert(
					    rp < rc ||
					    (rp == rc &&
					     strcmp(graph_edge_type_name(GRAPH_ENT_TYPE(before)),
						    graph_edge_type_name(GRAPH_ENT_TYPE(ent))) <
						 0));
				}
				const struct graph_adj *in_list =
				    GRAPH_ENT_TYPE(ent) == GRAPH_PART_OF ? fwd : rev;
				bool there = false;
				for (uint32_t j = 0; j < in_list->n; j++)
					there = there || in_list->e[j] == ent;
				ck_assert_msg(there, "entry %u of %s not in its lists", ent,
					      gr->ref[a]);
			}
		}
	}
}

static void
model_check(graph *gr, unsigned *seed)
{
	check_index(gr);
	for (int i = 0; i < RN; i++) {
		if (!model_node[i])
			continue;
		static const unsigned masks[] = {
		    ALL, GRAPH_TYPE_BIT(GRAPH_PART_OF) | GRAPH_TYPE_BIT(GRAPH_DEPENDS_ON),
		    GRAPH_TYPE_BIT(GRAPH_RUNS_ON) | GRAPH_TYPE_BIT(GRAPH_CONNECTS_TO)};
		static const int depths[] = {UNL, 0, 1, 2};
		static const size_t limits[] = {1000, 1, 2, 5};
		for (int dir = GRAPH_DIR_DEPENDENTS; dir <= GRAPH_DIR_DEPENDENCIES; dir++)
			expect_model_walk(gr, i, dir, depths[rand_r(seed) % 4],
					  masks[rand_r(seed) % 3], limits[rand_r(seed) % 4]);
		expect_model_walk(gr, i, GRAPH_DIR_DEPENDENTS, UNL, ALL, 1000);
	}
}

/* Random mutations; after every few, each node's walks against the model, under
 * the policy of the loop index (AUTO also rebuilt now and then by hand, so that
 * rebuilds merge new refs into an order and copy current runs). A copy of the
 * graph (its index copied) answers the same. */
START_TEST(test_walks_match_model)
{
	int policy = policies[_i % 3];
	ck_assert_int_eq(graph_index_policy(g, policy), 0);
	memset(model_edge, 0, sizeof model_edge);
	memset(model_node, 0, sizeof model_node);
	unsigned seed = 777u + (unsigned)_i;
	for (int step = 0; step < 2500; step++) {
		int op = rand_r(&seed) % 20, i = rand_r(&seed) % RN, j = rand_r(&seed) % RN;
		int t = rand_r(&seed) % GRAPH_EDGE_TYPES;
		if (op < 10) {
			ck_assert_int_eq(graph_edge_put(g, names[i], t, names[j]), 0);
			model_edge[i][t][j] = model_node[i] = model_node[j] = true;
		} else if (op < 15) {
			ck_assert_int_eq(graph_edge_remove(g, names[i], t, names[j]), 0);
			model_edge[i][t][j] = false;
		} else if (op < 17) {
			/* Removed and (op 17) put back: its index recycled, maybe for
			 * another ref. */
			ck_assert_int_eq(graph_node_remove(g, names[i]), 0);
			model_node[i] = false;
			for (int k = 0; k < RN; k++)
				for (int tt = 0; tt < GRAPH_EDGE_TYPES; tt++)
					model_edge[i][tt][k] = model_edge[k][tt][i] = false;
		} else if (op < 18) {
			ck_assert_int_eq(graph_node_put(g, names[i], GRAPH_OK, NULL), 0);
			model_node[i] = true;
		} else if (op < 19 && policy == GRAPH_INDEX_AUTO) {
			ck_assert_int_eq(graph_index_refresh(g), 0);
			ck_assert_uint_eq(g->index.dirty, 0);
		}
		if (step % 25 == 0)
			model_check(g, &seed);
		if (step % 500 == 499) {
			graph *c = graph_copy(g);
			ck_assert_ptr_nonnull(c);
			model_check(c, &seed);
			graph_free(c);
		}
	}
	model_check(g, &seed);
	if (policy == GRAPH_INDEX_OFF)
		ck_assert_uint_eq(g->index.range, 0); /* never built */
	else
		ck_assert_uint_gt(g->index.range, 0);
}
END_TEST

/* ---- Edge cases, one by one ------------------------------------------------ */

static void
load(const char *spec)
{
	char *copy = strdup(spec), *save = NULL;
	for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char a[128], b[128], c[128];
		ck_assert_int_eq(sscanf(line, "%127s %127s %127s", a, b, c), 3);
		ck_assert_int_eq(graph_edge_put(g, a, graph_edge_type_parse(b), c), 0);
	}
	free(copy);
}

/* The text of a walk with ' for " in the expectation. */
static void
expect_walk(const char *root, int dir, int depth, unsigned mask, size_t limit, const char *want)
{
	char *w = strdup(want);
	for (char *p = w; *p; p++)
		if (*p == '\'')
			*p = '"';
	size_t len;
	char *got = graph_walk_text(g, graph_find(g, root), dir, depth, mask, limit, &len);
	ck_assert_msg(got != NULL && strcmp(got, w) == 0, "(policy %s)\n got  %s\n want %s",
		      policy_names[g->index.policy], got ? got : "NULL", w);
	free(got);
	free(w);
}

#define DEP GRAPH_DIR_DEPENDENTS
#define NEED GRAPH_DIR_DEPENDENCIES

START_TEST(test_edge_cases)
{
	ck_assert_int_eq(graph_index_policy(g, policies[_i]), 0);
	/* A cycle through the root: the root is never among its own results. */
	load("s/a depends_on s/b\ns/b depends_on s/c\ns/c depends_on s/a\n");
	expect_walk(
	    "s/a", DEP, UNL, ALL, 10,
	    "{'root':'s/a','count':2,'truncated':false,'nodes':["
	    "{'ref':'s/c','depth':1,'via':{'from':'s/c','type':'depends_on','to':'s/a'}},"
	    "{'ref':'s/b','depth':2,'via':{'from':'s/b','type':'depends_on','to':'s/c'}}]}");
	/* Self-loop: reaches nothing new. */
	load("s/a depends_on s/a\n");
	expect_walk(
	    "s/a", NEED, UNL, ALL, 10,
	    "{'root':'s/a','count':2,'truncated':false,'nodes':["
	    "{'ref':'s/b','depth':1,'via':{'from':'s/a','type':'depends_on','to':'s/b'}},"
	    "{'ref':'s/c','depth':2,'via':{'from':'s/b','type':'depends_on','to':'s/c'}}]}");
	/* Depth limit; 0 finds nothing. */
	expect_walk(
	    "s/a", NEED, 1, ALL, 10,
	    "{'root':'s/a','count':1,'truncated':false,'nodes':["
	    "{'ref':'s/b','depth':1,'via':{'from':'s/a','type':'depends_on','to':'s/b'}}]}");
	expect_walk("s/a", NEED, 0, ALL, 10,
		    "{'root':'s/a','count':0,'truncated':false,'nodes':[]}");
	/* A diamond: x/top is reached from x/r first (its edge is older), but
	 * the smallest ref, x/l, is its parent. */
	load("x/r depends_on x/bottom\nx/l depends_on x/bottom\n"
	     "x/top depends_on x/r\nx/top depends_on x/l\n");
	expect_walk(
	    "x/bottom", DEP, UNL, ALL, 10,
	    "{'root':'x/bottom','count':3,'truncated':false,'nodes':["
	    "{'ref':'x/l','depth':1,'via':{'from':'x/l','type':'depends_on','to':'x/bottom'}},"
	    "{'ref':'x/r','depth':1,'via':{'from':'x/r','type':'depends_on','to':'x/bottom'}},"
	    "{'ref':'x/top','depth':2,'via':{'from':'x/top','type':'depends_on','to':'x/l'}}]}");
	expect_walk("x/top", NEED, UNL, ALL, 10,
		    "{'root':'x/top','count':3,'truncated':false,'nodes':["
		    "{'ref':'x/l','depth':1,'via':{'from':'x/top','type':'depends_on','to':'x/l'}},"
		    "{'ref':'x/r','depth':1,'via':{'from':'x/top','type':'depends_on','to':'x/r'}},"
		    "{'ref':'x/bottom','depth':2,'via':{'from':'x/l','type':'depends_on','to':'x/"
		    "bottom'}}]}");
	/* Two edges from one parent (s/e from s/b by depends_on, then connects_to):
	 * the smallest type name. */
	load("s/b depends_on s/d\ns/c depends_on s/d\ns/b depends_on s/e\ns/b connects_to s/e\n");
	expect_walk(
	    "s/a", NEED, UNL, ALL, 10,
	    "{'root':'s/a','count':4,'truncated':false,'nodes':["
	    "{'ref':'s/b','depth':1,'via':{'from':'s/a','type':'depends_on','to':'s/b'}},"
	    "{'ref':'s/c','depth':2,'via':{'from':'s/b','type':'depends_on','to':'s/c'}},"
	    "{'ref':'s/d','depth':2,'via':{'from':'s/b','type':'depends_on','to':'s/d'}},"
	    "{'ref':'s/e','depth':2,'via':{'from':'s/b','type':'connects_to','to':'s/e'}}]}");
	/* Limit 1, and a limit at and above the count. */
	expect_walk(
	    "s/a", NEED, UNL, ALL, 1,
	    "{'root':'s/a','count':4,'truncated':true,'nodes':["
	    "{'ref':'s/b','depth':1,'via':{'from':'s/a','type':'depends_on','to':'s/b'}}]}");
	size_t l4, l5;
	char *a = graph_walk_text(g, graph_find(g, "s/a"), NEED, UNL, ALL, 4, &l4);
	char *b = graph_walk_text(g, graph_find(g, "s/a"), NEED, UNL, ALL, 5, &l5);
	ck_assert_str_eq(a, b);
	ck_assert_ptr_nonnull(strstr(a, "\"truncated\":false"));
	free(a);
	free(b);
	/* A type filter: connects_to only reaches s/e through s/b... which it cannot
	 * reach (s/a -> s/b is depends_on). */
	expect_walk(
	    "s/b", NEED, UNL, GRAPH_TYPE_BIT(GRAPH_CONNECTS_TO), 10,
	    "{'root':'s/b','count':1,'truncated':false,'nodes':["
	    "{'ref':'s/e','depth':1,'via':{'from':'s/b','type':'connects_to','to':'s/e'}}]}");
	expect_walk("s/a", NEED, UNL, GRAPH_TYPE_BIT(GRAPH_CONNECTS_TO), 10,
		    "{'root':'s/a','count':0,'truncated':false,'nodes':[]}");
	/* Edges removed: s/c no longer reaches s/d, s/b keeps it. */
	ck_assert_int_eq(graph_edge_remove(g, "s/c", GRAPH_DEPENDS_ON, "s/d"), 0);
	ck_assert_int_eq(graph_edge_remove(g, "s/b", GRAPH_DEPENDS_ON, "s/e"), 0);
	expect_walk(
	    "s/d", DEP, UNL, ALL, 10,
	    "{'root':'s/d','count':3,'truncated':false,'nodes':["
	    "{'ref':'s/b','depth':1,'via':{'from':'s/b','type':'depends_on','to':'s/d'}},"
	    "{'ref':'s/a','depth':2,'via':{'from':'s/a','type':'depends_on','to':'s/b'}},"
	    "{'ref':'s/c','depth':3,'via':{'from':'s/c','type':'depends_on','to':'s/a'}}]}");
	/* A node removed, its index recycled by a new node whose ref sorts first:
	 * no rank of the old one may stand for it. */
	ck_assert_int_eq(graph_index_refresh(g), 0);
	long old_b = graph_find(g, "s/b");
	ck_assert_int_eq(graph_node_remove(g, "s/b"), 0);
	ck_assert_int_eq(graph_edge_put(g, "a/first", GRAPH_DEPENDS_ON, "s/d"), 0);
	ck_assert_int_eq(graph_find(g, "a/first"), old_b);
	ck_assert_int_eq(graph_edge_put(g, "z/last", GRAPH_DEPENDS_ON, "s/d"), 0);
	expect_walk(
	    "s/d", DEP, UNL, ALL, 10,
	    "{'root':'s/d','count':2,'truncated':false,'nodes':["
	    "{'ref':'a/first','depth':1,'via':{'from':'a/first','type':'depends_on','to':'s/d'}},"
	    "{'ref':'z/last','depth':1,'via':{'from':'z/last','type':'depends_on','to':'s/d'}}]}");
	/* Re-added under its old ref: reached again. */
	ck_assert_int_eq(graph_edge_put(g, "s/b", GRAPH_DEPENDS_ON, "s/d"), 0);
	ck_assert_int_eq(graph_index_refresh(g), 0);
	expect_walk(
	    "s/d", DEP, 1, ALL, 2,
	    "{'root':'s/d','count':3,'truncated':true,'nodes':["
	    "{'ref':'a/first','depth':1,'via':{'from':'a/first','type':'depends_on','to':'s/d'}},"
	    "{'ref':'s/b','depth':1,'via':{'from':'s/b','type':'depends_on','to':'s/d'}}]}");
	/* part_of carries impact up (component -> system), owned_by never. */
	load("s/d part_of sys/x\nsys/x owned_by team/t\n");
	expect_walk(
	    "s/d", DEP, UNL, GRAPH_TYPE_BIT(GRAPH_PART_OF), 10,
	    "{'root':'s/d','count':1,'truncated':false,'nodes':["
	    "{'ref':'sys/x','depth':1,'via':{'from':'s/d','type':'part_of','to':'sys/x'}}]}");
	expect_walk("sys/x", NEED, UNL, ALL, 1,
		    "{'root':'sys/x','count':1,'truncated':false,'nodes':["
		    "{'ref':'s/d','depth':1,'via':{'from':'s/d','type':'part_of','to':'sys/x'}}]}");
	check_index(g);
}
END_TEST

/* Sorting many refs (the index build's chunked sort): ranks follow strcmp for
 * refs that differ only past 24 and 48 bytes, prefixes of each other, and bytes
 * above 0x7f; and a big level is returned in ref order. */
START_TEST(test_rank_order)
{
	char ref[128];
	unsigned seed = 99;
	static const char *const stems[] = {
	    "container/", "container/svc-", "c/\xc3\xa4",
	    "c/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
	for (int i = 0; i < 3000; i++) {
		snprintf(ref, sizeof ref, "%s%u", stems[rand_r(&seed) % 4], rand_r(&seed) % 5000);
		ck_assert_int_eq(graph_edge_put(g, ref, GRAPH_RUNS_ON, "host/h"), 0);
	}
	ck_assert_int_eq(graph_index_refresh(g), 0);
	check_index(g);
	/* Some removed, more created: merged into the order at the next build. */
	for (int i = 0; i < 500; i++) {
		snprintf(ref, sizeof ref, "%s%u", stems[rand_r(&seed) % 4], rand_r(&seed) % 5000);
		if (i % 2)
			ck_assert_int_eq(graph_node_remove(g, ref), 0);
		else
			ck_assert_int_eq(graph_edge_put(g, ref, GRAPH_RUNS_ON, "host/h"), 0);
	}
	ck_assert_int_eq(graph_index_refresh(g), 0);
	check_index(g);
	size_t len;
	char *text = graph_walk_text(g, graph_find(g, "host/h"), DEP, UNL, ALL, 100000, &len);
	ck_assert_ptr_nonnull(text);
	/* The refs in the reply are in strictly increasing byte order. */
	char prev[128] = "";
	size_t seen = 0;
	for (const char *p = text; (p = strstr(p, "{\"ref\":\"")) != NULL; seen++) {
		p += 8;
		size_t n = strcspn(p, "\"");
		char cur[128];
		ck_assert_uint_lt(n, sizeof cur);
		memcpy(cur, p, n);
		cur[n] = '\0';
		ck_assert_msg(strcmp(prev, cur) < 0, "%s before %s", prev, cur);
		strcpy(prev, cur);
	}
	ck_assert_uint_eq(seen + 1, graph_node_count(g));
	free(text);
}
END_TEST

/* The policy API, and that AUTO rebuilds once enough nodes are stale. */
START_TEST(test_policy)
{
	ck_assert_int_eq(graph_index_policy(g, 7), GRAPH_EINVAL);
	ck_assert_int_eq(graph_index_policy(NULL, GRAPH_INDEX_OFF), GRAPH_EINVAL);
	ck_assert_int_eq(graph_index_refresh(NULL), GRAPH_EINVAL);
	ck_assert_int_eq(graph_index_refresh(g), 0); /* an empty graph */
	char a[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(a, sizeof a, "service/s%04d", i);
		ck_assert_int_eq(graph_edge_put(g, a, GRAPH_DEPENDS_ON, "database/d"), 0);
	}
	ck_assert_uint_eq(g->index.range, 0);
	size_t len;
	long d = graph_find(g, "database/d");
	free(graph_walk_text(g, d, DEP, UNL, ALL, 10, &len)); /* the first walk builds */
	ck_assert_uint_gt(g->index.range, 0);
	ck_assert_uint_eq(g->index.dirty, 0);
	/* Below the threshold (256 + nodes / 16) walks read stale nodes' lists. */
	for (int i = 0; i < 200; i++) {
		snprintf(a, sizeof a, "service/s%04d", i);
		ck_assert_int_eq(graph_edge_put(g, a, GRAPH_CONNECTS_TO, "database/d"), 0);
	}
	free(graph_walk_text(g, d, DEP, UNL, ALL, 10, &len));
	ck_assert_uint_eq(g->index.dirty, 201); /* 200 services and the database */
	/* owned_by is not in the index: its changes leave it current. */
	ck_assert_int_eq(graph_edge_put(g, "service/s1999", GRAPH_OWNED_BY, "team/t"), 0);
	ck_assert_uint_eq(g->index.dirty, 202); /* only the new node team/t */
	for (int i = 200; i < 600; i++) {
		snprintf(a, sizeof a, "service/s%04d", i);
		ck_assert_int_eq(graph_edge_remove(g, a, GRAPH_DEPENDS_ON, "database/d"), 0);
	}
	free(graph_walk_text(g, d, DEP, UNL, ALL, 10, &len)); /* over it: rebuilt */
	ck_assert_uint_eq(g->index.dirty, 0);
	ck_assert_int_eq(graph_index_policy(g, GRAPH_INDEX_OFF), 0);
	ck_assert_uint_eq(g->index.range, 0);
	ck_assert_int_eq(graph_index_refresh(g), 0);
	ck_assert_uint_eq(g->index.range, 0);
}
END_TEST

/* The reply's strings (strbuf_json_str: eight bytes at a time when nothing needs
 * an escape) exactly as jansson writes them, whatever the position of the bytes
 * that need one. */
START_TEST(test_json_str_as_jansson)
{
	static const char alphabet[] = "ab/-_.~0\"\\\x01\x1f\t\n\x7f ";
	unsigned seed = 5;
	char in[64];
	for (int round = 0; round < 20000; round++) {
		size_t n = (size_t)rand_r(&seed) % 40, k = 0;
		bool special = rand_r(&seed) % 2;
		while (k < n) {
			int c = rand_r(&seed) % 40;
			if (c == 0 && k + 2 <= n) { /* a two-byte UTF-8 character */
				in[k++] = '\xc3';
				in[k++] = '\xa9';
			} else {
				/* Plain letters mostly, specials in half of the strings. */
				in[k++] = special ? alphabet[(size_t)c % (sizeof alphabet - 1)]
						  : alphabet[(size_t)c % 8];
			}
		}
		in[k] = '\0';
		json_t *j = json_string(in);
		ck_assert_ptr_nonnull(j);
		char *want = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
		struct strbuf b = STRBUF_INIT;
		strbuf_lit(&b, "x");
		strbuf_json_str(&b, in);
		ck_assert_msg(strcmp(b.s + 1, want) == 0, "got %s want %s", b.s + 1, want);
		ck_assert_uint_eq(b.len, strlen(want) + 1);
		strbuf_release(&b);
		free(want);
		json_decref(j);
	}
}
END_TEST

Suite *
suite_graph_index(void)
{
	Suite *s = suite_create("graph_index");
	TCase *tc = tcase_create("walks_match_model");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_walks_match_model, 0, 6);
	suite_add_tcase(s, tc);
	tc = tcase_create("edge_cases");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_edge_cases, 0, 3);
	suite_add_tcase(s, tc);
	tc = tcase_create("rank_order");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_rank_order);
	suite_add_tcase(s, tc);
	tc = tcase_create("json_str_as_jansson");
	tcase_add_test(tc, test_json_str_as_jansson);
	suite_add_tcase(s, tc);
	tc = tcase_create("policy");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_policy);
	suite_add_tcase(s, tc);
	return s;
}
