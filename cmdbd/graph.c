/*
 * graph.c — storage of the in-memory graph: the ref -> index hash table,
 * per-node arrays, adjacency lists and the mutations that keep them
 * consistent. The queries live in graph_query.c and graph_rootcause.c.
 */
#include "graph_impl.h"

#include <stdlib.h>
#include <string.h>

/* ---- Names -------------------------------------------------------------- */

int
graph_edge_type_parse(const char *s)
{
	return model_edge_type_index(s);
}

const char *
graph_edge_type_name(int t)
{
	return model_edge_type_name(t);
}

int
graph_health_parse(const char *s)
{
	return model_health_index(s);
}

const char *
graph_health_name(int h)
{
	return model_health_name(h);
}

int
graph_direction_parse(const char *s)
{
	if (s == NULL)
		return -1;
	if (strcmp(s, "dependents") == 0)
		return GRAPH_DIR_DEPENDENTS;
	if (strcmp(s, "dependencies") == 0)
		return GRAPH_DIR_DEPENDENCIES;
	if (strcmp(s, "both") == 0)
		return GRAPH_DIR_BOTH;
	return -1;
}

int
graph_impact_mask_parse(const char *csv, unsigned *mask)
{
	if (csv == NULL) {
		*mask = GRAPH_IMPACT_MASK;
		return 0;
	}
	unsigned m = 0;
	const char *p = csv;
	for (;;) {
		size_t len = strcspn(p, ",");
		int found = -1;
		for (int t = 0; t < GRAPH_EDGE_TYPES; t++)
			if ((GRAPH_IMPACT_MASK & GRAPH_TYPE_BIT(t)) &&
			    strlen(model_edge_types[t]) == len &&
			    memcmp(model_edge_types[t], p, len) == 0)
				found = t;
		if (found < 0)
			return -1;
		m |= GRAPH_TYPE_BIT(found);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	*mask = m;
	return 0;
}

/* ---- Hash table --------------------------------------------------------- */

/* FNV-1a with a final avalanche (murmur3 fmix): cheap and spreads the
 * similar refs a CMDB is full of ("host/web-01", "host/web-02") well. */
uint32_t
graph_hash_str(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 0x100000001b3ull;
	}
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return (uint32_t)(h >> 32);
}

/* Slot holding `ref`, or the empty slot where it would go. */
static uint32_t
tab_probe(const graph *g, const char *ref, uint32_t h)
{
	uint32_t mask = g->tab_cap - 1;
	for (uint32_t i = h & mask;; i = (i + 1) & mask) {
		const struct graph_slot *s = &g->tab[i];
		if (s->idx1 == 0)
			return i;
		if (s->hash == h && strcmp(g->ref[s->idx1 - 1], ref) == 0)
			return i;
	}
}

/* Makes room for one more key (load factor <= 0.7). */
static int
tab_reserve(graph *g)
{
	if ((g->nodes + 1) * 10 <= (size_t)g->tab_cap * 7)
		return 0;
	uint32_t ncap = g->tab_cap ? g->tab_cap * 2 : 64;
	struct graph_slot *nt = calloc(ncap, sizeof *nt);
	if (nt == NULL)
		return -1;
	for (uint32_t i = 0; i < g->tab_cap; i++) {
		struct graph_slot s = g->tab[i];
		if (s.idx1 == 0)
			continue;
		uint32_t j = s.hash & (ncap - 1);
		while (nt[j].idx1 != 0)
			j = (j + 1) & (ncap - 1);
		nt[j] = s;
	}
	free(g->tab);
	g->tab = nt;
	g->tab_cap = ncap;
	return 0;
}

/* Deletes slot i, shifting later members of its probe run back so that no
 * tombstones are needed (lookups stay O(1) under heavy churn). */
static void
tab_delete(graph *g, uint32_t i)
{
	uint32_t mask = g->tab_cap - 1;
	for (uint32_t j = i;;) {
		j = (j + 1) & mask;
		if (g->tab[j].idx1 == 0)
			break;
		uint32_t k = g->tab[j].hash & mask;
		/* Slot j may stay if its home k lies cyclically in (i, j]. */
		bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
		if (stays)
			continue;
		g->tab[i] = g->tab[j];
		i = j;
	}
	g->tab[i].idx1 = 0;
}

