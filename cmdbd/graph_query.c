/*
 * graph_query.c — the breadth-first walks over the in-memory graph and the
 * queries built on them: dependents, dependencies, owners, path and the
 * subgraph (as JSON; graph_dot.c renders it as Graphviz). Rootcause lives in
 * graph_rootcause.c.
 *
 * Every query returns a new jansson value the caller owns. Scratch space
 * (queue, depths, parents, visit marks) belongs to the graph and is reused;
 * only result-sized buffers are allocated per call.
 */
#include "graph_impl.h"
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- The walk ----------------------------------------------------------- */

bool
graph_parent_better(const graph *g, uint32_t a, int ta, uint32_t b, int tb)
{
	if (a != b)
		return graph_cmp_nodes(g, a, b) < 0;
	return strcmp(graph_edge_type_name(ta), graph_edge_type_name(tb)) < 0;
}

/* Starts a walk: scratch room, and a base above every stamp an earlier walk
 * left (2 per level; on wrap-around every stamp is cleared once). */
static int
walk_begin(graph *g)
{
	if (graph_scratch_reserve(g))
		return -1;
	/* A walk uses at most 2 * (nodes + 1) stamps above its base. */
	if (g->walk_next > UINT32_MAX - 2 * ((uint32_t)g->cap + 2)) {
		memset(g->stamp, 0, (size_t)g->scratch_cap * sizeof *g->stamp);
		g->walk_next = 2;
	}
	g->walk_base = g->walk_next;
	return 0;
}

/*
 * Takes the steps [p, end) from u (depth d, next = the stamp of depth d + 1):
 * a node not reached yet is queued with this step as its via; one reached on
 * depth d + 1 already is contested. Returns the new queue length. `typed`:
 * check each step's type against the mask (not needed for index entries with
 * every impact type wanted: owned_by is not among them). Inlined with a
 * constant `typed`, so the common case has no check in its loop.
 */
static inline size_t
take_steps(graph *g, uint32_t u, const uint32_t *p, const uint32_t *end, bool typed, unsigned mask,
	   uint32_t base, uint32_t next, size_t tail)
{
	uint32_t *stamp = g->stamp, *via = g->via, *queue = g->queue;
	for (; p < end; p++) {
		uint32_t e = *p, v = GRAPH_ENT_NODE(e);
		/* The type first: it is in the entry, the stamp is a random
		 * memory access. */
		if (typed && !graph_step_follows(mask, GRAPH_ENT_TYPE(e)))
			continue;
		uint32_t sv = stamp[v];
		if (sv < base) {
			stamp[v] = next;
			via[v] = GRAPH_ENT(u, GRAPH_ENT_TYPE(e));
			queue[tail++] = v;
		} else if (sv == next) {
			stamp[v] = next | 1; /* a second step */
		}
	}
	return tail;
}

/* How far ahead in the queue the walk asks for a node's offsets, and for its
 * entries: the loads of one node's steps are random, so they are started
 * while earlier nodes are expanded. */
#define AHEAD_OFF 16
#define AHEAD_ENT 8

int
graph_walk(graph *g, uint32_t root, int dir, unsigned mask, int max_depth, uint32_t stop_at,
	   size_t *n)
{
	if (walk_begin(g)) {
		return GRAPH_ENOMEM;
	}
	g->walk_dir = dir;
	g->walk_mask = mask;
	uint32_t *stamp = g->stamp, *queue = g->queue, base = g->walk_base;
	const struct graph_index *x = &g->index;
	const uint32_t *off = x->off[dir == GRAPH_DIR_DEPENDENTS ? 0 : 1];
	const uint32_t *ent = x->ent[dir == GRAPH_DIR_DEPENDENTS ? 0 : 1];
	size_t head = 0, tail = 0;
	stamp[root] = base;
	g->via[root] = GRAPH_NONE;
	queue[tail++] = root;
	g->level[0] = 0;
	/* One level per iteration: every node of a level is expanded before the
	 * next level starts, so when a node is found at depth d, all its
	 * possible parents (depth d-1) are known, and whether it was reached by
	 * one step only (then that step is its via) or contested. */
	uint32_t d = 0;
	for (; head < tail; d++) {
		if (max_depth >= 0 && d >= (uint32_t)max_depth)
			break;
		if (stop_at != GRAPH_NONE && stamp[stop_at] >= base)
			break;
		uint32_t next = base + 2 * (d + 1); /* the stamp of depth d + 1 */
		g->level[d + 1] = (uint32_t)tail;   /* depth d ends (and d + 1 starts) there */
		for (size_t level_end = tail; head < level_end; head++) {
			if (head + AHEAD_OFF < tail && queue[head + AHEAD_OFF] < x->range)
				__builtin_prefetch(&off[queue[head + AHEAD_OFF]]);
			if (head + AHEAD_ENT < tail && queue[head + AHEAD_ENT] < x->range)
				__builtin_prefetch(
				    &ent[off[queue[head + AHEAD_ENT]] & ~GRAPH_INDEX_STALE]);
			uint32_t u = queue[head];
			struct graph_steps s;
			graph_steps_of(g, u, dir, &s);
			if (s.sorted && mask == GRAPH_IMPACT_MASK) {
				tail = take_steps(g, u, s.begin[0], s.end[0], false, mask, base,
						  next, tail);
				continue;
			}
			for (int k = 0; k < 2; k++)
				tail = take_steps(g, u, s.begin[k], s.end[k], true, mask, base,
						  next, tail);
		}
	}
	g->walk_next = base + 2 * (d + 1);
	/* Levels 0..d are in the queue, the last one (d) maybe empty. */
	g->nlevels = tail > g->level[d] ? d + 1 : d;
	g->level[g->nlevels] = (uint32_t)tail;
	*n = tail;
	return 0;
}

