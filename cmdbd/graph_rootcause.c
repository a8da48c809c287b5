/*
 * graph_rootcause.c — POST /v1/rootcause on the in-memory graph: which
 * nodes explain a set of failing nodes, which of them are root causes, and a
 * small set that covers every failure.
 *
 * One multi-source, level-synchronous BFS in the "needs" direction carries,
 * per reached node, a bitset of the failing nodes that reach it: a bit first
 * arrives at a node at exactly its distance from that failing node, so the
 * level it arrives on gives both the least depth and the total depth without
 * one walk per failing node. Bitsets live only for reached nodes ("locals"),
 * in word arrays sized ceil(failing / 64).
 */
#include "graph_impl.h"

#include <stdlib.h>
#include <string.h>

#define NO_DEPTH UINT32_MAX

/* Per-call state. Local ids index every array below; g->depth[v] maps a
 * marked node v to its local id during the BFS. */
struct rc {
	graph *g;
	size_t nf, words;	    /* failing count, bitset words */
	const char **fref;	    /* failing refs, sorted: bit i = fref[i] */
	uint32_t *fidx_sorted;	    /* failing indexes, sorted by index (bsearch) */
	size_t n, cap;		    /* locals */
	uint32_t *idx;		    /* graph index */
	uint32_t *mind;		    /* least depth */
	uint64_t *sum;		    /* total depth over explained failing nodes */
	uint32_t *stamp;	    /* level on which it was last queued */
	uint64_t *seen, *cur, *nxt; /* bitsets, `words` each */
	uint32_t *front, *next;	    /* frontier lists (local ids) */
};

static void
rc_free(struct rc *r)
{
	free(r->fref);
	free(r->fidx_sorted);
	free(r->idx);
	free(r->mind);
	free(r->sum);
	free(r->stamp);
	free(r->seen);
	free(r->cur);
	free(r->nxt);
	free(r->front);
	free(r->next);
}

/* Local id of graph node v, creating it (zeroed bitsets) on first reach. */
static int
rc_local(struct rc *r, uint32_t v, uint32_t *lv)
{
	graph *g = r->g;
	if (g->mark[v] == g->epoch) {
		*lv = g->depth[v];
		return 0;
	}
	if (r->n == r->cap) {
		size_t c = r->cap ? r->cap * 2 : 64, w = r->words;
		if (graph_grow(&r->idx, c, sizeof *r->idx) ||
		    graph_grow(&r->mind, c, sizeof *r->mind) ||
		    graph_grow(&r->sum, c, sizeof *r->sum) ||
		    graph_grow(&r->stamp, c, sizeof *r->stamp) ||
		    graph_grow(&r->seen, c * w, sizeof *r->seen) ||
		    graph_grow(&r->cur, c * w, sizeof *r->cur) ||
		    graph_grow(&r->nxt, c * w, sizeof *r->nxt) ||
		    graph_grow(&r->front, c, sizeof *r->front) ||
		    graph_grow(&r->next, c, sizeof *r->next))
			return -1;
		r->cap = c;
	}
	uint32_t l = (uint32_t)r->n++;
	g->mark[v] = g->epoch;
	g->depth[v] = l;
	r->idx[l] = v;
	r->mind[l] = NO_DEPTH;
	r->sum[l] = 0;
	r->stamp[l] = 0;
	memset(r->seen + (size_t)l * r->words, 0, r->words * sizeof *r->seen);
	memset(r->cur + (size_t)l * r->words, 0, r->words * sizeof *r->cur);
	memset(r->nxt + (size_t)l * r->words, 0, r->words * sizeof *r->nxt);
	*lv = l;
	return 0;
}

static uint64_t *
bits(const struct rc *r, uint64_t *base, uint32_t l)
{
	return base + (size_t)l * r->words;
}

static size_t
popcount(const uint64_t *b, size_t words)
{
	size_t c = 0;
	for (size_t w = 0; w < words; w++)
		c += (size_t)__builtin_popcountll(b[w]);
	return c;
}