long
graph_find(const graph *g, const char *ref)
{
	if (g == NULL || ref == NULL || g->tab_cap == 0)
		return -1;
	const struct graph_slot *s = &g->tab[tab_probe(g, ref, graph_hash_str(ref))];
	return s->idx1 ? (long)s->idx1 - 1 : -1;
}

/* ---- Lifecycle and capacity --------------------------------------------- */

graph *
graph_new(void)
{
	graph *g = calloc(1, sizeof *g);
	if (g == NULL)
		return NULL;
	g->epoch = 1;
	g->walk_next = 2; /* stamps start at 0: below every walk's base */
	return g;
}

void
graph_free(graph *g)
{
	if (g == NULL)
		return;
	for (uint32_t i = 0; i < g->hi; i++) {
		free(g->ref[i]);
		free(g->attrs[i]);
		free(g->attrs_out[i]);
		graph_image_free(g->img[i]);
		free(g->out[i].e);
		free(g->in[i].e);
	}
	free(g->ref);
	free(g->attrs);
	free(g->attrs_out);
	free(g->img);
	graph_sources_free(g);
	free(g->health);
	free(g->out);
	free(g->in);
	free(g->mark);
	free(g->free_idx);
	free(g->tab);
	free(g->queue);
	free(g->depth);
	free(g->stamp);
	free(g->via);
	free(g->level);
	graph_index_free(&g->index);
	free(g);
}

int
graph_error(const graph *g)
{
	return g != NULL ? g->err : GRAPH_EINVAL;
}

const char *
graph_strerror(int err)
{
	switch (err) {
	case GRAPH_NOERR:
		return "no error";
	case GRAPH_ENOMEM:
		return "out of memory";
	case GRAPH_EINVAL:
		return "not a live node, or a bad argument";
	case GRAPH_ENOENT:
		return "not found";
	case GRAPH_EPROTO:
		return "a stored node image could not be read";
	}
	return "unknown graph error";
}

int
graph_grow(void *pp, size_t n, size_t size)
{
	void **p = pp;
	void *np;

	if (size != 0 && n > SIZE_MAX / size)
		return GRAPH_ENOMEM;
	np = realloc(*p, n * size);
	if (np == NULL)
		return GRAPH_ENOMEM;
	*p = np;
	return 0;
}

/* Grows every per-node array to hold index `hi` (i.e. hi + 1 nodes). Arrays
 * grown before a failure simply keep their larger size; `cap` is only raised
 * once all of them succeeded. */
static int
nodes_reserve(graph *g)
{
	if (g->hi < g->cap)
		return 0;
	if (g->cap >= GRAPH_MAX_NODES)
		return -1;
	uint32_t ncap = g->cap ? g->cap * 2 : 64;
	if (ncap > GRAPH_MAX_NODES)
		ncap = GRAPH_MAX_NODES;
	if (graph_grow(&g->ref, ncap, sizeof *g->ref) ||
	    graph_grow(&g->attrs, ncap, sizeof *g->attrs) ||
	    graph_grow(&g->attrs_out, ncap, sizeof *g->attrs_out) ||
	    graph_grow(&g->img, ncap, sizeof *g->img) ||
	    graph_grow(&g->health, ncap, sizeof *g->health) ||
	    graph_grow(&g->out, ncap, sizeof *g->out) || graph_grow(&g->in, ncap, sizeof *g->in) ||
	    graph_grow(&g->mark, ncap, sizeof *g->mark))
		return -1;
	/* Marks must start unvisited: 0 never equals an epoch. */
	memset(g->mark + g->cap, 0, (size_t)(ncap - g->cap) * sizeof *g->mark);
	g->cap = ncap;
	return 0;
}

int
graph_scratch_reserve(graph *g)
{
	graph_index_refresh_auto(g);
	if (g->scratch_cap < g->cap) {
		uint32_t n = g->cap;
		if (graph_grow(&g->queue, n, sizeof *g->queue) ||
		    graph_grow(&g->depth, n, sizeof *g->depth) ||
		    graph_grow(&g->via, n, sizeof *g->via) ||
		    graph_grow(&g->stamp, n, sizeof *g->stamp) ||
		    graph_grow(&g->level, (size_t)n + 1, sizeof *g->level))
			return -1;
		/* New slots are below every walk's base: not reached. */
		memset(g->stamp + g->scratch_cap, 0,
		       (size_t)(n - g->scratch_cap) * sizeof *g->stamp);
		g->scratch_cap = n;
	}
	return 0;
}

