/*
 * graph_impl.h — private layout of the in-memory graph, shared by graph.c
 * (storage and mutations), graph_query.c and graph_rootcause.c (the queries),
 * graph_dot.c (Graphviz), graph_image.c (node images) and graph_index.c (the
 * walk index). Not for other modules: use graph.h.
 */
#ifndef CMDBD_GRAPH_IMPL_H
#define CMDBD_GRAPH_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "graph.h"

/*
 * An adjacency entry packs the neighbour index and the edge type into 32 bits:
 * (neighbour << 3) | type. That halves the memory of the lists (the graph is
 * sized for millions of edges) and caps the graph at 2^29 nodes.
 */
#define GRAPH_ENT(node, type) (((uint32_t)(node) << 3) | (uint32_t)(type))
#define GRAPH_ENT_NODE(e) ((e) >> 3)
#define GRAPH_ENT_TYPE(e) ((int)((e)&7u))
#define GRAPH_MAX_NODES (1u << 29)
#define GRAPH_NONE UINT32_MAX

/*
 * One direction of a node's edges. The part_of entries are kept at the front
 * ([0, npart)), the others after them, so that a walk that needs only part_of
 * (or only the rest) never scans the other kind: a database with 100k
 * dependents must not cost 100k steps each time a dependency walk passes it.
 */
struct graph_adj {
	uint32_t *e;
	uint32_t n, cap, npart;
};

/* Hash slot: node index + 1 (0 = empty) and the ref's hash (high bits). */
struct graph_slot {
	uint32_t idx1;
	uint32_t hash;
};

/*
 * A node's whole image (SPEC §2 node shape) as JSON text, one allocation.
 * `norm` false: the text as received (jsonb text from the change log, or built
 * by the loader); the other fields are not set yet. `norm` true: the text is
 * jansson's compact serialisation of that image WITHOUT its last_seen_at (so a
 * reply is this text plus the derived fields, byte for byte what the database
 * path produced), and version/id/seen/srcs are filled in. graph_image.c turns
 * the first into the second on first use.
 */
struct graph_image {
	uint32_t len; /* bytes of text, NUL excluded */
	bool norm;
	uint32_t nsrc;
	uint32_t *srcs; /* owned; interned source ids (graph_source_intern), when norm */
	long long version;
	char id[40];
	char seen[GRAPH_TIME_LEN + 1]; /* the image's own last_seen_at; "" = null */
	/* Refreshes this process saw without a change row (graph_node_refresh): kept
	 * when a newer image of the same node (fresh_id) replaces this one, whose
	 * change may have been committed before them, and merged into it (max). */
	char fresh_id[40];
	char fresh_seen[GRAPH_TIME_LEN + 1];
	char fresh_health_at[GRAPH_TIME_LEN + 1];
	/* The digest of the image as it arrived (graph.h, "Digests"), once computed;
	 * kept when the text is normalised. */
	bool has_digest;
	unsigned char digest[GRAPH_DIGEST_LEN];
	char text[];
};

/* What is known of one source: its name and when it last applied a manifest. */
struct graph_source {
	char *name;		     /* owned */
	char at[GRAPH_TIME_LEN + 1]; /* "" = never seen */
};

/*
 * The walk index (graph_index.c): a flat copy of the adjacency the walks follow
 * and the nodes' order by ref, built from the lists above and never required to
 * be current.
 *
 *   off[k][u] .. off[k][u + 1]   (GRAPH_INDEX_STALE masked off) the entries of
 *                                node u in ent[k], k = 0 for the dependents
 *                                direction, 1 for dependencies: graph_steps_of()
 *                                in one segment, owned_by left out, sorted by
 *                                (neighbour's rank, type name). Nodes are by
 *                                index (u < range); each edge is one entry in each.
 *   GRAPH_INDEX_STALE on off[k][u]  u's edges changed since the build (or u was
 *                                removed): walks read its lists instead. Nodes at
 *                                or above `range` (created since) are read so too.
 *   rank[u]                      u's position among the build's nodes in ref byte
 *                                order, or GRAPH_NONE (removed since: the index may
 *                                be recycled). Removing nodes keeps the others'
 *                                ranks in order, so two ranked nodes compare by
 *                                rank exactly as by strcmp of their refs.
 *   order[0 .. norder)           the build's nodes by ref (the next build merges
 *                                the nodes created since into it).
 *
 * range == 0: not built; every walk reads the lists.
 */