uint32_t
graph_walk_parent(graph *g, uint32_t v)
{
	uint32_t sv = g->stamp[v];
	if (sv == g->walk_base || !(sv & 1))
		return g->via[v]; /* the root (GRAPH_NONE), or reached by one step */
	/* Contested: the parents are v's neighbours one level nearer the root,
	 * found by stepping from v in the opposite direction. Only the (few)
	 * nodes a query reports pay for this, not every edge the walk crossed.
	 * From the index, v's entries are in the order of preference: the first
	 * parent found is the one (a hub with 10k dependents is not scanned
	 * whole); from its lists, all are compared. */
	int back =
	    g->walk_dir == GRAPH_DIR_DEPENDENTS ? GRAPH_DIR_DEPENDENCIES : GRAPH_DIR_DEPENDENTS;
	uint32_t want = (sv & ~1u) - 2; /* the stamp of depth - 1, uncontested or not */
	struct graph_steps s;
	graph_steps_of(g, v, back, &s);
	uint32_t best = GRAPH_NONE;
	int best_t = 0;
	for (int k = 0; k < 2; k++)
		for (const uint32_t *p = s.begin[k]; p < s.end[k]; p++) {
			uint32_t u = GRAPH_ENT_NODE(*p);
			int t = GRAPH_ENT_TYPE(*p);
			if (!graph_step_follows(g->walk_mask, t) || (g->stamp[u] & ~1u) != want)
				continue;
			if (best == GRAPH_NONE || graph_parent_better(g, u, t, best, best_t)) {
				best = u;
				best_t = t;
			}
			if (s.sorted)
				goto found;
		}
found:
	g->via[v] = GRAPH_ENT(best, best_t);
	g->stamp[v] = sv & ~1u; /* chosen: the next call answers at once */
	return g->via[v];
}

/* ---- Shared helpers ----------------------------------------------------- */

int
graph_cmp_refp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* {"from","type","to"} of a stored edge. */
static json_t *
edge_json(const graph *g, uint32_t from, int type, uint32_t to)
{
	return json_pack("{s:s,s:s,s:s}", "from", g->ref[from], "type", graph_edge_type_name(type),
			 "to", g->ref[to]);
}

/* The stored edge by which the walk in `dir` reached v from its parent. */
static json_t *
via_json(graph *g, int dir, uint32_t v)
{
	uint32_t e = graph_walk_parent(g, v), p = GRAPH_ENT_NODE(e);
	int t = GRAPH_ENT_TYPE(e);
	return graph_step_from_parent(dir, t) ? edge_json(g, p, t, v) : edge_json(g, v, t, p);
}

/*
 * Ordering a level by ref. A ranked node's key is (rank << 32 | index)
 * (graph_impl.h, "The walk index"): keys compare as integers in their refs'
 * byte order. Nodes without a rank (created since the index was built) are
 * few: they are sorted by strcmp and merged in, each at its place among the
 * ranked ones found by a binary search. Refs are distinct.
 */
static void
swap_key(uint64_t *a, uint64_t *b)
{
	uint64_t t = *a;
	*a = *b;
	*b = t;
}

