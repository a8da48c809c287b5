/*
 * graph.h — the in-memory map: nodes, typed edges and every graph query
 * (dependents, dependencies, owners, path, rootcause, subgraph).
 *
 * The graph is a read model kept current by the change-log tailer; the HTTP
 * handlers query it and never the database. It is single-threaded: one event
 * loop owns it, nothing locks, and there is no global state (two graphs in one
 * process are independent). No call blocks.
 *
 * Nodes are addressed by their ref "kind/name" (unique, stable). Internally a
 * node is a dense index (long here, recycled after removal); an index is only
 * meaningful until the node is removed. Every query takes indexes resolved with
 * graph_find() and returns a NEW jansson value shaped exactly as the SPEC §2
 * response body; the caller owns it (json_decref).
 *
 * Impact (SPEC §1): for depends_on, runs_on and connects_to, failure of TO
 * impacts FROM; for part_of, failure of FROM (the component) impacts TO (the
 * system); owned_by never carries impact and no walk follows it.
 *
 * Errors: mutations return 0, or -1 with errno = ENOMEM (the graph is then
 * unchanged) or EINVAL (bad argument). Queries return NULL with errno = EINVAL
 * (an index that is not a live node, a bad argument) or ENOMEM; graph_path()
 * also returns NULL with errno = ENOENT when there is no path.
 *
 * Complexity: find/put O(1) expected; edge put/remove O(min(out(from), in(to)))
 * to find the edge, plus O(in(to)) / O(out(from)) for removal; node removal
 * O(its edges + their endpoints' degrees); walks O(nodes + edges reached) plus
 * sorting of the part of the result that is returned.
 */
#ifndef CMDBD_GRAPH_H
#define CMDBD_GRAPH_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

typedef struct graph graph;

enum graph_edge_type {
	GRAPH_DEPENDS_ON,
	GRAPH_RUNS_ON,
	GRAPH_CONNECTS_TO,
	GRAPH_PART_OF,
	GRAPH_OWNED_BY,
	GRAPH_EDGE_TYPES
};

/* The four types that carry impact, as a type_mask for the walks. */
#define GRAPH_TYPE_BIT(t) (1u << (t))
#define GRAPH_IMPACT_MASK                                                                          \
	(GRAPH_TYPE_BIT(GRAPH_DEPENDS_ON) | GRAPH_TYPE_BIT(GRAPH_RUNS_ON) |                        \
	 GRAPH_TYPE_BIT(GRAPH_CONNECTS_TO) | GRAPH_TYPE_BIT(GRAPH_PART_OF))

enum graph_health { GRAPH_UNKNOWN, GRAPH_OK, GRAPH_DEGRADED, GRAPH_DOWN };

/* Walk direction of graph_subgraph(). */
enum graph_direction {
	GRAPH_DIR_DEPENDENTS = 1,   /* what is impacted if the root fails */
	GRAPH_DIR_DEPENDENCIES = 2, /* what the root needs */
	GRAPH_DIR_BOTH = 3
};

/* Depth argument meaning "no limit". */
#define GRAPH_UNLIMITED (-1)

/* A new empty graph, or NULL on ENOMEM. graph_free() is NULL-safe. */
graph *graph_new(void);
void graph_free(graph *g);

/* Names <-> values. Parsers return -1 for an unknown (or NULL) name; the
 * name functions return a static string, or NULL for an out-of-range value. */
int graph_edge_type_parse(const char *s);
const char *graph_edge_type_name(int t);
int graph_health_parse(const char *s);
const char *graph_health_name(int h);
int graph_direction_parse(const char *s); /* "dependents"|"dependencies"|"both" */

/*
 * Parses the `types` query parameter: a comma list of impact type names
 * ("depends_on,part_of"), into a type_mask. owned_by, unknown names, empty
 * items and an empty list are errors (-1); duplicates are harmless. A NULL
 * string gives GRAPH_IMPACT_MASK.
 */
int graph_impact_mask_parse(const char *csv, unsigned *mask);

/* ---- Mutations ---------------------------------------------------------- */

/*
 * Inserts the node or, when the ref exists, replaces its health and
 * attributes (its edges stay). `ref` must contain a '/' after a non-empty kind
 * (the graph does not re-validate the full syntax; the caller did). `health`
 * is an enum graph_health. `attributes_json` is the node's attributes as JSON
 * object text, copied; NULL or "{}" mean none. It is only parsed when an owners
 * result shows it (invalid text then shows as {}).
 */
int graph_node_put(graph *g, const char *ref, int health, const char *attributes_json);

/*
 * graph_node_put() that also keeps the node's whole image: `image` is the node
 * as SPEC §2 shapes it (the `after` of a node change row, or what the loader
 * built), JSON object text of `image_len` bytes, copied. NULL drops the image
 * (graph_node_put() passes NULL). The image is parsed lazily, by the first
 * graph_node_view() of the node; until then it costs its bytes and nothing else.
 */