#define GRAPH_INDEX_STALE 0x80000000u

struct graph_index {
	uint32_t range;
	uint32_t *off[2], *ent[2];
	uint32_t *rank;
	uint32_t *order, norder;
	size_t dirty;	/* nodes marked stale or created since the build */
	size_t renamed; /* nodes created or removed since: the order changed */
	int policy;	/* enum graph_index_policy */
};

struct graph {
	int err; /* enum graph_err of the last call that returned NULL (graph_error) */
	/* Per node, indexed 0..cap-1; slots below `hi` are live or on the free
	 * list (ref == NULL). */
	char **ref;		  /* owned "kind/name"; NULL = free slot */
	char **attrs;		  /* owned JSON text or NULL for {} */
	char **attrs_out;	  /* owned: attrs as an owners reply writes them (jansson's
				   * compact form), made on first use; NULL = not yet */
	struct graph_image **img; /* owned, or NULL when the node has no image */
	uint8_t *health;	  /* enum graph_health */
	struct graph_adj *out, *in;
	uint32_t *mark; /* visited iff mark[i] == epoch */
	uint32_t cap, hi;
	uint32_t *free_idx; /* recycled indexes (stack) */
	uint32_t nfree, free_cap;
	size_t nodes, edges;

	/* ref -> index: open addressing, linear probing, backward-shift delete. */
	struct graph_slot *tab;
	uint32_t tab_cap; /* power of two */

	/* Sources by name (open addressing, index + 1, 0 = empty) and their sightings. */
	struct graph_source *src;
	uint32_t nsrc, src_cap;
	uint32_t *src_tab;
	uint32_t src_tab_cap; /* power of two */

	/* Query scratch, sized to `cap` on demand, reused by every query. */
	uint32_t epoch;
	uint32_t scratch_cap;
	uint32_t *queue; /* BFS order */
	uint32_t *depth; /* valid where marked (graph_visit_begin's users) */
	/* The last graph_walk: stamp[v] - walk_base = 2 * depth + contested for the
	 * nodes it reached (stamp[v] >= walk_base; older walks left smaller values),
	 * contested when v was reached by more than one step (its parent must be
	 * chosen); via[v] = GRAPH_ENT(parent, type) of the step that reached it
	 * (the chosen one once graph_walk_parent() ran). */
	uint32_t *stamp;
	uint32_t *via;
	uint32_t walk_base, walk_next; /* this walk's base, the next one's */
	/* Where each level of the last graph_walk starts in the queue: depth d is
	 * queue[level[d], level[d + 1]), for d < nlevels (level[nlevels] = n). */
	uint32_t *level, nlevels;

	int walk_dir; /* direction and mask of the last graph_walk */
	unsigned walk_mask;

	struct graph_index index;
};

/* realloc of *pp to n elements of size bytes; leaves *pp untouched (and returns
 * GRAPH_ENOMEM) on failure or overflow. pp is the address of the array pointer. */
int graph_grow(void *pp, size_t n, size_t size);

/* Records err as g's last error (graph_error) and returns NULL, for the queries'
 * failure paths: `return graph_fail(g, GRAPH_EINVAL);`. g may be NULL. */
static inline void *
graph_fail(graph *g, int err)
{
	if (g != NULL)
		g->err = err;
	return NULL;
}

/* The hash of a NUL-terminated string for the graph's open-addressing tables
 * (refs, source names): FNV-1a with a final avalanche. */
uint32_t graph_hash_str(const char *s);

/* Starts a new visit: afterwards no node is marked. Grows the scratch arrays
 * to the node capacity (and refreshes the walk index as its policy says); -1
 * on ENOMEM. graph_walk() starts its own. */
int graph_visit_begin(graph *g);
/* graph_visit_begin() without the new epoch: scratch and index only. */
int graph_scratch_reserve(graph *g);

/* ---- The walk index (graph_index.c) ---- */

/* Builds the index anew (the ref order of the last build is merged, not
 * re-sorted); 0 or GRAPH_ENOMEM (the old index then stays as it was). */