/* Partitions v[0, n) (n >= 2) around the median of three: returns p with
 * v[0, p) < v[p] < v[p + 1, n). */
static size_t
partition_keys(uint64_t *v, size_t n)
{
	size_t mid = n / 2;
	if (v[mid] < v[0])
		swap_key(&v[mid], &v[0]);
	if (v[n - 1] < v[0])
		swap_key(&v[n - 1], &v[0]);
	if (v[n - 1] < v[mid])
		swap_key(&v[n - 1], &v[mid]);
	swap_key(&v[mid], &v[n - 1]); /* pivot (the median) to the end */
	uint64_t pivot = v[n - 1];
	size_t store = 0;
	for (size_t i = 0; i + 1 < n; i++)
		if (v[i] < pivot)
			swap_key(&v[i], &v[store++]);
	swap_key(&v[store], &v[n - 1]);
	return store;
}

/* Moves the k smallest of v[0, n) to the front, in any order (quickselect).
 * Expected O(n). */
static void
select_smallest(uint64_t *v, size_t n, size_t k)
{
	while (n > 1 && k > 0 && k < n) {
		size_t p = partition_keys(v, n);
		if (k <= p) {
			n = p;
		} else {
			v += p + 1;
			n -= p + 1;
			k -= p + 1;
		}
	}
}

/* Sorts v[0, n): quicksort down to runs of 16, then insertion sort (qsort's
 * comparator call would cost more than the comparisons). */