int graph_node_put_image(graph *g, const char *ref, int health, const char *attributes_json,
			 const char *image, size_t image_len);

/* Removes the node and all its edges; a missing ref is a no-op (0). */
int graph_node_remove(graph *g, const char *ref);

/* Adds FROM --type--> TO (no-op if present), creating missing endpoints bare
 * (health unknown, no attributes). */
int graph_edge_put(graph *g, const char *from, int type, const char *to);

/* graph_edge_put() between two live nodes given by index (the start-up loader,
 * which resolves ids itself). EINVAL when either is not live. */
int graph_edge_put_idx(graph *g, long from, int type, long to);

/* Removes the edge; a missing edge or endpoint is a no-op (0). */
int graph_edge_remove(graph *g, const char *from, int type, const char *to);

/* ---- Lookups ------------------------------------------------------------ */

long graph_find(const graph *g, const char *ref); /* index or -1 */
size_t graph_node_count(const graph *g);
size_t graph_edge_count(const graph *g);
/* In/out edge counts over all five types; 0/0 for an index that is not live. */
void graph_degree(const graph *g, long node, size_t *in, size_t *out);
/* The node's ref (owned by the graph, valid until the node is removed) and
 * health; NULL / -1 for an index that is not live. */
const char *graph_node_ref(const graph *g, long node);
int graph_node_health(const graph *g, long node);

/* ---- History (graph_history.c) -------------------------------------------
 *
 * graph_copy(): a new graph with the same nodes (ref, health, attributes) and
 * edges as `g`, without node images or source sightings (an as-of graph: see
 * history.h), or NULL with ENOMEM. O(nodes + edges); `g` is not changed.
 * graph_bytes(): the heap memory the graph's structure holds, roughly.
 * graph_node_edge_refs(): the stored edges of a live node as a NEW jansson array
 * of change-log refs "FROM TYPE TO" — its outgoing ones when `out`, incoming
 * when `in`, of one type (enum graph_edge_type) or any (type < 0). NULL with
 * errno EINVAL (not a live node) or ENOMEM.
 */
graph *graph_copy(const graph *g);
size_t graph_bytes(const graph *g);
json_t *graph_node_edge_refs(const graph *g, long node, bool out, bool in, int type);

/* ---- Node images and last_seen_at ---------------------------------------
 *
 * GET /v1/nodes/{kind}/{name} is answered from the image kept per node, with
 * last_seen_at DERIVED, as the database derives it (migrations/0004):
 *
 *     last_seen_at = max(the last_seen_at of the node's latest image,
 *                        max over the node's `sources` s of seen[s])
 *
 * where seen[s] is when source s last applied a manifest, a no-op re-post
 * included (a no-op writes no change row, so images alone would miss it).
 * Times are RFC 3339 strings of one fixed format, "2026-11-21T10:00:00.123456Z"
 * (GRAPH_TIME_LEN bytes), so byte order is time order and max is strcmp.
 * seen[] is fed by graph_source_seen(): the manifest replies of this process
 * (their "sighting") and the tailer's poll of source_state for the others.
 * A hand edit that changes nothing refreshes the stored last_seen_at (and a
 * health update that changes nothing health_at) without a change row: the
 * handler feeds its reply back with graph_node_refresh().
 */

#define GRAPH_TIME_LEN 27

/* A node as GET answers it; valid until the next mutation of the graph. */
struct graph_node_view {
	const char *json; /* the image without last_seen_at: "{...}", compact */
	size_t len;
	long long version;
	char last_seen_at[GRAPH_TIME_LEN + 1]; /* derived; "" = null */
};

/*
 * Fills *v for a live node (parsing its image on first use). -1 with errno =
 * EINVAL (not a live node), ENOENT (the node has no image), EPROTO (the image
 * is not a node object jansson can read; it is kept, and the caller falls back
 * to the database) or ENOMEM.
 */
int graph_node_view(graph *g, long node, struct graph_node_view *v);

/* seen[source] = max(seen[source], at). `at` must be a GRAPH_TIME_LEN time
 * (else EINVAL). 0, or -1 with ENOMEM. */
int graph_source_seen(graph *g, const char *source, const char *at);

/* seen[source], or NULL when the source was never seen. */
const char *graph_source_seen_at(const graph *g, const char *source);

/*
 * Max-merges the times of a node reply body into the node's image: its
 * last_seen_at and (when not NULL) health_at, each only if later. Only when the
 * node exists, has an image and its id equals `id` (a reply about a node that
 * has since been deleted and re-created changes nothing). Times that are not
 * GRAPH_TIME_LEN long are ignored. 0, or -1 with ENOMEM / EINVAL.
 */