int graph_index_build(graph *g);
/* At the start of a visit: rebuilds as the policy says (a failed build is
 * not an error: walks read the lists). */
void graph_index_refresh_auto(graph *g);
/* *dst = a copy of src (for graph_copy(): same node indexes); 0 or
 * GRAPH_ENOMEM (dst untouched). */
int graph_index_copy(struct graph_index *dst, const struct graph_index *src);
/* Frees the index's arrays (keeps the policy). */
void graph_index_free(struct graph_index *x);
size_t graph_index_bytes(const graph *g);

/* Node u's edges changed: walks must read its lists. Every mutation of an
 * adjacency list calls it for the list's node. */
static inline void
graph_index_touch(graph *g, uint32_t u)
{
	struct graph_index *x = &g->index;
	if (u < x->range && !(x->off[0][u] & GRAPH_INDEX_STALE)) {
		x->off[0][u] |= GRAPH_INDEX_STALE;
		x->off[1][u] |= GRAPH_INDEX_STALE;
		x->dirty++;
	}
}

/* Node u is removed (after its edges): its index may be recycled. */
static inline void
graph_index_gone(graph *g, uint32_t u)
{
	graph_index_touch(g, u);
	if (u < g->index.range) {
		g->index.rank[u] = GRAPH_NONE;
		g->index.renamed++;
	}
}

/* Node u's rank in ref order (see struct graph_index), or GRAPH_NONE. */
static inline uint32_t
graph_rank(const graph *g, uint32_t u)
{
	return u < g->index.range ? g->index.rank[u] : GRAPH_NONE;
}

/* strcmp of two nodes' refs, by rank when both have one. */
static inline int
graph_cmp_nodes(const graph *g, uint32_t a, uint32_t b)
{
	uint32_t ra = graph_rank(g, a), rb = graph_rank(g, b);
	if (ra != GRAPH_NONE && rb != GRAPH_NONE)
		return (ra > rb) - (ra < rb);
	return strcmp(g->ref[a], g->ref[b]);
}

static inline bool
graph_live(const graph *g, long i)
{
	return i >= 0 && (uint64_t)i < g->hi && g->ref[i] != NULL;
}

/* The adjacency segment of `a` holding part_of entries (want_part_of) or the
 * other types. */
static inline void
graph_adj_segment(const struct graph_adj *a, bool want_part_of, const uint32_t **begin,
		  const uint32_t **end)
{
	if (a->e == NULL) { /* no entries ever: NULL + 0 is undefined in C */
		*begin = *end = NULL;
		return;
	}
	*begin = want_part_of ? a->e : a->e + a->npart;
	*end = want_part_of ? a->e + a->npart : a->e + a->n;
}

/*
 * The adjacency a walk follows from a node. Walking the dependents
 * direction (what a failure of u impacts): u's outgoing part_of edges (u is a
 * component of the system) and u's incoming edges of the other types (their
 * FROM needs u). The dependencies direction is the mirror image. When u is
 * current in the walk index, that is one segment (segment 1 empty) of entries
 * of both kinds, no owned_by; else segment 0 holds u's part_of entries and
 * segment 1 the others, which still include owned_by. Callers skip owned_by
 * (and apply their type mask) either way: graph_step_follows().
 */
struct graph_steps {
	const uint32_t *begin[2], *end[2];
	bool sorted; /* from the index: by (neighbour's rank, type name) */
};

static inline void
graph_steps_of(const graph *g, uint32_t u, int dir, struct graph_steps *s)
{
	bool dependents = dir == GRAPH_DIR_DEPENDENTS;
	const struct graph_index *x = &g->index;
	if (u < x->range) {
		int k = dependents ? 0 : 1;
		uint32_t b = x->off[k][u];
		if (!(b & GRAPH_INDEX_STALE)) {
			s->begin[0] = x->ent[k] + b;
			s->end[0] = x->ent[k] + (x->off[k][u + 1] & ~GRAPH_INDEX_STALE);
			s->begin[1] = s->end[1] = NULL;
			s->sorted = true;
			return;
		}
	}
	s->sorted = false;
	graph_adj_segment(dependents ? &g->out[u] : &g->in[u], true, &s->begin[0], &s->end[0]);
	graph_adj_segment(dependents ? &g->in[u] : &g->out[u], false, &s->begin[1], &s->end[1]);
}

