/*
 * graph_index.c — the walk index (graph_impl.h, "The walk index"): the
 * adjacency the walks follow, flat, and every node's rank in ref byte order.
 *
 * A build copies the adjacency lists of every node into one array per impact
 * direction (CSR: offsets by node index, then the entries), leaving owned_by out,
 * and sorts the refs. A mutation marks the nodes whose lists it changes stale
 * (graph_index_touch); a walk reads a stale node's live lists instead, so the
 * index never has to be current to be right. graph_visit_begin() rebuilds it
 * once enough nodes are stale that walks would lose much of its benefit.
 *
 * A rebuild keeps the ref order of the last build: the refs of the nodes created
 * since are sorted on their own and merged in (a binary search each), so only
 * the first build sorts every ref.
 */
#include "graph_impl.h"

#include <stdlib.h>
#include <string.h>

void
graph_index_free(struct graph_index *x)
{
	for (int k = 0; k < 2; k++) {
		free(x->off[k]);
		free(x->ent[k]);
	}
	free(x->rank);
	free(x->order);
	*x = (struct graph_index){.policy = x->policy};
}

/*
 * Sorting refs. strcmp through 100k scattered strings costs a cache miss or two
 * per comparison (~100 ms); instead each ref's next CHUNK_WORDS * 8 bytes are
 * read once into integer keys (big-endian, zero after the end: integer order is
 * byte order), the keys sorted, and each run of equal keys sorted again on the
 * bytes that follow. Refs are distinct, so a run of equal keys never ends
 * inside them.
 */
#define CHUNK_WORDS 3

struct chunk {
	uint64_t key[CHUNK_WORDS];
	uint32_t idx;
};

/* Fills c->key from ref's bytes at `at` on (at <= strlen(ref)). */
static void
chunk_at(struct chunk *c, const char *ref, size_t at)
{
	const unsigned char *p = (const unsigned char *)ref + at;
	bool end = false;
	for (int w = 0; w < CHUNK_WORDS; w++) {
		uint64_t k = 0;
		for (int i = 0; i < 8; i++) {
			end = end || *p == '\0';
			k = k << 8 | (end ? 0 : *p++);
		}
		c->key[w] = k;
	}
}

static int
cmp_chunk(const struct chunk *a, const struct chunk *b)
{
	for (int w = 0; w < CHUNK_WORDS; w++)
		if (a->key[w] != b->key[w])
			return a->key[w] < b->key[w] ? -1 : 1;
	return 0;
}

static void
swap_chunk(struct chunk *a, struct chunk *b)
{
	struct chunk t = *a;
	*a = *b;
	*b = t;
}

/* Sorts by key: quicksort with a three-way partition (refs share long
 * prefixes, so keys repeat), insertion sort below 16. */
static void
sort_chunks(struct chunk *v, size_t n)
{
	while (n > 16) {
		struct chunk *a = &v[0], *b = &v[n / 2], *c = &v[n - 1], *m;
		if (cmp_chunk(a, b) < 0)
			m = cmp_chunk(b, c) < 0 ? b : cmp_chunk(a, c) < 0 ? c : a;
		else
			m = cmp_chunk(a, c) < 0 ? a : cmp_chunk(b, c) < 0 ? c : b;
		struct chunk pivot = *m;
		size_t lt = 0, i = 0, gt = n; /* [0,lt) <, [lt,i) ==, [gt,n) > */
		while (i < gt) {
			int r = cmp_chunk(&v[i], &pivot);
			if (r < 0)
				swap_chunk(&v[lt++], &v[i++]);
			else if (r > 0)
				swap_chunk(&v[i], &v[--gt]);
			else
				i++;
		}
		/* Recurse into the smaller side, loop on the larger: O(log n) stack. */
		if (lt < n - gt) {
			sort_chunks(v, lt);
			v += gt;
			n -= gt;
		} else {
			sort_chunks(v + gt, n - gt);
			n = lt;
		}
	}
	for (size_t i = 1; i < n; i++) {
		struct chunk x = v[i];
		size_t j = i;
		for (; j > 0 && cmp_chunk(&v[j - 1], &x) > 0; j--)
			v[j] = v[j - 1];
		v[j] = x;
	}
}

/* Sorts v by the refs' bytes from `at` on (the bytes before are equal). */
static void
sort_refs_from(const graph *g, struct chunk *v, size_t n, size_t at)
{
	for (size_t i = 0; i < n; i++)
		chunk_at(&v[i], g->ref[v[i].idx], at);
	sort_chunks(v, n);
	for (size_t a = 0, b; a < n; a = b) {
		for (b = a + 1; b < n && cmp_chunk(&v[b], &v[a]) == 0; b++)
			;
		if (b - a > 1)
			sort_refs_from(g, v + a, b - a, at + 8 * CHUNK_WORDS);
	}
}