int
graph_visit_begin(graph *g)
{
	if (graph_scratch_reserve(g))
		return -1;
	if (++g->epoch == 0) { /* wrapped: forget every old mark once */
		memset(g->mark, 0, (size_t)g->cap * sizeof *g->mark);
		g->epoch = 1;
	}
	return 0;
}

/* ---- Adjacency lists ---------------------------------------------------- */

static int
adj_reserve(struct graph_adj *a)
{
	if (a->n < a->cap)
		return 0;
	uint32_t ncap = a->cap ? a->cap * 2 : 4;
	if (graph_grow(&a->e, ncap, sizeof *a->e))
		return -1;
	a->cap = ncap;
	return 0;
}

/* Appends an entry (room reserved), keeping part_of entries in front. */
static void
adj_insert(struct graph_adj *a, uint32_t ent)
{
	if (GRAPH_ENT_TYPE(ent) == GRAPH_PART_OF) {
		if (a->npart < a->n)
			a->e[a->n] = a->e[a->npart];
		a->e[a->npart++] = ent;
	} else {
		a->e[a->n] = ent;
	}
	a->n++;
}

static bool
adj_find(const struct graph_adj *a, uint32_t ent, uint32_t *pos)
{
	const uint32_t *b, *e;
	graph_adj_segment(a, GRAPH_ENT_TYPE(ent) == GRAPH_PART_OF, &b, &e);
	for (const uint32_t *p = b; p < e; p++)
		if (*p == ent) {
			*pos = (uint32_t)(p - a->e);
			return true;
		}
	return false;
}

static void
adj_delete_at(struct graph_adj *a, uint32_t pos)
{
	if (pos < a->npart) {
		a->e[pos] = a->e[a->npart - 1];
		a->e[a->npart - 1] = a->e[a->n - 1];
		a->npart--;
	} else {
		a->e[pos] = a->e[a->n - 1];
	}
	a->n--;
}

/* Removes `ent`, which must be present. */
static void
adj_remove(struct graph_adj *a, uint32_t ent)
{
	uint32_t pos;
	if (adj_find(a, ent, &pos))
		adj_delete_at(a, pos);
}

/* An edge between f and t was added or removed: the walk index no longer holds
 * their steps (owned_by is not in it: its changes leave it current). */
static void
edge_touch(graph *g, uint32_t f, int type, uint32_t t)
{
	if (type == GRAPH_OWNED_BY)
		return;
	graph_index_touch(g, f);
	graph_index_touch(g, t);
}

/* ---- Nodes -------------------------------------------------------------- */

static bool
ref_ok(const char *ref)
{
	if (ref == NULL)
		return false;
	const char *slash = strchr(ref, '/');
	return slash != NULL && slash != ref && slash[1] != '\0';
}

/* "{}" (or NULL) is stored as NULL: most nodes have no attributes. */
static bool
attrs_empty(const char *s)
{
	if (s == NULL)
		return true;
	s += strspn(s, " \t\r\n");
	if (*s++ != '{')
		return false;
	s += strspn(s, " \t\r\n");
	if (*s++ != '}')
		return false;
	s += strspn(s, " \t\r\n");
	return *s == '\0';
}

static int
attrs_dup(const char *json, char **out)
{
	*out = NULL;
	if (attrs_empty(json))
		return 0;
	*out = strdup(json);
	return *out ? 0 : -1;
}

/* Room on the free list for every index ever handed out, so that removal
 * (which pushes an index) cannot fail. */
static int
free_list_reserve(graph *g)
{
	if (g->free_cap >= g->cap)
		return 0;
	if (graph_grow(&g->free_idx, g->cap, sizeof *g->free_idx))
		return -1;
	g->free_cap = g->cap;
	return 0;
}

/* Inserts a new node (ref absent, already validated); its index via *idx. */
static int
node_insert(graph *g, const char *ref, int health, const char *attrs, uint32_t *idx)
{
	char *r = strdup(ref);
	char *a = NULL;
	if (r == NULL || attrs_dup(attrs, &a) || tab_reserve(g) ||
	    (g->nfree == 0 && nodes_reserve(g)) || free_list_reserve(g)) {
		free(r);
		free(a);
		return GRAPH_ENOMEM;
	}
	uint32_t i = g->nfree ? g->free_idx[--g->nfree] : g->hi++;
	g->ref[i] = r;
	g->attrs[i] = a;
	g->attrs_out[i] = NULL;
	g->img[i] = NULL;
	g->health[i] = (uint8_t)health;
	g->out[i] = (struct graph_adj){0};
	g->in[i] = (struct graph_adj){0};
	uint32_t h = graph_hash_str(r);
	struct graph_slot *s = &g->tab[tab_probe(g, r, h)];
	s->idx1 = i + 1;
	s->hash = h;
	g->nodes++;
	if (g->index.range > 0) { /* unranked, its (no) edges read from its lists */
		g->index.dirty++;
		g->index.renamed++;
	}
	*idx = i;
	return 0;
}