/* Pushes u's new bits to each node it needs; queues those that gained any. */
static int
rc_expand(struct rc *r, uint32_t lu, uint32_t d, size_t *nnext)
{
	graph *g = r->g;
	struct graph_steps s;
	graph_steps_of(g, r->idx[lu], GRAPH_DIR_DEPENDENCIES, &s);
	for (int k = 0; k < 2; k++)
		for (const uint32_t *p = s.begin[k]; p < s.end[k]; p++) {
			if (!graph_step_follows(GRAPH_IMPACT_MASK, GRAPH_ENT_TYPE(*p)))
				continue;
			uint32_t lv;
			if (rc_local(r, GRAPH_ENT_NODE(*p), &lv))
				return -1;
			/* Pointers after rc_local: it may have moved the arrays. */
			const uint64_t *cu = bits(r, r->cur, lu), *sv = bits(r, r->seen, lv);
			uint64_t *nv = bits(r, r->nxt, lv), any = 0;
			for (size_t w = 0; w < r->words; w++) {
				uint64_t add = cu[w] & ~sv[w];
				nv[w] |= add;
				any |= add;
			}
			if (any && r->stamp[lv] != d) {
				r->stamp[lv] = d;
				r->next[(*nnext)++] = lv;
			}
		}
	return 0;
}

/* The BFS: afterwards seen/mind/sum hold each local's reach. */
static int
rc_spread(struct rc *r, const uint32_t *fidx, int max_depth)
{
	size_t nfront = 0;
	for (size_t i = 0; i < r->nf; i++) {
		uint32_t l;
		if (rc_local(r, fidx[i], &l))
			return -1;
		bits(r, r->seen, l)[i / 64] |= 1ull << (i % 64);
		bits(r, r->cur, l)[i / 64] |= 1ull << (i % 64);
		r->mind[l] = 0;
		r->front[nfront++] = l;
	}
	for (uint32_t d = 1; nfront > 0 && (max_depth < 0 || d <= (uint32_t)max_depth); d++) {
		size_t nnext = 0;
		for (size_t i = 0; i < nfront; i++)
			if (rc_expand(r, r->front[i], d, &nnext))
				return -1;
		for (size_t i = 0; i < nfront; i++)
			memset(bits(r, r->cur, r->front[i]), 0, r->words * sizeof(uint64_t));
		for (size_t i = 0; i < nnext; i++) {
			uint32_t l = r->next[i];
			uint64_t *nv = bits(r, r->nxt, l), *cv = bits(r, r->cur, l),
				 *sv = bits(r, r->seen, l);
			for (size_t w = 0; w < r->words; w++) {
				sv[w] |= nv[w];
				cv[w] = nv[w];
				nv[w] = 0;
			}
			r->sum[l] += (uint64_t)d * popcount(cv, r->words);
			if (r->mind[l] == NO_DEPTH)
				r->mind[l] = d;
		}
		uint32_t *t = r->front;
		r->front = r->next;
		r->next = t;
		nfront = nnext;
	}
	return 0;
}

/* ---- Ranking ------------------------------------------------------------ */

struct cand {
	const char *ref;
	uint32_t local;
	uint32_t explains;
	uint64_t sum;
	bool down;
};

static int
cmp_cand(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;
	if (a->explains != b->explains)
		return a->explains > b->explains ? -1 : 1;
	if (a->down != b->down)
		return a->down ? -1 : 1;
	if (a->sum != b->sum)
		return a->sum < b->sum ? -1 : 1;
	return strcmp(a->ref, b->ref);
}

static int
cmp_u32(const void *pa, const void *pb)
{
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
	return (a > b) - (a < b);
}

static bool
rc_bad(const struct rc *r, uint32_t v)
{
	return r->g->health[v] == GRAPH_DOWN ||
	       bsearch(&v, r->fidx_sorted, r->nf, sizeof v, cmp_u32) != NULL;
}

/* Whether c needs (within max_depth hops) another failing or down node.
 * A plain BFS that stops at the first one: root causes are usually found
 * within a level or two, and clean ones end where their dependencies do.
 * 1 yes, 0 no, -1 ENOMEM. */