static void
sort_keys(uint64_t *v, size_t n)
{
	while (n > 16) {
		size_t p = partition_keys(v, n);
		/* Recurse into the smaller side, loop on the larger: O(log n) stack. */
		if (p < n - p - 1) {
			sort_keys(v, p);
			v += p + 1;
			n -= p + 1;
		} else {
			sort_keys(v + p + 1, n - p - 1);
			n = p;
		}
	}
	for (size_t i = 1; i < n; i++) {
		uint64_t x = v[i];
		size_t j = i;
		for (; j > 0 && x < v[j - 1]; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

static int
cmp_idx_ref(const void *a, const void *b, void *g)
{
	char *const *ref = ((const graph *)g)->ref;
	return strcmp(ref[*(const uint32_t *)a], ref[*(const uint32_t *)b]);
}

/*
 * The `take` first by ref of a level: its ranked nodes' keys in keys[0, nr),
 * its unranked nodes in loose[0, nu); into out[0, take).
 */
static void
level_first(const graph *g, uint64_t *keys, size_t nr, uint32_t *loose, size_t nu, size_t take,
	    uint32_t *out)
{
	size_t tr = take < nr ? take : nr; /* no more ranked ones can be among them */
	select_smallest(keys, nr, tr);
	sort_keys(keys, tr);
	if (nu > 0)
		qsort_r(loose, nu, sizeof *loose, cmp_idx_ref, (void *)g);
	size_t i = 0, j = 0, o = 0;
	while (o < take) {
		/* The next loose one goes before the ranked ones below its place. */
		size_t place = tr;
		if (j < nu) {
			size_t lo = i, hi = tr;
			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;
				if (strcmp(g->ref[(uint32_t)keys[mid]], g->ref[loose[j]]) < 0)
					lo = mid + 1;
				else
					hi = mid;
			}
			place = lo;
		}
		while (i < place && o < take)
			out[o++] = (uint32_t)keys[i++];
		if (j < nu && o < take)
			out[o++] = loose[j++];
	}
}

/*
 * The first `limit` nodes found by the last walk (all but the root) in (depth,
 * ref) order, as node indexes, malloc'd (caller frees), count in *nout; NULL on
 * ENOMEM. The queue already holds the levels in order, so only the levels that
 * reach the output are looked at, and of the last one only the part that is
 * returned is sorted: dependents of a hub find 10k nodes but sort only the
 * 1000 they return.
 */
static uint32_t *
walk_sorted(const graph *g, size_t limit, size_t *nout)
{
	size_t found = g->level[g->nlevels] > 1 ? g->level[g->nlevels] - 1 : 1;
	uint32_t *out = malloc((found < limit ? found : limit) * sizeof *out + 1);
	uint64_t *keys = malloc(found * sizeof *keys);
	uint32_t *loose = malloc(found * sizeof *loose);
	size_t got = 0;
	if (out == NULL || keys == NULL || loose == NULL) {
		free(out);
		out = NULL; /* out of memory: the caller records it */
		goto done;
	}
	for (uint32_t d = 1; d < g->nlevels && got < limit; d++) {
		size_t a = g->level[d], b = g->level[d + 1], nr = 0, nu = 0;
		for (size_t i = a; i < b; i++) {
			uint32_t v = g->queue[i], r = graph_rank(g, v);
			if (r != GRAPH_NONE)
				keys[nr++] = (uint64_t)r << 32 | v;
			else
				loose[nu++] = v;
		}
		size_t take = b - a < limit - got ? b - a : limit - got;
		level_first(g, keys, nr, loose, nu, take, out + got);
		got += take;
	}
	*nout = got;
done:
	free(keys);
	free(loose);
	return out;
}

/* dependents / dependencies: see graph.h. */
static json_t *
walk_query(graph *g, long root, int dir, int max_depth, unsigned mask, size_t limit)
{
	if (g == NULL || !graph_live(g, root)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	size_t n, got;
	if (graph_walk(g, (uint32_t)root, dir, mask & GRAPH_IMPACT_MASK, max_depth, GRAPH_NONE, &n))
		return graph_fail(g, GRAPH_ENOMEM);
	uint32_t *sorted = walk_sorted(g, limit, &got);
	if (sorted == NULL)
		return graph_fail(g, GRAPH_ENOMEM);
	json_t *nodes = json_array();
	for (size_t i = 0; nodes != NULL && i < got; i++) {
		uint32_t v = sorted[i];
		json_t *item =
		    json_pack("{s:s,s:I,s:o}", "ref", g->ref[v], "depth",
			      (json_int_t)graph_walk_depth(g, v), "via", via_json(g, dir, v));
		if (json_array_append_new(nodes, item)) {
			json_decref(nodes);
			nodes = NULL;
		}
	}
	free(sorted);
	json_t *res = json_pack("{s:s,s:I,s:b,s:o}", "root", g->ref[root], "count",
				(json_int_t)(n - 1), "truncated", n - 1 > limit, "nodes", nodes);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}

/* ---- The walk answers as text ------------------------------------------- */

char *
graph_walk_text(graph *g, long root, int dir, int max_depth, unsigned type_mask, size_t limit,
		size_t *len)
{
	if (g == NULL || !graph_live(g, root) ||
	    (dir != GRAPH_DIR_DEPENDENTS && dir != GRAPH_DIR_DEPENDENCIES)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	size_t n, got;
	if (graph_walk(g, (uint32_t)root, dir, type_mask & GRAPH_IMPACT_MASK, max_depth, GRAPH_NONE,
		       &n))
		return graph_fail(g, GRAPH_ENOMEM);
	uint32_t *sorted = walk_sorted(g, limit, &got);
	/* Per returned node, in three passes so that the random loads of one pass
	 * do not wait on each other (and the last one can prefetch): its step
	 * (via) and depth; its ref and its parent's; then the text. */
	struct page_node {
		const char *ref, *parent;
		uint32_t step, depth;
	} *page = malloc((got > 0 ? got : 1) * sizeof *page);
	if (sorted == NULL || page == NULL) {
		free(sorted);
		free(page);
		return graph_fail(g, GRAPH_ENOMEM);
	}
	for (size_t i = 0; i < got; i++) {
		page[i].step = graph_walk_parent(g, sorted[i]);
		page[i].depth = graph_walk_depth(g, sorted[i]);
	}
	for (size_t i = 0; i < got; i++) {
		page[i].ref = g->ref[sorted[i]];
		page[i].parent = g->ref[GRAPH_ENT_NODE(page[i].step)];
	}
	/* Refs here are ~20-40 bytes: start big enough for most answers. */
	struct strbuf t = STRBUF_INIT;
	strbuf_grow(&t, 4096 + got * 160);
	strbuf_lit(&t, "{\"root\":");
	strbuf_json_str(&t, g->ref[root]);
	strbuf_lit(&t, ",\"count\":");
	strbuf_uint(&t, n - 1);
	if (n - 1 > limit)
		strbuf_lit(&t, ",\"truncated\":true,\"nodes\":[");
	else
		strbuf_lit(&t, ",\"truncated\":false,\"nodes\":[");
	for (size_t i = 0; i < got && !t.failed; i++) {
		if (i + 4 < got) {
			__builtin_prefetch(page[i + 4].ref);
			__builtin_prefetch(page[i + 4].parent);
		}
		int ty = GRAPH_ENT_TYPE(page[i].step);
		bool from_parent = graph_step_from_parent(dir, ty);
		if (i > 0)
			strbuf_lit(&t, ",");
		strbuf_lit(&t, "{\"ref\":");
		size_t at = t.len; /* the node's ref as JSON: written once, copied once */
		strbuf_json_str(&t, page[i].ref);
		size_t ref_len = t.len - at;
		strbuf_lit(&t, ",\"depth\":");
		strbuf_uint(&t, page[i].depth);
		strbuf_lit(&t, ",\"via\":{\"from\":");
		if (from_parent)
			strbuf_json_str(&t, page[i].parent);
		else
			strbuf_repeat(&t, at, ref_len);
		strbuf_lit(&t, ",\"type\":\"");
		strbuf_puts(&t, graph_edge_type_name(ty)); /* type names need no escape */
		strbuf_lit(&t, "\",\"to\":");
		if (from_parent)
			strbuf_repeat(&t, at, ref_len);
		else
			strbuf_json_str(&t, page[i].parent);
		strbuf_lit(&t, "}}");
	}
	strbuf_lit(&t, "]}");
	free(sorted);
	free(page);
	char *text = strbuf_detach(&t, len);
	if (text == NULL)
		g->err = GRAPH_ENOMEM;
	return text;
}

json_t *
graph_dependents(graph *g, long root, int max_depth, unsigned type_mask, size_t limit)
{
	return walk_query(g, root, GRAPH_DIR_DEPENDENTS, max_depth, type_mask, limit);
}

json_t *
graph_dependencies(graph *g, long root, int max_depth, unsigned type_mask, size_t limit)
{
	return walk_query(g, root, GRAPH_DIR_DEPENDENCIES, max_depth, type_mask, limit);
}

/* ---- Path --------------------------------------------------------------- */

json_t *
graph_path(graph *g, long from, long to)
{
	if (g == NULL || !graph_live(g, from) || !graph_live(g, to)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	size_t n;
	if (graph_walk(g, (uint32_t)from, GRAPH_DIR_DEPENDENCIES, GRAPH_IMPACT_MASK,
		       GRAPH_UNLIMITED, (uint32_t)to, &n))
		return graph_fail(g, GRAPH_ENOMEM);
	if (!graph_walk_reached(g, (uint32_t)to)) {
		return graph_fail(g, GRAPH_ENOENT);
	}
	/* Parents lead back from `to`; collect them, then emit from `from` on. */
	size_t len = graph_walk_depth(g, (uint32_t)to);
	uint32_t *chain = malloc((len + 1) * sizeof *chain);
	json_t *hops = json_array();
	if (chain != NULL && hops != NULL) {
		chain[len] = (uint32_t)to;
		for (size_t k = len; k > 0; k--)
			chain[k - 1] = GRAPH_ENT_NODE(graph_walk_parent(g, chain[k]));
		for (size_t k = 1; k <= len; k++)
			if (json_array_append_new(hops,
						  via_json(g, GRAPH_DIR_DEPENDENCIES, chain[k]))) {
				json_decref(hops);
				hops = NULL;
				break;
			}
	}
	free(chain);
	json_t *res = NULL;
	if (chain != NULL)
		res = json_pack("{s:s,s:s,s:o}", "from", g->ref[from], "to", g->ref[to], "hops",
				hops);
	else
		json_decref(hops);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}

/* ---- Owners ------------------------------------------------------------- */

/* One owner found, with the chain of nodes that explains it. */
struct owner_hit {
	char *const *refs; /* the graph's ref array, for sorting */
	uint32_t owner;
	uint32_t nvia;
	uint32_t *via; /* owned; node ... owner */
	const char *rule;
};

struct owner_hits {
	struct owner_hit *v;
	size_t n, cap;
};

/* Records an owner reached by via = prefix + chain + [owner]. */
static int
hit_push(const graph *g, struct owner_hits *h, const uint32_t *prefix, size_t np,
	 const uint32_t *chain, size_t nc, uint32_t owner, const char *rule)
{
	if (h->n == h->cap) {
		size_t ncap = h->cap ? h->cap * 2 : 8;
		struct owner_hit *nv = realloc(h->v, ncap * sizeof *nv);
		if (nv == NULL)
			return -1;
		h->v = nv;
		h->cap = ncap;
	}
	uint32_t *via = malloc((np + nc + 1) * sizeof *via);
	if (via == NULL)
		return -1;
	if (np > 0)
		memcpy(via, prefix, np * sizeof *via);
	memcpy(via + np, chain, nc * sizeof *via);
	via[np + nc] = owner;
	h->v[h->n++] = (struct owner_hit){g->ref, owner, (uint32_t)(np + nc + 1), via, rule};
	return 0;
}

/* Adds the targets of the owned_by edges of chain[nc-1]; returns how many
 * (or -1 on ENOMEM). */
static long
owners_direct(const graph *g, const uint32_t *prefix, size_t np, const uint32_t *chain, size_t nc,
	      const char *rule, struct owner_hits *h)
{
	const struct graph_adj *a = &g->out[chain[nc - 1]];
	long added = 0;
	for (uint32_t k = a->npart; k < a->n; k++) {
		if (GRAPH_ENT_TYPE(a->e[k]) != GRAPH_OWNED_BY)
			continue;
		if (hit_push(g, h, prefix, np, chain, nc, GRAPH_ENT_NODE(a->e[k]), rule))
			return -1;
		added++;
	}
	return added;
}

/* The part_of rule for x: walk up part_of edges level by level; the direct
 * owners of the nearest level that has any. Returns how many (or -1). */
static long
owners_part_of(graph *g, uint32_t x, const uint32_t *prefix, size_t np, const char *rule,
	       struct owner_hits *h)
{
	size_t n;
	if (graph_walk(g, x, GRAPH_DIR_DEPENDENTS, GRAPH_TYPE_BIT(GRAPH_PART_OF), GRAPH_UNLIMITED,
		       GRAPH_NONE, &n))
		return -1;
	long added = 0;
	uint32_t *chain = NULL;
	for (size_t i = 1; i < n; i++) {
		uint32_t s = g->queue[i];
		if (added > 0 && graph_walk_depth(g, s) != graph_walk_depth(g, g->queue[i - 1]))
			break; /* the previous level had owners */
		size_t nc = graph_walk_depth(g, s) + 1;
		uint32_t *nchain = realloc(chain, nc * sizeof *chain);
		if (nchain == NULL) {
			added = -1;
			break;
		}
		chain = nchain;
		chain[nc - 1] = s;
		for (size_t k = nc - 1; k > 0; k--)
			chain[k - 1] = GRAPH_ENT_NODE(graph_walk_parent(g, chain[k]));
		long r = owners_direct(g, prefix, np, chain, nc, rule, h);
		if (r < 0) {
			added = -1;
			break;
		}
		added += r;
	}
	free(chain);
	return added;
}

/* Direct owners of x, or else its part_of owners. */
static long
owners_direct_or_part_of(graph *g, uint32_t x, const uint32_t *prefix, size_t np,
			 const char *direct_rule, const char *part_of_rule, struct owner_hits *h)
{
	long r = owners_direct(g, prefix, np, &x, 1, direct_rule, h);
	if (r == 0)
		r = owners_part_of(g, x, prefix, np, part_of_rule, h);
	return r;
}

/* Owner ref, then shorter via, then via refs element by element. */
static int
cmp_hit(const void *pa, const void *pb)
{
	const struct owner_hit *a = pa, *b = pb;
	int c = strcmp(a->refs[a->owner], b->refs[b->owner]);
	if (c != 0)
		return c;
	if (a->nvia != b->nvia)
		return a->nvia < b->nvia ? -1 : 1;
	for (uint32_t k = 0; k < a->nvia; k++)
		if (a->via[k] != b->via[k])
			return strcmp(a->refs[a->via[k]], b->refs[b->via[k]]);
	return 0;
}

/*
 * The owner's attributes as the reply writes them: its stored text (as the
 * database printed it) parsed and written back the way jansson's compact dump
 * does, made once per node and kept until its attributes change. "{}" when it
 * has none or its text is not an object; NULL on ENOMEM.
 */
static const char *
owner_attrs_text(graph *g, uint32_t i)
{
	if (g->attrs[i] == NULL)
		return "{}";
	if (g->attrs_out[i] == NULL) {
		json_t *a = json_loads(g->attrs[i], JSON_REJECT_DUPLICATES, NULL);
		g->attrs_out[i] = json_is_object(a) ? json_dumps(a, JSON_COMPACT) : strdup("{}");
		json_decref(a);
	}
	return g->attrs_out[i];
}

/* Sorts the hits and writes them as the owners array, each owner once. */
static void
hits_text(graph *g, struct owner_hits *h, struct strbuf *t)
{
	if (h->n > 0) /* qsort's base must not be NULL, even for no elements */
		qsort(h->v, h->n, sizeof *h->v, cmp_hit);
	strbuf_lit(t, "[");
	for (size_t i = 0, n = 0; i < h->n; i++) {
		const struct owner_hit *hit = &h->v[i];
		const char *attrs;

		if (i > 0 && hit->owner == h->v[i - 1].owner)
			continue; /* the best chain for this owner came first */
		if ((attrs = owner_attrs_text(g, hit->owner)) == NULL) {
			t->failed = true;
			return;
		}
		strbuf_puts(t, n++ > 0 ? ",{\"ref\":" : "{\"ref\":");
		strbuf_json_str(t, g->ref[hit->owner]);
		strbuf_lit(t, ",\"attributes\":");
		strbuf_puts(t, attrs);
		strbuf_lit(t, ",\"rule\":");
		strbuf_json_str(t, hit->rule);
		strbuf_lit(t, ",\"via\":[");
		for (uint32_t k = 0; k < hit->nvia; k++) {
			if (k > 0)
				strbuf_lit(t, ",");
			strbuf_json_str(t, g->ref[hit->via[k]]);
		}
		strbuf_lit(t, "]}");
	}
	strbuf_lit(t, "]");
}

char *
graph_owners_text(graph *g, long node, bool array_only, size_t *len)
{
	if (g == NULL || !graph_live(g, node)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	uint32_t u = (uint32_t)node;
	struct owner_hits h = {0};
	struct strbuf t = STRBUF_INIT;
	char *res = NULL;
	long r = owners_direct(g, NULL, 0, &u, 1, "direct", &h);
	if (r == 0)
		r = owners_part_of(g, u, NULL, 0, "part_of", &h);
	if (r == 0) {
		/* Infrastructure: owners of what runs on it. The walks inside only
		 * touch scratch space, so iterating the in-list stays valid. */
		const struct graph_adj *in = &g->in[u];
		for (uint32_t k = in->npart; r >= 0 && k < in->n; k++)
			if (GRAPH_ENT_TYPE(in->e[k]) == GRAPH_RUNS_ON)
				r = owners_direct_or_part_of(g, GRAPH_ENT_NODE(in->e[k]), &u, 1,
							     "runs_on", "runs_on", &h);
	}
	if (r >= 0) {
		if (!array_only) {
			strbuf_lit(&t, "{\"node\":");
			strbuf_json_str(&t, g->ref[u]);
			strbuf_lit(&t, ",\"owners\":");
		}
		hits_text(g, &h, &t);
		if (!array_only)
			strbuf_lit(&t, "}");
		res = strbuf_detach(&t, len);
	}
	strbuf_release(&t);
	for (size_t i = 0; i < h.n; i++)
		free(h.v[i].via);
	free(h.v);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}

json_t *
graph_owners(graph *g, long node)
{
	size_t len;
	char *text = graph_owners_text(g, node, false, &len);
	json_t *res;

	if (text == NULL)
		return NULL;
	res = json_loadb(text, len, 0, NULL);
	free(text);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}

/* ---- Subgraph ----------------------------------------------------------- */

static int
cmp_sub_node(const void *pa, const void *pb)
{
	const struct graph_sub_node *a = pa, *b = pb;
	if (a->depth != b->depth)
		return a->depth < b->depth ? -1 : 1;
	return strcmp(a->ref, b->ref);
}

static int
cmp_sub_edge(const void *pa, const void *pb)
{
	const struct graph_sub_edge *a = pa, *b = pb;
	int c = strcmp(a->refs[a->from], b->refs[b->from]);
	if (c == 0)
		c = strcmp(graph_edge_type_name(a->type), graph_edge_type_name(b->type));
	if (c == 0)
		c = strcmp(a->refs[a->to], b->refs[b->to]);
	return c;
}

void
graph_sub_release(struct graph_sub *s)
{
	free(s->nodes);
	free(s->edges);
}

/* Appends the walk result (node, depth) pairs in `dir` to s->nodes
 * (unmerged; sub_collect merges). */
static int
sub_walk(graph *g, struct graph_sub *s, int depth, int dir, size_t *cap)
{
	size_t n;
	if (graph_walk(g, s->root, dir, GRAPH_IMPACT_MASK, depth, GRAPH_NONE, &n))
		return -1;
	if (s->n + n > *cap) {
		size_t ncap = s->n + n;
		struct graph_sub_node *nv = realloc(s->nodes, ncap * sizeof *nv);
		if (nv == NULL)
			return -1;
		s->nodes = nv;
		*cap = ncap;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t v = g->queue[i];
		s->nodes[s->n++] = (struct graph_sub_node){g->ref[v], v, graph_walk_depth(g, v)};
	}
	return 0;
}

/* Nodes within `depth` of the root in `direction`, each once at its least
 * depth, and the stored edges among them, both sorted. */
static int
sub_collect(graph *g, uint32_t root, int depth, int direction, struct graph_sub *s)
{
	*s = (struct graph_sub){.root = root};
	size_t cap = 0;
	if (((direction & GRAPH_DIR_DEPENDENTS) &&
	     sub_walk(g, s, depth, GRAPH_DIR_DEPENDENTS, &cap)) ||
	    ((direction & GRAPH_DIR_DEPENDENCIES) &&
	     sub_walk(g, s, depth, GRAPH_DIR_DEPENDENCIES, &cap)) ||
	    graph_visit_begin(g))
		goto fail;
	/* Merge the two walks: marks now mean "in the subgraph", g->depth its
	 * least depth. */
	size_t m = 0;
	for (size_t i = 0; i < s->n; i++) {
		struct graph_sub_node x = s->nodes[i];
		if (g->mark[x.idx] != g->epoch) {
			g->mark[x.idx] = g->epoch;
			g->depth[x.idx] = x.depth;
			s->nodes[m++] = x;
		} else if (x.depth < g->depth[x.idx]) {
			g->depth[x.idx] = x.depth;
		}
	}
	s->n = m;
	size_t ecap = 0;
	for (size_t i = 0; i < s->n; i++) {
		uint32_t u = s->nodes[i].idx;
		s->nodes[i].depth = g->depth[u];
		const struct graph_adj *out = &g->out[u];
		for (uint32_t k = 0; k < out->n; k++) {
			uint32_t v = GRAPH_ENT_NODE(out->e[k]);
			if (g->mark[v] != g->epoch)
				continue;
			if (s->ne == ecap) {
				size_t ncap = ecap ? ecap * 2 : 16;
				struct graph_sub_edge *ne = realloc(s->edges, ncap * sizeof *ne);
				if (ne == NULL)
					goto fail;
				s->edges = ne;
				ecap = ncap;
			}
			s->edges[s->ne++] =
			    (struct graph_sub_edge){u, v, GRAPH_ENT_TYPE(out->e[k]), g->ref};
		}
	}
	qsort(s->nodes, s->n, sizeof *s->nodes, cmp_sub_node);
	if (s->ne > 0)
		qsort(s->edges, s->ne, sizeof *s->edges, cmp_sub_edge);
	return 0;
fail:
	graph_sub_release(s);
	return GRAPH_ENOMEM;
}

int
graph_sub_collect(graph *g, long root, int depth, int direction, struct graph_sub *s)
{
	if (g == NULL || !graph_live(g, root) ||
	    (direction != GRAPH_DIR_DEPENDENTS && direction != GRAPH_DIR_DEPENDENCIES &&
	     direction != GRAPH_DIR_BOTH)) {
		return GRAPH_EINVAL;
	}
	return sub_collect(g, (uint32_t)root, depth, direction, s);
}

static json_t *
sub_node_json(const graph *g, const struct graph_sub_node *x)
{
	const char *slash = strchr(x->ref, '/');
	return json_pack("{s:s,s:s%,s:s,s:I}", "ref", x->ref, "kind", x->ref,
			 (size_t)(slash - x->ref), "health", graph_health_name(g->health[x->idx]),
			 "depth", (json_int_t)x->depth);
}

json_t *
graph_subgraph(graph *g, long root, int depth, int direction)
{
	struct graph_sub s;
	int rc = graph_sub_collect(g, root, depth, direction, &s);
	if (rc != 0)
		return graph_fail(g, rc);
	json_t *nodes = json_array(), *edges = json_array();
	for (size_t i = 0; nodes != NULL && i < s.n; i++)
		if (json_array_append_new(nodes, sub_node_json(g, &s.nodes[i]))) {
			json_decref(nodes);
			nodes = NULL;
		}
	for (size_t i = 0; edges != NULL && i < s.ne; i++)
		if (json_array_append_new(
			edges, edge_json(g, s.edges[i].from, s.edges[i].type, s.edges[i].to))) {
			json_decref(edges);
			edges = NULL;
		}
	graph_sub_release(&s);
	json_t *res =
	    json_pack("{s:s,s:o,s:o}", "root", g->ref[root], "nodes", nodes, "edges", edges);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}