/* Sorts node indexes by ref (byte order); 0 or GRAPH_ENOMEM. */
static int
sort_by_ref(const graph *g, uint32_t *idx, size_t n)
{
	struct chunk *v = malloc((n > 0 ? n : 1) * sizeof *v);
	if (v == NULL)
		return GRAPH_ENOMEM;
	for (size_t i = 0; i < n; i++)
		v[i].idx = idx[i];
	sort_refs_from(g, v, n, 0);
	for (size_t i = 0; i < n; i++)
		idx[i] = v[i].idx;
	free(v);
	return 0;
}

/* First position in order[lo, hi) whose ref is not below `ref`. */
static uint32_t
lower_bound(const graph *g, const uint32_t *order, uint32_t lo, uint32_t hi, const char *ref)
{
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		if (strcmp(g->ref[order[mid]], ref) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/*
 * The live nodes by ref into x->order (x->norder of them): the nodes the old
 * index ranked that are still there (removal clears a rank, so a recycled index
 * is not taken for its old node), in their old order, with the others sorted
 * and merged in. 0 or GRAPH_ENOMEM.
 */
static int
build_order(const graph *g, const struct graph_index *old, struct graph_index *x)
{
	uint32_t *kept = NULL, *fresh = NULL, nkept = 0, nfresh = 0;
	int rc = GRAPH_ENOMEM;

	x->order = malloc((g->nodes > 0 ? g->nodes : 1) * sizeof *x->order);
	fresh = malloc((g->nodes > 0 ? g->nodes : 1) * sizeof *fresh);
	if (x->order == NULL || fresh == NULL)
		goto out;
	for (uint32_t i = 0; i < g->hi; i++)
		if (g->ref[i] != NULL && (i >= old->range || old->rank[i] == GRAPH_NONE))
			fresh[nfresh++] = i;
	if (sort_by_ref(g, fresh, nfresh) != 0)
		goto out;
	if (old->norder > 0) {
		kept = malloc(old->norder * sizeof *kept);
		if (kept == NULL)
			goto out;
		for (uint32_t p = 0; p < old->norder; p++) {
			uint32_t i = old->order[p];
			if (old->rank[i] == p) /* still the node that was ranked p */
				kept[nkept++] = i;
		}
	}
	/* Merge: each fresh ref's place among the kept ones by binary search, so
	 * that a few new nodes cost O(k log n) comparisons, not O(n). */
	uint32_t from = 0, n = 0;
	for (uint32_t j = 0; j < nfresh; j++) {
		uint32_t at = lower_bound(g, kept, from, nkept, g->ref[fresh[j]]);
		if (at > from)
			memcpy(x->order + n, kept + from, (at - from) * sizeof *kept);
		n += at - from;
		from = at;
		x->order[n++] = fresh[j];
	}
	if (nkept > from)
		memcpy(x->order + n, kept + from, (nkept - from) * sizeof *kept);
	n += nkept - from;
	x->norder = n;
	rc = 0;
out:
	free(kept);
	free(fresh);
	return rc;
}

/* Appends the entries of a[b, e) that a walk follows (owned_by never) to ent. */
static uint32_t
copy_steps(uint32_t *ent, uint32_t c, const uint32_t *a, uint32_t b, uint32_t e)
{
	for (uint32_t k = b; k < e; k++)
		if (GRAPH_ENT_TYPE(a[k]) != GRAPH_OWNED_BY)
			ent[c++] = a[k];
	return c;
}

/*
 * Sorts the entries e[0, n) by their neighbour's rank, then by type name (the
 * order graph_parent_better() prefers). Every neighbour is ranked (x is a new
 * build: every live node is). A key is (rank << 3 | type order) << 32 | entry;
 * keys and tmp (n each) are scratch. Small lists by insertion, long ones (a
 * hub's 10k dependents, re-sorted at every rebuild while it is stale) by LSD
 * radix on the key's upper half, a byte a pass, skipping bytes all keys share.
 */
static void
sort_steps(const struct graph_index *x, const int *type_order, uint32_t *e, uint32_t n,
	   uint64_t *keys, uint64_t *tmp)
{
	uint64_t all_or = 0, all_and = ~0ull;
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = ((uint64_t)x->rank[GRAPH_ENT_NODE(e[i])] << 3 |
			   (uint64_t)type_order[GRAPH_ENT_TYPE(e[i])])
			      << 32 |
			  e[i];
		all_or |= keys[i];
		all_and &= keys[i];
	}
	if (n <= 32) {
		for (uint32_t i = 1; i < n; i++) {
			uint64_t k = keys[i];
			uint32_t j = i;
			for (; j > 0 && keys[j - 1] > k; j--)
				keys[j] = keys[j - 1];
			keys[j] = k;
		}
	} else {
		for (int shift = 32; shift < 64; shift += 8) {
			if ((((all_or ^ all_and) >> shift) & 0xff) == 0)
				continue; /* every key has the same byte here */
			uint32_t count[257] = {0};
			for (uint32_t i = 0; i < n; i++)
				count[((keys[i] >> shift) & 0xff) + 1]++;
			for (int b = 0; b < 256; b++)
				count[b + 1] += count[b];
			for (uint32_t i = 0; i < n; i++)
				tmp[count[(keys[i] >> shift) & 0xff]++] = keys[i];
			uint64_t *t = keys;
			keys = tmp;
			tmp = t;
		}
	}
	for (uint32_t i = 0; i < n; i++)
		e[i] = (uint32_t)keys[i];
}

/*
 * Fills x->off and x->ent for the nodes below x->range (after x->rank). Each
 * edge is one entry in each direction: among the dependents of its cause and
 * the dependencies of the node it impacts. A node's entries are sorted by
 * (neighbour's rank, type name), so that the first parent found in them is
 * the one graph_walk_parent() wants. Runs of nodes the old index holds current
 * are copied from it in one piece (their order stays: ranks keep their order;
 * a removed node is stale there; a free slot has no entries), the others from
 * their lists (graph_steps_of()'s two segments per direction), then sorted.
 * 0 or GRAPH_ENOMEM.
 */
static int
build_steps(const graph *g, const struct graph_index *old, struct graph_index *x)
{
	int type_order[GRAPH_EDGE_TYPES];
	for (int t = 0; t < GRAPH_EDGE_TYPES; t++) {
		type_order[t] = 0;
		for (int o = 0; o < GRAPH_EDGE_TYPES; o++)
			type_order[t] +=
			    strcmp(graph_edge_type_name(o), graph_edge_type_name(t)) < 0;
	}
	uint64_t *keys = NULL; /* 2 * keys_cap: keys and radix scratch */
	size_t keys_cap = 0;
	uint32_t c[2] = {0, 0}, u = 0;
	while (u < x->range) {
		if (u < old->range && !(old->off[0][u] & GRAPH_INDEX_STALE)) {
			uint32_t end = u + 1;
			while (end < old->range && !(old->off[0][end] & GRAPH_INDEX_STALE))
				end++;
			for (int k = 0; k < 2; k++) {
				uint32_t b = old->off[k][u],
					 e = old->off[k][end] & ~GRAPH_INDEX_STALE;
				memcpy(x->ent[k] + c[k], old->ent[k] + b,
				       (e - b) * sizeof(uint32_t));
				for (uint32_t w = u; w < end; w++)
					x->off[k][w] = old->off[k][w] - b + c[k];
				c[k] += e - b;
			}
			u = end;
			continue;
		}
		x->off[0][u] = c[0];
		x->off[1][u] = c[1];
		if (g->ref[u] != NULL) {
			const struct graph_adj *out = &g->out[u], *in = &g->in[u];
			size_t most = (size_t)out->n + in->n;
			if (most > keys_cap) {
				free(keys);
				keys_cap = most > 64 ? most : 64;
				if ((keys = malloc(2 * keys_cap * sizeof *keys)) == NULL)
					return GRAPH_ENOMEM;
			}
			c[0] = copy_steps(x->ent[0], c[0], out->e, 0, out->npart);
			c[0] = copy_steps(x->ent[0], c[0], in->e, in->npart, in->n);
			c[1] = copy_steps(x->ent[1], c[1], in->e, 0, in->npart);
			c[1] = copy_steps(x->ent[1], c[1], out->e, out->npart, out->n);
			for (int k = 0; k < 2; k++)
				sort_steps(x, type_order, x->ent[k] + x->off[k][u],
					   c[k] - x->off[k][u], keys, keys + keys_cap);
		}
		u++;
	}
	x->off[0][x->range] = c[0];
	x->off[1][x->range] = c[1];
	free(keys);
	return 0;
}

/* The order and ranks: the old ones when no node was created or removed since
 * (taken from `old`, *taken set), else merged anew. 0 or GRAPH_ENOMEM. */
static int
build_ranks(const graph *g, struct graph_index *old, struct graph_index *x, bool *taken)
{
	*taken = false;
	if (old->range > 0 && old->range == x->range && old->renamed == 0) {
		*taken = true;
		x->order = old->order;
		x->norder = old->norder;
		x->rank = old->rank;
		old->order = old->rank = NULL;
		old->norder = 0;
		return 0;
	}
	if (build_order(g, old, x) != 0)
		return GRAPH_ENOMEM;
	x->rank = malloc((x->range > 0 ? x->range : 1) * sizeof *x->rank);
	if (x->rank == NULL)
		return GRAPH_ENOMEM;
	for (uint32_t i = 0; i < x->range; i++)
		x->rank[i] = GRAPH_NONE;
	for (uint32_t p = 0; p < x->norder; p++)
		x->rank[x->order[p]] = p;
	return 0;
}

int
graph_index_build(graph *g)
{
	struct graph_index *old = &g->index, x = {.policy = old->policy};
	size_t edges = g->edges > 0 ? g->edges : 1;
	bool taken = false;

	x.range = g->hi;
	for (int k = 0; k < 2; k++) {
		x.off[k] = malloc(((size_t)x.range + 1) * sizeof *x.off[k]);
		x.ent[k] = malloc(edges * sizeof *x.ent[k]);
	}
	if (x.off[0] == NULL || x.off[1] == NULL || x.ent[0] == NULL || x.ent[1] == NULL ||
	    build_ranks(g, old, &x, &taken) != 0)
		goto fail;
	if (build_steps(g, old, &x) != 0) {
		if (taken) { /* give the old order and ranks back */
			old->rank = x.rank;
			old->order = x.order;
			old->norder = x.norder;
			x.rank = x.order = NULL;
		}
		goto fail;
	}
	graph_index_free(old);
	*old = x;
	return 0;
fail:
	graph_index_free(&x);
	return GRAPH_ENOMEM;
}

/* A malloc'd copy of a[0, n) (n may be 0); NULL on ENOMEM. */
static uint32_t *
dup_u32(const uint32_t *a, size_t n)
{
	uint32_t *c = malloc((n > 0 ? n : 1) * sizeof *c);
	if (c != NULL && n > 0)
		memcpy(c, a, n * sizeof *c);
	return c;
}

int
graph_index_copy(struct graph_index *dst, const struct graph_index *src)
{
	struct graph_index x = {.policy = src->policy};
	if (src->range == 0) {
		*dst = x;
		return 0;
	}
	x.range = src->range;
	x.norder = src->norder;
	x.dirty = src->dirty;
	x.renamed = src->renamed;
	for (int k = 0; k < 2; k++) {
		x.off[k] = dup_u32(src->off[k], (size_t)src->range + 1);
		x.ent[k] = dup_u32(src->ent[k], src->off[k][src->range]);
	}
	x.rank = dup_u32(src->rank, src->range);
	x.order = dup_u32(src->order, src->norder);
	if (x.off[0] == NULL || x.off[1] == NULL || x.ent[0] == NULL || x.ent[1] == NULL ||
	    x.rank == NULL || x.order == NULL) {
		graph_index_free(&x);
		return GRAPH_ENOMEM;
	}
	*dst = x;
	return 0;
}

void
graph_index_refresh_auto(graph *g)
{
	struct graph_index *x = &g->index;

	switch (x->policy) {
	case GRAPH_INDEX_OFF:
		if (x->range > 0)
			graph_index_free(x);
		return;
	case GRAPH_INDEX_ALWAYS:
		if (x->range == 0 || x->dirty > 0)
			(void)graph_index_build(g);
		return;
	default:
		/* Walks read stale nodes' lists as before: rebuild (O(nodes + edges),
		 * a few ms at 100k nodes) once a sixteenth of the map is stale. */
		if ((x->range == 0 && g->nodes > 0) || x->dirty > 256 + g->nodes / 16)
			(void)graph_index_build(g);
	}
}

int
graph_index_policy(graph *g, int policy)
{
	if (g == NULL || policy < GRAPH_INDEX_AUTO || policy > GRAPH_INDEX_ALWAYS)
		return GRAPH_EINVAL;
	g->index.policy = policy;
	if (policy == GRAPH_INDEX_OFF)
		graph_index_free(&g->index);
	return 0;
}

int
graph_index_refresh(graph *g)
{
	if (g == NULL)
		return GRAPH_EINVAL;
	if (g->index.policy == GRAPH_INDEX_OFF || (g->index.range > 0 && g->index.dirty == 0))
		return 0;
	return graph_index_build(g);
}

size_t
graph_index_bytes(const graph *g)
{
	const struct graph_index *x = &g->index;

	if (x->range == 0)
		return 0;
	return ((size_t)x->range * 3 + 2 + x->norder + (size_t)x->off[0][x->range] +
		x->off[1][x->range]) *
	       sizeof(uint32_t);
}