/* Whether a step along an edge of `type` in `dir` leaves from the stored
 * edge's FROM end (so the stored edge is {parent, type, child}) rather than
 * its TO end ({child, type, parent}). */
static inline bool
graph_step_from_parent(int dir, int type)
{
	return (dir == GRAPH_DIR_DEPENDENTS) == (type == GRAPH_PART_OF);
}

static inline bool
graph_step_follows(unsigned mask, int type)
{
	return type != GRAPH_OWNED_BY && (mask & GRAPH_TYPE_BIT(type)) != 0;
}

/* Tie rule of every BFS: reaching a node from parent `a` by type `ta` beats
 * parent `b` by `tb` when a's ref is smaller, then when the type name is. */
bool graph_parent_better(const graph *g, uint32_t a, int ta, uint32_t b, int tb);

/*
 * Level-synchronous BFS from `root` in `dir` over the types in `mask`, at
 * most `max_depth` levels (< 0 = unlimited), stopping after the level on
 * which `stop_at` (GRAPH_NONE for none) is reached. Leaves g->queue[0..*n)
 * in BFS order (root first, levels contiguous); graph_walk_reached() and
 * graph_walk_depth() tell of any node. A node reached by one step only knows
 * its parent; the others (contested) are left for graph_walk_parent() to
 * choose, for the nodes that need one (choosing during the walk would cost a
 * comparison per crossed edge). Invalidates the previous walk's answers.
 * -1 on ENOMEM.
 */
int graph_walk(graph *g, uint32_t root, int dir, unsigned mask, int max_depth, uint32_t stop_at,
	       size_t *n);

/* Whether the last graph_walk reached v, and at which depth (when it did). */
static inline bool
graph_walk_reached(const graph *g, uint32_t v)
{
	return g->stamp[v] >= g->walk_base;
}

static inline uint32_t
graph_walk_depth(const graph *g, uint32_t v)
{
	return (g->stamp[v] - g->walk_base) >> 1;
}

/* The step by which the last graph_walk reached v, GRAPH_ENT(parent, type):
 * among its neighbours one level nearer the root, the best by
 * graph_parent_better. O(1) when one step reached v, else O(degree of v)
 * once (cached). GRAPH_NONE for the root. */
uint32_t graph_walk_parent(graph *g, uint32_t v);

/* A jansson string of the node's ref (NULL on error: refs are valid UTF-8). */
static inline json_t *
graph_ref_json(const graph *g, uint32_t i)
{
	return json_string(g->ref[i]);
}

/* Computes node i's digest from its raw (not normalised) image into im->digest;
 * 0, or GRAPH_EPROTO or GRAPH_ENOMEM; graph_digest.c. */
int graph_image_digest(const graph *g, uint32_t i, struct graph_image *im);

/* Frees a node image and what it owns (NULL-safe); graph_image.c. */
void graph_image_free(struct graph_image *im);
/* Copies old's refreshes (fresh_*) into its replacement `im` (either may be NULL). */
void graph_image_carry(const struct graph_image *old, struct graph_image *im);

/* Frees the source table (graph_free); graph_image.c. */
void graph_sources_free(graph *g);

/* Byte-order comparison of refs through pointers, for qsort. */
int graph_cmp_refp(const void *a, const void *b);

/* ---- The subgraph (graph_query.c), rendered as JSON there and as Graphviz in
 * graph_dot.c ------------------------------------------------------------- */

struct graph_sub_node {
	const char *ref;
	uint32_t idx, depth;
};

struct graph_sub_edge {
	uint32_t from, to;
	int type;
	char *const *refs; /* for sorting */
};

struct graph_sub {
	uint32_t root;
	struct graph_sub_node *nodes; /* by depth, then ref */
	size_t n;
	struct graph_sub_edge *edges; /* by (from, type name, to) */
	size_t ne;
};

/* The subgraph graph_subgraph() describes, into *s: 0 (release it with
 * graph_sub_release()), or GRAPH_EINVAL (not a live node, a bad
 * direction) or GRAPH_ENOMEM, and nothing to release. */
int graph_sub_collect(graph *g, long root, int depth, int direction, struct graph_sub *s);
void graph_sub_release(struct graph_sub *s);

#endif
