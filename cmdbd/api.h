/*
 * api.h — the HTTP handlers, one api_*.c file per resource.
 *
 * Each handler receives a request that has passed the limits, routing and auth,
 * reaches the pool, the map and the settings through r->app (app.h), and must
 * reply exactly once (http_reply_*), now or from a callback. Handlers
 * validate their input, then either answer from the in-memory graph or make one
 * database call (api_call_db), never both on the request path of a graph query.
 */
#ifndef CMDB_API_H
#define CMDB_API_H

#include "db.h"
#include "graph.h"
#include "http.h"
#include "jv.h"

/* api_ops.c */
void api_healthz(struct http_req *r);
void api_readyz(struct http_req *r);
void api_metrics(struct http_req *r);

/* api_nodes.c */
void api_node_get(struct http_req *r);
void api_node_put(struct http_req *r);
void api_node_delete(struct http_req *r);
void api_node_list(struct http_req *r);
void api_node_edges(struct http_req *r);
void api_node_health(struct http_req *r);

/* api_edges.c */
void api_edge_put(struct http_req *r);
void api_edge_delete(struct http_req *r);

/* api_manifests.c */
void api_manifest_post(struct http_req *r);
void api_deployments(struct http_req *r);

/* api_changes.c */
void api_changes(struct http_req *r); /* long-polls park on the tailer */

/* api_sources.c (SPEC §5) */
void api_sources(struct http_req *r);
void api_drift(struct http_req *r);

/* api_graph.c */
void api_dependents(struct http_req *r);
void api_dependencies(struct http_req *r);
void api_owners(struct http_req *r);
void api_path(struct http_req *r);
void api_rootcause(struct http_req *r);
void api_graph(struct http_req *r);
/*
 * The §2 rootcause answer for every node now down or degraded (SPEC §6), within
 * max_depth; NULL with *err API_TOO_MANY_FAILING (more of them than a rootcause
 * may name) or a graph_err code (graph.h).
 */
#define API_TOO_MANY_FAILING 1
json_t *api_rootcause_unhealthy(graph *g, long max_depth, int *err);

/* api_integrations.c */
void api_alertmanager(struct http_req *r);

/* api_admin.c */
void api_admin_verify(struct http_req *r); /* GET /v1/admin/verify[?limit=&repair=] */

/* api_history.c — SPEC §5: diffs, and node GET / edges as of a seq (the handlers
 * of api_nodes.c pass those on with the as-of graph, history.h). */
struct graph;
void api_diff(struct http_req *r);
void api_deployment_diff(struct http_req *r);
void api_history_node_get(struct http_req *r, struct graph *g, const char *ref);
void api_history_node_edges(struct http_req *r, struct graph *g, const char *ref, const char *dir,
			    const char *type);

/* api_ui.c — the web application's files (SPEC §8): /ui/ and /ui/{build}/{file}. */
void api_ui_index(struct http_req *r);
void api_ui_asset(struct http_req *r);

/* api_common.c — shared plumbing for handlers. */

/*
 * Runs the request's handler (http.c calls it once auth has passed). A read
 * (a route of scope AUTH_READ) with X-Cmdb-Min-Seq: N or min_seq=N (SPEC §7; the
 * larger when both) first waits until the map has applied change N: at once when
 * it has, else up to 5 s, then 503 "behind" with Retry-After. min_seq is taken out
 * of the query parameters the handler sees.
 */
void api_dispatch(struct http_req *r);

/*
 * Post-processing of a successful database reply body before it is sent: takes
 * the body reference and returns the one to send; may change *status (304).
 */
typedef json_t *(*api_decorate_fn)(struct http_req *r, json_t *body, int *status);

/*
 * Runs statement stmt with params and replies from the function's jsonb reply
 * ({"status","body","seq","etag","error"}): errors become JSON errors; with a seq
 * the reply carries X-Cmdb-Seq and waits until the in-memory graph has applied it
 * (read-your-writes); statements that only read (sql_reads_only) go to the read
 * database (server_read_db);
 * decorate (may be NULL) may replace the body. SQLSTATEs map to HTTP in one place.
 */
