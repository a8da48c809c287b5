/*
 * graph_impl.h — private layout of the in-memory graph, shared by graph.c
 * (storage and mutations), graph_query.c and graph_rootcause.c (the queries),
 * graph_dot.c (Graphviz) and graph_image.c (node images). Not for other
 * modules: use graph.h.
 */
#ifndef CMDBD_GRAPH_IMPL_H
#define CMDBD_GRAPH_IMPL_H

#include <stdbool.h>
#include <stdint.h>

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
	uint32_t *queue;  /* BFS order */
	uint32_t *depth;  /* valid where marked */
	uint32_t *parent; /* BFS parent or GRAPH_NONE until resolved */
	uint8_t *ptype;	  /* type of the edge from the parent */
	int walk_dir;	  /* direction and mask of the last graph_walk */
	unsigned walk_mask;
};

/* Starts a new visit: afterwards no node is marked. Grows the scratch arrays
 * to the node capacity; -1 on ENOMEM. */
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

int graph_visit_begin(graph *g);

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
 * FROM needs u). The dependencies direction is the mirror image. Segment 0
 * holds the part_of entries, segment 1 the others, which still include
 * owned_by: callers skip it (and apply their type mask).
 */
struct graph_steps {
	const uint32_t *begin[2], *end[2];
};

static inline void
graph_steps_of(const graph *g, uint32_t u, int dir, struct graph_steps *s)
{
	bool dependents = dir == GRAPH_DIR_DEPENDENTS;
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
 * in BFS order (root first, levels contiguous) with mark and depth set for
 * each. Parents are not chosen during the walk (that would cost a string
 * comparison per crossed edge); ask graph_walk_parent() for the nodes that
 * need one. -1 on ENOMEM.
 */
int graph_walk(graph *g, uint32_t root, int dir, unsigned mask, int max_depth, uint32_t stop_at,
	       size_t *n);

/* Sets g->parent[v] / g->ptype[v] for a node found by the last graph_walk:
 * among its neighbours one level nearer the root, the best by
 * graph_parent_better. O(degree of v); cached. No-op for the root. */
void graph_walk_parent(graph *g, uint32_t v);

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
