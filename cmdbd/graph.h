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
 * Errors (no function here sets errno): functions that return int return 0 or
 * a negative enum graph_err code — GRAPH_ENOMEM (the graph is then unchanged),
 * GRAPH_EINVAL (an index that is not a live node, a bad argument), GRAPH_ENOENT,
 * GRAPH_EPROTO, as each function says. Functions that return a new value return
 * NULL on failure and record the code in the graph, read with graph_error(g)
 * until the next failing call (like sqlite3_errcode(): per graph, not per
 * process, and no unrelated call clobbers it); graph_path() records GRAPH_ENOENT
 * when there is no path.
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
#include <stdint.h>

#include <jansson.h>

#include "model.h"

typedef struct graph graph;

/* What went wrong (negative, so `rc < 0` and `rc != 0` tests work). */
enum graph_err {
	GRAPH_NOERR = 0,
	GRAPH_ENOMEM = -1, /* out of memory: 503 for a request (the error policy) */
	GRAPH_EINVAL = -2, /* not a live node, a bad argument */
	GRAPH_ENOENT = -3, /* nothing there: no path, no image */
	GRAPH_EPROTO = -4, /* a stored image the graph cannot read */
};

/* The code of the last call on g that returned NULL (GRAPH_NOERR when none did). */
int graph_error(const graph *g);

/* A short text for a code ("out of memory"). */
const char *graph_strerror(int err);

/* The edge types and health states are the vocabulary's (model.h), with the
 * same values: graph_edge_type_name(t) == model_edge_type_name(t). */
#define GRAPH_X_EDGE_ENUM(id, name) GRAPH_##id = MODEL_EDGE_##id,
enum graph_edge_type {
	MODEL_EDGE_TYPES(GRAPH_X_EDGE_ENUM, ) GRAPH_EDGE_TYPES = MODEL_EDGE_TYPE_COUNT
};
#undef GRAPH_X_EDGE_ENUM

/* The four types that carry impact, as a type_mask for the walks. */
#define GRAPH_TYPE_BIT(t) (1u << (t))
#define GRAPH_X_BIT(id, name) GRAPH_TYPE_BIT(GRAPH_##id)
#define GRAPH_IMPACT_MASK (MODEL_IMPACT_TYPES(GRAPH_X_BIT, |))

#define GRAPH_X_HEALTH_ENUM(id, name) GRAPH_##id = MODEL_HEALTH_##id,
enum graph_health { MODEL_HEALTH_STATES(GRAPH_X_HEALTH_ENUM, ) };
#undef GRAPH_X_HEALTH_ENUM

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

/* Names <-> values (model.h's tables). Parsers return -1 for an unknown (or
 * NULL) name; the name functions return a static string, or NULL for an
 * out-of-range value. */
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

/* graph_edge_put() between two live nodes given by index (the loader, which
 * resolves node ids itself, and the tailer, which refuses an edge to a node the
 * map lacks). GRAPH_EINVAL when either is not live. */
int graph_edge_put_idx(graph *g, long from, int type, long to);

/* Removes the edge; a missing edge or endpoint is a no-op (0). */
int graph_edge_remove(graph *g, const char *from, int type, const char *to);

/* ---- The walk index ----------------------------------------------------
 *
 * Walks follow a flat copy of the adjacency (one array per direction, the edges
 * of owned_by left out) and compare refs by their rank in a sorted copy of the
 * refs (graph_index.c; DESIGN.md "In-memory graph"). It is never required to be
 * current: a mutation marks the nodes whose edges it changed stale, and walks
 * read those nodes' lists, so answers do not depend on it. By default
 * (GRAPH_INDEX_AUTO) the first walk builds it and a walk rebuilds it once a
 * sixteenth of the nodes are stale; GRAPH_INDEX_OFF drops it (walks read the
 * lists only), GRAPH_INDEX_ALWAYS rebuilds it before any walk after a change
 * (both for tests). graph_index_refresh() builds it now if anything changed since
 * its last build (the loader, so that the first query does not pay): 0, or
 * GRAPH_ENOMEM (nothing lost: walks read the lists).
 */
enum graph_index_policy { GRAPH_INDEX_AUTO, GRAPH_INDEX_OFF, GRAPH_INDEX_ALWAYS };
int graph_index_policy(graph *g, int policy); /* 0 or GRAPH_EINVAL */
int graph_index_refresh(graph *g);

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
 * Fills *v for a live node (parsing its image on first use). 0, or GRAPH_EINVAL
 * (not a live node), GRAPH_ENOENT (the node has no image), GRAPH_EPROTO (the image
 * is not a node object jansson can read; it is kept, and the caller falls back
 * to the database) or GRAPH_ENOMEM.
 */
int graph_node_view(graph *g, long node, struct graph_node_view *v);

/* seen[source] = max(seen[source], at). `at` must be a GRAPH_TIME_LEN time
 * (else GRAPH_EINVAL). 0, or GRAPH_ENOMEM. */
int graph_source_seen(graph *g, const char *source, const char *at);

/* seen[source], or NULL when the source was never seen. */
const char *graph_source_seen_at(const graph *g, const char *source);

/*
 * Max-merges the times of a node reply body into the node's image: its
 * last_seen_at and (when not NULL) health_at, each only if later. Only when the
 * node exists, has an image and its id equals `id` (a reply about a node that
 * has since been deleted and re-created changes nothing). Times that are not
 * GRAPH_TIME_LEN long are ignored. 0, or GRAPH_ENOMEM / GRAPH_EINVAL.
 */
