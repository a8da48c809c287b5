/*
 * graph_reads.c — the read set of a graph answer: the nodes whose state the
 * answer was computed from (see graph.h, "Read sets"). Watchers (watch.c) park
 * on them so that only a change touching one of them re-evaluates the answer.
 *
 * Why the sets below suffice. A query reads, for each node it visits, the node
 * itself (its ref, health, attributes) and its adjacency lists, and follows an
 * entry only to a node it then visits. A change touches the node it writes, both
 * endpoints of an edge it adds or removes, and a removed node's neighbours. If no
 * node of the set is touched, every field and list the query read is as it was,
 * so the query takes the same steps and gives the same answer (DESIGN.md).
 */
#include "graph_impl.h"

#include <stdlib.h>
#include <string.h>

struct reads {
	uint32_t *v;
	size_t n, cap;
};

static int
reads_add(struct reads *r, uint32_t x)
{
	if (r->n == r->cap) {
		size_t ncap = r->cap ? r->cap * 2 : 64;

		if (graph_grow(&r->v, ncap, sizeof *r->v))
			return -1;
		r->cap = ncap;
	}
	r->v[r->n++] = x;
	return 0;
}

/* Appends the nodes the last graph_walk reached (g->queue[0..n)). */
static int
reads_add_queue(graph *g, struct reads *r, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (reads_add(r, g->queue[i]))
			return -1;
	return 0;
}

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* Sorts and deduplicates r into *out / *n (ownership passes), or frees it. */
static int
reads_finish(struct reads *r, int rc, uint32_t **out, size_t *n)
{
	size_t m = 0;

	if (rc != 0) {
		free(r->v);
		return GRAPH_ENOMEM;
	}
	if (r->n > 0)
		qsort(r->v, r->n, sizeof *r->v, cmp_u32);
	for (size_t i = 0; i < r->n; i++)
		if (m == 0 || r->v[m - 1] != r->v[i])
			r->v[m++] = r->v[i];
	*out = r->v;
	*n = m;
	return 0;
}

int
graph_reads_walk(graph *g, long root, int dir, int max_depth, unsigned mask, uint32_t **out,
		 size_t *n)
{
	struct reads r = {0};
	size_t got;
	int rc = 0;

	if (g == NULL || !graph_live(g, root) || (dir & ~GRAPH_DIR_BOTH) != 0 || dir == 0) {
		return GRAPH_EINVAL;
	}
	for (int d = GRAPH_DIR_DEPENDENTS; rc == 0 && d <= GRAPH_DIR_DEPENDENCIES; d <<= 1)
		if ((dir & d) != 0)
			rc = graph_walk(g, (uint32_t)root, d, mask, max_depth, GRAPH_NONE, &got) ||
			     reads_add_queue(g, &r, got);
	return reads_finish(&r, rc, out, n);
}

/*
 * What the owners rules read from x: x, everything up its part_of edges (the
 * whole closure, which covers every level the rule may stop at), and the targets
 * of their owned_by edges (whose attributes an answer shows).
 */
static int
reads_owned(graph *g, struct reads *r, uint32_t x)
{
	size_t got, from = r->n;

	if (graph_walk(g, x, GRAPH_DIR_DEPENDENTS, GRAPH_TYPE_BIT(GRAPH_PART_OF), GRAPH_UNLIMITED,
		       GRAPH_NONE, &got) ||
	    reads_add_queue(g, r, got))
		return -1;
	for (size_t i = from, end = r->n; i < end; i++) {
		const struct graph_adj *a = &g->out[r->v[i]];

		for (uint32_t k = a->npart; k < a->n; k++)
			if (GRAPH_ENT_TYPE(a->e[k]) == GRAPH_OWNED_BY &&
			    reads_add(r, GRAPH_ENT_NODE(a->e[k])))
				return -1;
	}
	return 0;
}

int
graph_reads_owners(graph *g, long node, uint32_t **out, size_t *n)
{
	struct reads r = {0};
	int rc;

	if (g == NULL || !graph_live(g, node)) {
		return GRAPH_EINVAL;
	}
	rc = reads_owned(g, &r, (uint32_t)node);
	/* The runs_on rule: what runs on the node, and what that is owned through.
	 * reads_owned only touches scratch space, so the in-list stays valid. */
	const struct graph_adj *in = &g->in[node];
	for (uint32_t k = in->npart; rc == 0 && k < in->n; k++)
		if (GRAPH_ENT_TYPE(in->e[k]) == GRAPH_RUNS_ON)
			rc = reads_owned(g, &r, GRAPH_ENT_NODE(in->e[k]));
	return reads_finish(&r, rc, out, n);
}

int
graph_reads_neighbours(const graph *g, long node, uint32_t **out, size_t *n)
{
	struct reads r = {0};
	int rc = 0;

	if (g == NULL || !graph_live(g, node)) {
		return GRAPH_EINVAL;
	}
	for (int k = 0; k < 2 && rc == 0; k++) {
		const struct graph_adj *a = k == 0 ? &g->out[node] : &g->in[node];

		for (uint32_t i = 0; i < a->n && rc == 0; i++)
			rc = reads_add(&r, GRAPH_ENT_NODE(a->e[i]));
	}
	return reads_finish(&r, rc, out, n);
}
