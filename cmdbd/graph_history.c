/*
 * graph_history.c — what history.c needs of the graph's storage: a copy of the
 * structure (the start of an as-of graph) and a node's stored edges by ref.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "graph_impl.h"

static int
adj_copy(struct graph_adj *dst, const struct graph_adj *src)
{
	*dst = (struct graph_adj){0};
	if (src->n == 0)
		return 0;
	dst->e = malloc((size_t)src->n * sizeof *dst->e);
	if (dst->e == NULL)
		return -1;
	memcpy(dst->e, src->e, (size_t)src->n * sizeof *dst->e);
	dst->n = dst->cap = src->n;
	dst->npart = src->npart;
	return 0;
}

graph *
graph_copy(const graph *src)
{
	graph *g = graph_new();
	uint32_t cap = src->cap;

	if (g == NULL)
		return NULL;
	if (cap > 0 && ((g->ref = calloc(cap, sizeof *g->ref)) == NULL ||
			(g->attrs = calloc(cap, sizeof *g->attrs)) == NULL ||
			(g->attrs_out = calloc(cap, sizeof *g->attrs_out)) == NULL ||
			(g->img = calloc(cap, sizeof *g->img)) == NULL ||
			(g->health = malloc(cap * sizeof *g->health)) == NULL ||
			(g->out = calloc(cap, sizeof *g->out)) == NULL ||
			(g->in = calloc(cap, sizeof *g->in)) == NULL ||
			(g->mark = calloc(cap, sizeof *g->mark)) == NULL ||
			(g->free_idx = malloc(cap * sizeof *g->free_idx)) == NULL))
		goto fail;
	g->cap = cap;
	g->hi = src->hi;
	g->free_cap = cap;
	if (src->nfree > 0)
		memcpy(g->free_idx, src->free_idx, src->nfree * sizeof *g->free_idx);
	g->nfree = src->nfree;
	if (cap > 0)
		memcpy(g->health, src->health, cap * sizeof *g->health);
	for (uint32_t i = 0; i < src->hi; i++) {
		if (src->ref[i] == NULL)
			continue;
		if ((g->ref[i] = strdup(src->ref[i])) == NULL ||
		    (src->attrs[i] != NULL && (g->attrs[i] = strdup(src->attrs[i])) == NULL) ||
		    adj_copy(&g->out[i], &src->out[i]) != 0 ||
		    adj_copy(&g->in[i], &src->in[i]) != 0)
			goto fail;
	}
	if (src->tab_cap > 0) {
		g->tab = malloc(src->tab_cap * sizeof *g->tab);
		if (g->tab == NULL)
			goto fail;
		memcpy(g->tab, src->tab, src->tab_cap * sizeof *g->tab);
		g->tab_cap = src->tab_cap;
	}
	g->nodes = src->nodes;
	g->edges = src->edges;
	/* The index too: its build sorts every ref, a copy is a few memcpy. */
	if (graph_index_copy(&g->index, &src->index) != 0)
		goto fail;
	return g;
fail:
	graph_free(g);
	errno = ENOMEM;
	return NULL;
}

size_t
graph_bytes(const graph *g)
{
	size_t b = sizeof *g +
		   (size_t)g->cap *
		       (sizeof *g->ref + 2 * sizeof *g->attrs + sizeof *g->img + sizeof *g->health +
			2 * sizeof *g->out + sizeof *g->mark + sizeof *g->free_idx) +
		   (size_t)g->tab_cap * sizeof *g->tab;

	for (uint32_t i = 0; i < g->hi; i++) {
		if (g->ref[i] == NULL)
			continue;
		b += strlen(g->ref[i]) + 1 + (g->attrs[i] ? strlen(g->attrs[i]) + 1 : 0) +
		     ((size_t)g->out[i].cap + g->in[i].cap) * sizeof(uint32_t);
	}
	return b + graph_index_bytes(g);
}

static int
append_edge(json_t *a, const graph *g, uint32_t from, int type, uint32_t to)
{
	const char *f = g->ref[from], *t = g->ref[to], *ty = graph_edge_type_name(type);
	size_t n = strlen(f) + strlen(ty) + strlen(t) + 3;
	char *ref = malloc(n);
	int rc;

	if (ref == NULL)
		return -1;
	strcpy(ref, f);
	strcat(ref, " ");
	strcat(ref, ty);
	strcat(ref, " ");
	strcat(ref, t);
	rc = json_array_append_new(a, json_string(ref));
	free(ref);
	return rc;
}

json_t *
graph_node_edge_refs(const graph *g, long node, bool out, bool in, int type)
{
	json_t *a;

	if (!graph_live(g, node)) {
		errno = EINVAL;
		return NULL;
	}
	if ((a = json_array()) == NULL)
		goto oom;
	for (int dir = 0; dir < 2; dir++) {
		const struct graph_adj *adj = dir == 0 ? &g->out[node] : &g->in[node];

		if (!(dir == 0 ? out : in))
			continue;
		for (uint32_t k = 0; k < adj->n; k++) {
			uint32_t nb = GRAPH_ENT_NODE(adj->e[k]);
			int t = GRAPH_ENT_TYPE(adj->e[k]);

			if (type >= 0 && t != type)
				continue;
			if (append_edge(a, g, dir == 0 ? (uint32_t)node : nb, t,
					dir == 0 ? nb : (uint32_t)node) != 0)
				goto oom;
		}
	}
	return a;
oom:
	json_decref(a);
	errno = ENOMEM;
	return NULL;
}