static int
rc_needs_bad(struct rc *r, uint32_t c, int max_depth)
{
	graph *g = r->g;
	if (graph_visit_begin(g))
		return -1;
	size_t head = 0, tail = 0;
	g->mark[c] = g->epoch;
	g->queue[tail++] = c;
	for (uint32_t d = 0; head < tail && (max_depth < 0 || d < (uint32_t)max_depth); d++) {
		for (size_t end = tail; head < end; head++) {
			struct graph_steps s;
			graph_steps_of(g, g->queue[head], GRAPH_DIR_DEPENDENCIES, &s);
			for (int k = 0; k < 2; k++)
				for (const uint32_t *p = s.begin[k]; p < s.end[k]; p++) {
					uint32_t v = GRAPH_ENT_NODE(*p);
					if (!graph_step_follows(GRAPH_IMPACT_MASK,
								GRAPH_ENT_TYPE(*p)) ||
					    g->mark[v] == g->epoch)
						continue;
					if (rc_bad(r, v))
						return 1;
					g->mark[v] = g->epoch;
					g->queue[tail++] = v;
				}
		}
	}
	return 0;
}

/* ---- Greedy cover ------------------------------------------------------- */

/* Max-heap entry: an upper bound of a candidate's gain and its rank. */
struct heap_ent {
	uint32_t gain, pos;
};

static bool
heap_lower(struct heap_ent a, struct heap_ent b)
{
	return a.gain < b.gain || (a.gain == b.gain && a.pos > b.pos);
}

static void
heap_down(struct heap_ent *h, size_t n, size_t i)
{
	for (;;) {
		size_t best = i, l = 2 * i + 1, rr = l + 1;
		if (l < n && heap_lower(h[best], h[l]))
			best = l;
		if (rr < n && heap_lower(h[best], h[rr]))
			best = rr;
		if (best == i)
			return;
		struct heap_ent t = h[i];
		h[i] = h[best];
		h[best] = t;
		i = best;
	}
}

/*
 * Greedy set cover, evaluated lazily: gains only shrink as more is covered,
 * so a heap of stale gains is an upper bound; the top is taken when its
 * recomputed gain is unchanged (nothing below can beat it, rank included),
 * else it goes back with the new gain. Appends the chosen refs to `out`.
 */
static int
rc_cover(const struct rc *r, const struct cand *cands, size_t nc, json_t *out)
{
	struct heap_ent *h = malloc((nc ? nc : 1) * sizeof *h);
	uint64_t *covered = calloc(r->words ? r->words : 1, sizeof *covered);
	int rv = -1;
	if (h == NULL || covered == NULL)
		goto out;
	for (size_t i = 0; i < nc; i++)
		h[i] = (struct heap_ent){cands[i].explains, (uint32_t)i};
	for (size_t i = nc / 2; i-- > 0;)
		heap_down(h, nc, i);
	size_t n = nc, left = r->nf;
	while (left > 0 && n > 0) {
		const struct cand *c = &cands[h[0].pos];
		const uint64_t *sv = bits(r, r->seen, c->local);
		uint32_t gain = 0;
		for (size_t w = 0; w < r->words; w++)
			gain += (uint32_t)__builtin_popcountll(sv[w] & ~covered[w]);
		if (gain < h[0].gain) {
			h[0].gain = gain;
			heap_down(h, n, 0);
			continue;
		}
		for (size_t w = 0; w < r->words; w++)
			covered[w] |= sv[w];
		left -= gain;
		if (json_array_append_new(out, json_string(c->ref)))
			goto out;
		h[0] = h[--n];
		heap_down(h, n, 0);
	}
	rv = 0;
out:
	free(h);
	free(covered);
	return rv;
}

/* ---- Output ------------------------------------------------------------- */

static json_t *
cand_json(const struct rc *r, const struct cand *c)
{
	json_t *ex = json_array();
	const uint64_t *sv = bits(r, r->seen, c->local);
	for (size_t w = 0; ex != NULL && w < r->words; w++)
		for (uint64_t x = sv[w]; x != 0; x &= x - 1) {
			size_t i = w * 64 + (size_t)__builtin_ctzll(x);
			if (json_array_append_new(ex, json_string(r->fref[i]))) {
				json_decref(ex);
				ex = NULL;
				break;
			}
		}
	uint32_t v = r->idx[c->local];
	return json_pack("{s:s,s:o,s:s,s:I}", "ref", c->ref, "explains", ex, "health",
			 graph_health_name(r->g->health[v]), "depth",
			 (json_int_t)r->mind[c->local]);
}