int graph_node_refresh(graph *g, const char *ref, const char *id, const char *last_seen_at,
		       const char *health_at);

/* ---- Digests: comparing the graph with the database ----------------------
 *
 * A verification (verify.h) compares, node by node, what the graph would answer
 * with what PostgreSQL holds, through digests both sides compute the same way
 * (the SQL side is sql.c SQL_VERIFY). A digest is the first GRAPH_DIGEST_LEN
 * bytes of SHA-256 over fields, each written as "<bytes>:<value>" (its length in
 * bytes, a colon, its UTF-8 bytes), or "~" for null:
 *
 *   node: id, ref, kind, name, health, health_reason, orphan ("true"/"false"),
 *         version (decimal), created_at, updated_at (RFC 3339 as cmdb_ts() writes
 *         them), then attributes, labels and sources as PostgreSQL's jsonb text
 *         output writes them ({"a": 1, "b": [2]}: keys sorted, ", " and ": ").
 *   a node's outgoing edges: for each, in (type, to ref) byte order, its type
 *         and the ref it points to.
 *
 * Everything an answer shows is covered, except last_seen_at and health_at: they
 * move without a change row (a no-op re-post, an unchanged health report), so
 * another process may see them late by design (graph.h, above). Edges are what
 * the graph holds of them: their endpoints and type (their attributes and
 * sources are read from the database).
 *
 * A node's digest is computed from its image as it arrived (the after image of
 * its change row, or what the loader built): jsonb text at every level, which is
 * what makes it comparable byte for byte. It is kept with the image (the first
 * GET rewrites the image's text, the digest stays), so a second verification
 * costs a copy per node.
 */

#define GRAPH_DIGEST_LEN 16

/*
 * The node's digest: 0, or GRAPH_EINVAL (not a live node), GRAPH_ENOENT (no image),
 * GRAPH_EPROTO (the image is not a readable node image, or disagrees with the node's
 * ref, health or attributes as the walks see them) or GRAPH_ENOMEM.
 */
int graph_node_digest(graph *g, long node, unsigned char out[GRAPH_DIGEST_LEN]);

/* The digest of the node's outgoing edges and how many there are (0: the digest
 * of nothing). GRAPH_EINVAL or GRAPH_ENOMEM. */
int graph_out_digest(graph *g, long node, unsigned char out[GRAPH_DIGEST_LEN], size_t *count);

/* One past the highest node index in use: every live node is below it (and
 * graph_node_ref() is NULL for the free ones), for a scan of all nodes. */
long graph_index_end(const graph *g);

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
 * graph_error() set (GRAPH_EINVAL, GRAPH_ENOMEM).
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
 * As a jansson value (graph_owners) or as the same value's compact text
 * (graph_owners_text: malloc'd, caller frees, its length in *len; with
 * array_only just the owners array, as GET of a node embeds it).
 */
json_t *graph_owners(graph *g, long node);
char *graph_owners_text(graph *g, long node, bool array_only, size_t *len);

/*
 * {"from","to","hops":[{"from","type","to"}]} — a shortest chain of "needs"
 * hops (the dependencies direction, all four impact types), each hop the
 * stored edge. Deterministic: each node on the chain is entered from its
 * BFS parent (smallest parent ref, then type name). from == to → no hops.
 * NULL with graph_error() GRAPH_ENOENT when `to` is not reachable.
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
 * The live nodes whose health is down or degraded ("everything now failing",
 * SPEC §6), in index order: their count, with *out a malloc'd array of their
 * indexes (NULL when there are none; the caller frees it), or GRAPH_ENOMEM.
 */
long graph_unhealthy(const graph *g, long **out);

/*
 * {"root":ref,"nodes":[{"ref","kind","health","depth"}],"edges":[{"from","type","to"}]}
 * The nodes within `depth` hops of the root in `direction` (root included at
 * depth 0; with BOTH a node's depth is its lesser one), ordered by depth then
 * ref, and every stored edge (any type) between two of them, ordered by
 * (from, type, to). depth < 0 = unlimited.
 */
json_t *graph_subgraph(graph *g, long root, int depth, int direction);

/* The same subgraph as Graphviz source ("digraph cmdb {...}"), malloc'd and
 * NUL-terminated (caller frees); NULL on error (graph_error()). */
char *graph_subgraph_dot(graph *g, long root, int depth, int direction);

/* ---- Read sets (graph_reads.c) -------------------------------------------
 *
 * The nodes an answer was computed from: a change that touches none of them (a
 * node written or removed, an edge added or removed with an endpoint among them)
 * leaves the answer as it was. Watchers (watch.c) re-evaluate an answer only
 * when its read set is touched. On success *out is a malloc'd array (caller
 * frees) of *n node indexes, ascending and unique; GRAPH_EINVAL (not a
 * live node, a bad direction) or GRAPH_ENOMEM.
 */

/* dependents (GRAPH_DIR_DEPENDENTS), dependencies, or graph_subgraph() (any
 * direction, with GRAPH_IMPACT_MASK): every node the walk reached, root included,
 * truncated or not. */
int graph_reads_walk(graph *g, long root, int dir, int max_depth, unsigned mask, uint32_t **out,
		     size_t *n);

/* graph_owners(): the node, its part_of closure, what runs on it and their
 * part_of closures, and the owned_by targets of all of them. */
int graph_reads_owners(graph *g, long node, uint32_t **out, size_t *n);

/* The other endpoints of every edge of the node: what its removal touches besides
 * itself (the tailer, for a node removed without edge rows of its own). */
int graph_reads_neighbours(const graph *g, long node, uint32_t **out, size_t *n);

#endif