void api_call_db(struct http_req *r, int stmt, const char *const *params, api_decorate_fn decorate);

/*
 * api_call_db() with a second hook: after (may be NULL) sees the body once the
 * in-memory graph has applied the write (or the wait timed out), just before it
 * is sent — for answers computed from the graph the write changed. hooks must
 * outlive the request (a static const).
 */
struct api_db_hooks {
	api_decorate_fn decorate;
	api_decorate_fn after;
};
void api_call_db_hooks(struct http_req *r, int stmt, const char *const *params,
		       const struct api_db_hooks *hooks);

/*
 * For a handler that makes the database call itself (its own state in r->state):
 * replies from the result as api_call_db() does, or from one jsonb reply text (a row
 * of a batch's result, say) in that shape.
 */
void api_reply_db(struct http_req *r, const struct db_result *res, api_decorate_fn decorate);
void api_reply_db_text(struct http_req *r, const char *text, api_decorate_fn decorate);

/* Replies with the error a failed database call deserves (503, 400, 409, 500). */
void api_reply_db_error(struct http_req *r, const struct db_result *res);

/*
 * Reads the {kind}/{name} path parameters (index 0 and 1) and validates them.
 * Returns true and fills kind/name, or replies 400 and returns false.
 */
bool api_path_ref(struct http_req *r, char *kind, char *name, char *ref);

/*
 * Parses query parameter name as an integer in [min, max]; absent → def.
 * Returns true, or replies 400 naming the parameter and returns false.
 */
bool api_query_long(struct http_req *r, const char *name, long min, long max, long def, long *out);

/*
 * Rejects (400, naming it) a query parameter not in the NULL-terminated allowed
 * list, or one given twice unless it is in repeatable (NULL-terminated, or NULL).
 */
bool api_query_only(struct http_req *r, const char *const *allowed, const char *const *repeatable);

/*
 * The source a hand edit by the caller is recorded under: "api:" + the token name
 * folded to the source alphabet (lower case; other characters become '_'). A write
 * token restricted to a source glob may only write sources the glob matches, hand
 * edits included: otherwise this replies 403 and returns false.
 */
bool api_hand_source(struct http_req *r, char out[80]);

/*
 * The same "api:<name>" source, without the glob check: for health updates, which
 * are status rather than assertions and leave a node's sources alone.
 */
void api_actor_source(const struct http_req *r, char out[80]);

/*
 * Reads If-Match into out: NULL when absent, "*", or the version digits. Replies
 * 412 and returns false when the header can never match (not a version tag).
 */
bool api_if_match(struct http_req *r, char out[32], const char **param);

/* Does an If-None-Match header value list etag ("\"7\""), weak or strong, or is it "*"? */
bool api_etag_listed(const char *header, const char *etag);

/* Replies 503 (Retry-After; code "starting" or "reloading") and returns false while
 * the map is being loaded or reloaded. */
bool api_require_map(struct http_req *r);

/*
 * Checks the request's JSON body against fields (only those, required ones
 * present, right types). Replies 400 naming the field and returns false otherwise.
 */
bool api_body_fields(struct http_req *r, const struct jv_field *fields);

/*
 * 400 for a value outside a fixed vocabulary (model.h): details {"field": field,
 * "allowed": names[0..n)}, message "FIELD: " + how ("must be one of ...").
 */
void api_reply_not_allowed(struct http_req *r, const char *field, const char *const *names, int n,
			   const char *how);

/* Validates an attributes object: object, at most MODEL_ATTRIBUTES_MAX serialised. */
bool api_check_attributes(struct http_req *r, json_t *attrs, const char *field);

/* "true"/"false" → 1/0; absent → def; anything else → 400 naming it. */
bool api_query_bool(struct http_req *r, const char *name, int def, int *out);

#endif