/* A raw (not yet parsed) image holding a copy of text[0..len). */
static struct graph_image *
image_raw(const char *text, size_t len)
{
	if (len > UINT32_MAX - 1)
		return NULL;
	struct graph_image *im = malloc(sizeof *im + len + 1);
	if (im == NULL)
		return NULL;
	memset(im, 0, sizeof *im);
	im->len = (uint32_t)len;
	memcpy(im->text, text, len);
	im->text[len] = '\0';
	return im;
}

int
graph_node_put_image(graph *g, const char *ref, int health, const char *attributes_json,
		     const char *image, size_t image_len)
{
	if (g == NULL || !ref_ok(ref) || graph_health_name(health) == NULL) {
		return GRAPH_EINVAL;
	}
	struct graph_image *im = NULL;
	if (image != NULL && (im = image_raw(image, image_len)) == NULL) {
		return GRAPH_ENOMEM;
	}
	long i = graph_find(g, ref);
	if (i < 0) {
		uint32_t idx;
		if (node_insert(g, ref, health, attributes_json, &idx)) {
			graph_image_free(im);
			return -1;
		}
		g->img[idx] = im;
		return 0;
	}
	char *a;
	if (attrs_dup(attributes_json, &a)) {
		graph_image_free(im);
		return GRAPH_ENOMEM;
	}
	free(g->attrs[i]);
	g->attrs[i] = a;
	free(g->attrs_out[i]);
	g->attrs_out[i] = NULL;
	graph_image_carry(g->img[i], im);
	graph_image_free(g->img[i]);
	g->img[i] = im;
	g->health[i] = (uint8_t)health;
	return 0;
}

int
graph_node_put(graph *g, const char *ref, int health, const char *attributes_json)
{
	return graph_node_put_image(g, ref, health, attributes_json, NULL, 0);
}

/* Index of ref, creating it bare when missing; *created is set when it was
 * created (left alone otherwise). */
static int
node_ensure(graph *g, const char *ref, uint32_t *idx, bool *created)
{
	long i = graph_find(g, ref);
	if (i >= 0) {
		*idx = (uint32_t)i;
		return 0;
	}
	if (node_insert(g, ref, GRAPH_UNKNOWN, NULL, idx))
		return -1;
	*created = true;
	return 0;
}

static void
node_delete(graph *g, uint32_t u)
{
	/* Each out-edge u->v lives in v's in-list too, and each in-edge v->u in
	 * v's out-list. Removing from the other lists never touches the list
	 * being iterated (a self-loop u->u is removed from u's in-list during the
	 * first pass, so the second pass does not see it). */
	struct graph_adj *out = &g->out[u], *in = &g->in[u];
	for (uint32_t k = 0; k < out->n; k++) {
		uint32_t e = out->e[k];
		adj_remove(&g->in[GRAPH_ENT_NODE(e)], GRAPH_ENT(u, GRAPH_ENT_TYPE(e)));
		graph_index_touch(g, GRAPH_ENT_NODE(e));
	}
	g->edges -= out->n;
	out->n = 0; /* a self-loop must not be found again below */
	for (uint32_t k = 0; k < in->n; k++) {
		uint32_t e = in->e[k];
		adj_remove(&g->out[GRAPH_ENT_NODE(e)], GRAPH_ENT(u, GRAPH_ENT_TYPE(e)));
		graph_index_touch(g, GRAPH_ENT_NODE(e));
	}
	g->edges -= in->n;

	tab_delete(g, tab_probe(g, g->ref[u], graph_hash_str(g->ref[u])));
	free(g->ref[u]);
	free(g->attrs[u]);
	free(g->attrs_out[u]);
	graph_image_free(g->img[u]);
	free(out->e);
	free(in->e);
	g->ref[u] = NULL;
	g->attrs[u] = NULL;
	g->attrs_out[u] = NULL;
	g->img[u] = NULL;
	*out = (struct graph_adj){0};
	*in = (struct graph_adj){0};
	g->nodes--;
	graph_index_gone(g, u);
	/* The free list was reserved when the node was created: never fails. */
	g->free_idx[g->nfree++] = u;
}