int graph_node_refresh(graph *g, const char *ref, const char *id, const char *last_seen_at,
		       const char *health_at);

/* ---- Queries (SPEC §2 "Graph queries") -----------------------------------
 * The graph is non-const because queries reuse scratch space kept in it. */

/*
 * {"root","count","truncated","nodes":[{"ref","depth","via":{"from","type","to"}}]}
 * Every node impacted if `root` fails (dependents) / that `root` needs
 * (dependencies), transitively, following only the impact types in
 * `type_mask` (owned_by bits are ignored). Each node once, at its least depth
 * (BFS), never the root. Order: depth, then ref (byte order). `count` is all
 * found (the walk is complete), `nodes` the first `limit`, `truncated` =
 * count > limit. `max_depth` < 0 = unlimited, 0 = nothing.
 * `via` is the stored edge by which the node was reached from a node one level
 * nearer the root. When several edges qualify, the one whose nearer endpoint
 * (the "parent") has the smallest ref wins, then the smallest type name.
 */
json_t *graph_dependents(graph *g, long root, int max_depth, unsigned type_mask, size_t limit);
json_t *graph_dependencies(graph *g, long root, int max_depth, unsigned type_mask, size_t limit);

/*
 * The same answers serialised directly: the exact bytes json_dumps(result,
 * JSON_COMPACT) gives for the jansson value above, without building it (the
 * reply path of a walk that returns thousands of nodes). `dir` is
 * GRAPH_DIR_DEPENDENTS or GRAPH_DIR_DEPENDENCIES. Returns a malloc'd
 * NUL-terminated string (caller frees) and its length in *len, or NULL with
 * errno (EINVAL, ENOMEM).
 */
char *graph_walk_text(graph *g, long root, int dir, int max_depth, unsigned type_mask, size_t limit,
		      size_t *len);

/*
 * {"node":ref,"owners":[{"ref","attributes","rule","via":[refs]}]}
 * Rules, first that yields wins: "direct" (targets of the node's owned_by
 * edges) → "part_of" (walk up part_of edges breadth-first; the direct owners
 * of the nearest level that has any, union over that level) → "runs_on"
 * (union, over the nodes with a runs_on edge to this node, of each one's
 * owners by direct or else part_of; reported with rule "runs_on").
 * `via` runs from the node to the owner, both included. Owners are sorted by
 * ref, each once; when several chains explain one owner the shortest wins,
 * then the smallest element by element. Part_of chains follow the BFS parents
 * (smallest-ref parent at each level). No owner → "owners":[].
 */
json_t *graph_owners(graph *g, long node);

/*
 * {"from","to","hops":[{"from","type","to"}]} — a shortest chain of "needs"
 * hops (the dependencies direction, all four impact types), each hop the
 * stored edge. Deterministic: each node on the chain is entered from its
 * BFS parent (smallest parent ref, then type name). from == to → no hops.
 * NULL with errno = ENOENT when `to` is not reachable.
 */
json_t *graph_path(graph *g, long from, long to);

/*
 * {"candidates":[{"ref","explains":[refs],"health","depth"}],"root_causes":[refs],"minimal_cover":[refs]}
 * `failing` holds n node indexes (duplicates ignored). A candidate is a
 * failing node or any node within `max_depth` "needs" hops of one (< 0 =
 * unlimited). `explains` (sorted by ref) are the failing nodes it is or that
 * need it within max_depth; `depth` its least distance from one of them.
 * Candidates are in rank order: more explained first, then health down, then
 * smaller total depth (sum of distances to the explained failing nodes), then
 * ref. root_causes: the candidates (rank order) that are failing or down and
 * reach no other failing-or-down node within max_depth needs hops of their
 * own. minimal_cover: greedy set cover of the failing set, most newly covered
 * first, ties by rank.
 * Memory: O(candidates * ceil(n / 64)) words for the reach bitsets.
 */
json_t *graph_rootcause(graph *g, const long *failing, size_t n, int max_depth);

/*
 * {"root":ref,"nodes":[{"ref","kind","health","depth"}],"edges":[{"from","type","to"}]}
 * The nodes within `depth` hops of the root in `direction` (root included at
 * depth 0; with BOTH a node's depth is its lesser one), ordered by depth then
 * ref, and every stored edge (any type) between two of them, ordered by
 * (from, type, to). depth < 0 = unlimited.
 */
json_t *graph_subgraph(graph *g, long root, int depth, int direction);

/* The same subgraph as Graphviz source ("digraph cmdb {...}"), malloc'd and
 * NUL-terminated (caller frees); NULL with errno on error. */
char *graph_subgraph_dot(graph *g, long root, int depth, int direction);

#endif