/* Sorted, deduplicated failing set: refs (bit order) and indexes. */
static int
rc_failing(struct rc *r, const long *failing, size_t n, uint32_t **fidx)
{
	graph *g = r->g;
	const char **refs = malloc((n ? n : 1) * sizeof *refs);
	if (refs == NULL)
		return -1;
	for (size_t i = 0; i < n; i++)
		refs[i] = g->ref[failing[i]];
	qsort(refs, n, sizeof *refs, graph_cmp_refp);
	size_t m = 0;
	for (size_t i = 0; i < n; i++)
		if (m == 0 || strcmp(refs[m - 1], refs[i]) != 0)
			refs[m++] = refs[i];
	r->fref = refs;
	r->nf = m;
	r->words = (m + 63) / 64;
	*fidx = malloc((m ? m : 1) * sizeof **fidx);
	r->fidx_sorted = malloc((m ? m : 1) * sizeof *r->fidx_sorted);
	if (*fidx == NULL || r->fidx_sorted == NULL)
		return -1;
	for (size_t i = 0; i < m; i++)
		(*fidx)[i] = r->fidx_sorted[i] = (uint32_t)graph_find(g, refs[i]);
	qsort(r->fidx_sorted, m, sizeof *r->fidx_sorted, cmp_u32);
	return 0;
}

json_t *
graph_rootcause(graph *g, const long *failing, size_t n, int max_depth)
{
	if (g == NULL || (n > 0 && failing == NULL)) {
		return graph_fail(g, GRAPH_EINVAL);
	}
	for (size_t i = 0; i < n; i++)
		if (!graph_live(g, failing[i])) {
			return graph_fail(g, GRAPH_EINVAL);
		}
	struct rc r = {.g = g};
	uint32_t *fidx = NULL;
	struct cand *cands = NULL;
	json_t *jc = json_array(), *jroots = json_array(), *jcover = json_array(), *res = NULL;
	if (jc == NULL || jroots == NULL || jcover == NULL || rc_failing(&r, failing, n, &fidx) ||
	    graph_visit_begin(g) || rc_spread(&r, fidx, max_depth))
		goto out;

	cands = malloc((r.n ? r.n : 1) * sizeof *cands);
	if (cands == NULL)
		goto out;
	for (uint32_t l = 0; l < r.n; l++)
		cands[l] = (struct cand){g->ref[r.idx[l]], l,
					 (uint32_t)popcount(bits(&r, r.seen, l), r.words), r.sum[l],
					 g->health[r.idx[l]] == GRAPH_DOWN};
	qsort(cands, r.n, sizeof *cands, cmp_cand);

	for (size_t i = 0; i < r.n; i++) {
		if (json_array_append_new(jc, cand_json(&r, &cands[i])))
			goto out;
		uint32_t l = cands[i].local;
		if (r.mind[l] != 0 && !cands[i].down)
			continue; /* neither failing nor down */
		int bad = rc_needs_bad(&r, r.idx[l], max_depth);
		if (bad < 0 ||
		    (bad == 0 && json_array_append_new(jroots, json_string(cands[i].ref))))
			goto out;
	}
	if (rc_cover(&r, cands, r.n, jcover))
		goto out;
	res = json_pack("{s:O,s:O,s:O}", "candidates", jc, "root_causes", jroots, "minimal_cover",
			jcover);
out:
	json_decref(jc);
	json_decref(jroots);
	json_decref(jcover);
	free(cands);
	free(fidx);
	rc_free(&r);
	if (res == NULL)
		g->err = GRAPH_ENOMEM;
	return res;
}

long
graph_unhealthy(const graph *g, long **out)
{
	long *idx = NULL;
	size_t n = 0, cap = 0;

	*out = NULL;
	for (uint32_t i = 0; i < g->hi; i++) {
		if (g->ref[i] == NULL ||
		    (g->health[i] != GRAPH_DOWN && g->health[i] != GRAPH_DEGRADED))
			continue;
		if (n == cap && graph_grow(&idx, cap = cap ? 2 * cap : 16, sizeof(*idx))) {
			free(idx);
			return GRAPH_ENOMEM;
		}
		idx[n++] = (long)i;
	}
	*out = idx;
	return (long)n;
}