int
graph_node_remove(graph *g, const char *ref)
{
	if (g == NULL || ref == NULL) {
		return GRAPH_EINVAL;
	}
	long i = graph_find(g, ref);
	if (i >= 0)
		node_delete(g, (uint32_t)i);
	return 0;
}

/* ---- Edges -------------------------------------------------------------- */

/* Adds f --type--> t (absent; room reserved in both lists). */
static void
edge_insert(graph *g, uint32_t f, int type, uint32_t t)
{
	adj_insert(&g->out[f], GRAPH_ENT(t, type));
	adj_insert(&g->in[t], GRAPH_ENT(f, type));
	g->edges++;
	edge_touch(g, f, type, t);
}

/* Whether from --type--> to exists; scans the shorter of the two lists. */
static bool
edge_exists(const graph *g, uint32_t f, int type, uint32_t t)
{
	uint32_t pos;
	if (g->out[f].n <= g->in[t].n)
		return adj_find(&g->out[f], GRAPH_ENT(t, type), &pos);
	return adj_find(&g->in[t], GRAPH_ENT(f, type), &pos);
}

int
graph_edge_put(graph *g, const char *from, int type, const char *to)
{
	if (g == NULL || !ref_ok(from) || !ref_ok(to) || graph_edge_type_name(type) == NULL) {
		return GRAPH_EINVAL;
	}
	uint32_t f, t;
	bool fnew = false, tnew = false;
	if (node_ensure(g, from, &f, &fnew))
		return -1;
	if (node_ensure(g, to, &t, &tnew))
		goto fail;
	if (!fnew && !tnew && edge_exists(g, f, type, t))
		return 0;
	if (adj_reserve(&g->out[f]) || adj_reserve(&g->in[t]))
		goto fail;
	edge_insert(g, f, type, t);
	return 0;
fail:
	/* Undo the endpoints this call created: the graph is unchanged. */
	if (tnew)
		node_delete(g, t);
	if (fnew)
		node_delete(g, f);
	return GRAPH_ENOMEM;
}

int
graph_edge_put_idx(graph *g, long from, int type, long to)
{
	if (g == NULL || !graph_live(g, from) || !graph_live(g, to) ||
	    graph_edge_type_name(type) == NULL) {
		return GRAPH_EINVAL;
	}
	uint32_t f = (uint32_t)from, t = (uint32_t)to;
	if (edge_exists(g, f, type, t))
		return 0;
	if (adj_reserve(&g->out[f]) || adj_reserve(&g->in[t])) {
		return GRAPH_ENOMEM;
	}
	edge_insert(g, f, type, t);
	return 0;
}

int
graph_edge_remove(graph *g, const char *from, int type, const char *to)
{
	if (g == NULL || from == NULL || to == NULL || graph_edge_type_name(type) == NULL) {
		return GRAPH_EINVAL;
	}
	long f = graph_find(g, from), t = graph_find(g, to);
	if (f < 0 || t < 0)
		return 0;
	uint32_t pos;
	if (!adj_find(&g->out[f], GRAPH_ENT(t, type), &pos))
		return 0;
	adj_delete_at(&g->out[f], pos);
	adj_remove(&g->in[t], GRAPH_ENT(f, type));
	g->edges--;
	edge_touch(g, (uint32_t)f, type, (uint32_t)t);
	return 0;
}

/* ---- Lookups ------------------------------------------------------------ */

size_t
graph_node_count(const graph *g)
{
	return g ? g->nodes : 0;
}

size_t
graph_edge_count(const graph *g)
{
	return g ? g->edges : 0;
}

void
graph_degree(const graph *g, long node, size_t *in, size_t *out)
{
	bool live = g != NULL && graph_live(g, node);
	if (in)
		*in = live ? g->in[node].n : 0;
	if (out)
		*out = live ? g->out[node].n : 0;
}

const char *
graph_node_ref(const graph *g, long node)
{
	return g != NULL && graph_live(g, node) ? g->ref[node] : NULL;
}

int
graph_node_health(const graph *g, long node)
{
	return g != NULL && graph_live(g, node) ? g->health[node] : -1;
}
