/*
 * api_graph.c — the graph queries: dependents, dependencies, owners, path,
 * rootcause and subgraph (json or Graphviz dot).
 *
 * All of them are answered from the in-memory graph (graph.h) on the loop, with
 * no database work on the request path. Every answer carries X-Cmdb-Index (the
 * seq it was computed at). The watchable ones (dependents, dependencies, owners,
 * graph) take index and wait and are answered through watch.h. With as_of (SPEC
 * §5) every one answers from the graph of that moment (history.h): the handler is
 * run again once it is there. A past answer never changes, so as_of and
 * index/wait do not combine (400).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "app.h"
#include "history.h"
#include "jv.h"
#include "model.h"
#include "tailer.h"
#include "watch.h"

#define DEPTH_MAX 100000
#define ROOTCAUSE_FAILING_MAX 10000

/* Resolves a ref to a live node of g, or replies 400/404 and returns -1. */
static long
resolve(struct http_req *r, graph *g, const char *ref, const char *field)
{
	const char *why;
	long idx;

	if (!api_require_map(r))
		return -1;
	if (ref == NULL) {
		http_reply_bad(r, field, "is required");
		return -1;
	}
	why = model_ref_parse(ref, NULL, NULL);
	if (why != NULL) {
		http_reply_bad(r, field, "%s", why);
		return -1;
	}
	idx = graph_find(g, ref);
	if (idx < 0)
		http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", ref),
				 "node %s not found", ref);
	return idx;
}

/* The {kind}/{name} of the path as a node of g, or replies and returns -1. */
static long
path_node(struct http_req *r, graph *g)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], ref[MODEL_REF_MAX + 2];

	if (!api_path_ref(r, kind, name, ref))
		return -1;
	return resolve(r, g, ref, "ref");
}

/* The index and wait parameters of a watchable query, or replies 400 and returns
 * false. An index without a wait waits the longest; a wait without an index has
 * nothing to compare with and is answered at once. Neither goes with as_of. */
static bool
watch_params(struct http_req *r, long *index, long *wait)
{
	if (http_query(r, "as_of") != NULL &&
	    (http_query(r, "index") != NULL || http_query(r, "wait") != NULL)) {
		http_reply_bad(
		    r, "as_of",
		    "cannot be combined with index or wait: a past answer never changes");
		return false;
	}
	if (!api_query_long(r, "index", 0, LONG_MAX, -1, index) ||
	    !api_query_long(r, "wait", 0, WATCH_WAIT_MAX, WATCH_WAIT_MAX, wait))
		return false;
	return true;
}

/* Answers q through the watch registry (at once, or when the answer changes). */
static void
watch_query_answer(struct http_req *r, struct watch_query *q, long index, long wait)
{
	long idx = resolve(r, r->app->g, q->ref, "ref");

	if (idx < 0)
		return;
	watch_answer(r->app->watch, r, q, index, wait);
}

/* A graph query that returned NULL: out of memory is 503 (the error policy),
 * anything else a bug of ours (500). */
static void
reply_graph_error(struct http_req *r, int err)
{
	if (err == GRAPH_ENOMEM) {
		http_reply_nomem(r);
		return;
	}
	http_reply_error(r, 500, "internal", NULL, "graph query failed: %s", graph_strerror(err));
}

/* X-Cmdb-Index: the seq the answer was computed at (the as-of point, or now). */
static void
set_index(struct http_req *r)
{
	const struct history_point *p = history_point(r);

	watch_set_index(r, p != NULL ? p->seq : tailer_applied(r->app->tailer));
}

/* Replies with a query's result from g (NULL: its error), "as_of" added when as of. */
static void
reply_result(struct http_req *r, graph *g, json_t *result)
{
	if (result == NULL) {
		reply_graph_error(r, graph_error(g));
		return;
	}
	set_index(r);
	history_reply_json(r, result);
}

static void
walk(struct http_req *r, bool dependents)
{
	static const char *const allowed[] = {"depth", "types", "limit", "index",
					      "wait",  "as_of", NULL};
	struct watch_query q = {.kind = dependents ? WATCH_DEPENDENTS : WATCH_DEPENDENCIES};
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1];
	long depth, limit, index, wait, idx;
	graph *g;
	char *text;
	size_t len;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "depth", 0, DEPTH_MAX, -1, &depth) ||
	    !api_query_long(r, "limit", 1, MODEL_WALK_MAX, MODEL_WALK_DEFAULT, &limit) ||
	    !watch_params(r, &index, &wait))
		return;
	if (graph_impact_mask_parse(http_query(r, "types"), &q.mask) != 0) {
		api_reply_not_allowed(r, "types", model_edge_types, MODEL_IMPACT_TYPE_COUNT,
				      "must be a comma list of " MODEL_IMPACT_TYPES_LIST);
		return;
	}
	if (!api_path_ref(r, kind, name, q.ref))
		return;
	q.depth = (int)depth;
	q.limit = (size_t)limit;
	if (http_query(r, "as_of") == NULL) {
		watch_query_answer(r, &q, index, wait);
		return;
	}
	if ((g = history_graph(r, dependents ? api_dependents : api_dependencies)) == NULL ||
	    (idx = resolve(r, g, q.ref, "ref")) < 0)
		return;
	/* Serialised straight from the walk: the same bytes as the jansson value
	 * graph_dependents() builds, without building thousands of objects. */
	text = graph_walk_text(g, idx, dependents ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES,
			       q.depth, q.mask, q.limit, &len);
	if (text == NULL) {
		reply_graph_error(r, graph_error(g));
		return;
	}
	set_index(r);
	history_reply_raw(r, text, len);
	free(text);
}

void
api_dependents(struct http_req *r)
{
	walk(r, true);
}

void
api_dependencies(struct http_req *r)
{
	walk(r, false);
}

void
api_owners(struct http_req *r)
{
	static const char *const allowed[] = {"index", "wait", "as_of", NULL};
	struct watch_query q = {.kind = WATCH_OWNERS};
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1];
	long index, wait, idx;
	graph *g;

	if (!api_query_only(r, allowed, NULL) || !watch_params(r, &index, &wait) ||
	    !api_path_ref(r, kind, name, q.ref))
		return;
	if (http_query(r, "as_of") == NULL) {
		watch_query_answer(r, &q, index, wait);
		return;
	}
	if ((g = history_graph(r, api_owners)) == NULL || (idx = path_node(r, g)) < 0)
		return;
	reply_result(r, g, graph_owners(g, idx));
}

void
api_path(struct http_req *r)
{
	static const char *const allowed[] = {"from", "to", "as_of", NULL};
	const char *from = http_query(r, "from"), *to = http_query(r, "to");
	graph *g;
	long a, b;
	json_t *result;

	if (!api_query_only(r, allowed, NULL))
		return;
	/* Syntax first (400 before any history work), then the graph of the moment. */
	if (from == NULL || to == NULL || model_ref_parse(from, NULL, NULL) != NULL ||
	    model_ref_parse(to, NULL, NULL) != NULL)
		g = r->app->g; /* resolve() replies 400 */
	else if ((g = history_graph(r, api_path)) == NULL)
		return;
	if ((a = resolve(r, g, from, "from")) < 0 || (b = resolve(r, g, to, "to")) < 0)
		return;
	result = graph_path(g, a, b);
	if (result == NULL && graph_error(g) == GRAPH_ENOENT) {
		http_reply_error(r, 404, "no_path", json_pack("{s:s,s:s}", "from", from, "to", to),
				 "%s does not need %s (no path)", from, to);
		return;
	}
	reply_result(r, g, result);
}

json_t *
api_rootcause_unhealthy(graph *g, long max_depth, int *err)
{
	long *idx, n = graph_unhealthy(g, &idx);
	json_t *result;

	*err = n < 0 ? (int)n : n > ROOTCAUSE_FAILING_MAX ? API_TOO_MANY_FAILING : 0;
	if (*err != 0) {
		free(idx);
		return NULL;
	}
	result = graph_rootcause(g, idx, (size_t)n, (int)max_depth);
	free(idx);
	if (result == NULL)
		*err = graph_error(g);
	return result;
}

static const struct jv_field rootcause_fields[] = {
    {"failing", JV_ARRAY, false}, /* omitted: every node then down or degraded */
    {"max_depth", JV_INTEGER, false},
    {"as_of", JV_ANY, false},
    {NULL, JV_ANY, false},
};

void
api_rootcause(struct http_req *r)
{
	static const char *const no_params[] = {NULL};
	json_t *failing, *missing, *item, *md;
	long *idx = NULL;
	long max_depth = 16;
	size_t i, n;
	graph *g;

	if (!api_query_only(r, no_params, NULL) || !api_require_map(r))
		return;
	if (!api_body_fields(r, rootcause_fields))
		return;
	failing = json_object_get(r->json, "failing");
	n = json_array_size(failing);
	md = json_object_get(r->json, "max_depth");
	if (md != NULL) {
		max_depth = (long)json_integer_value(md);
		if (max_depth < 0 || max_depth > DEPTH_MAX) {
			http_reply_bad(r, "max_depth", "must be an integer from 0 to %d",
				       DEPTH_MAX);
			return;
		}
	}
	if (failing != NULL && (n == 0 || n > ROOTCAUSE_FAILING_MAX)) {
		http_reply_bad(r, "failing", "must list 1 to %d refs", ROOTCAUSE_FAILING_MAX);
		return;
	}
	if ((g = history_graph(r, api_rootcause)) == NULL)
		return;
	if (failing == NULL) {
		int err;
		json_t *result = api_rootcause_unhealthy(g, max_depth, &err);

		if (result == NULL && err == API_TOO_MANY_FAILING)
			http_reply_error(
			    r, 422, "too_many_failing",
			    json_pack("{s:i}", "limit", ROOTCAUSE_FAILING_MAX),
			    "more than %d nodes are down or degraded; name the ones to "
			    "explain in failing",
			    ROOTCAUSE_FAILING_MAX);
		else if (result == NULL)
			reply_graph_error(r, err);
		else
			reply_result(r, g, result);
		return;
	}
	idx = malloc(n * sizeof(*idx));
	missing = json_array();
	if (idx == NULL || missing == NULL) {
		free(idx);
		json_decref(missing);
		http_reply_nomem(r);
		return;
	}
	json_array_foreach(failing, i, item)
	{
		const char *ref = json_string_value(item);
		const char *why = ref ? model_ref_parse(ref, NULL, NULL) : "must be a ref string";
		char path[32];

		if (why != NULL) {
			snprintf(path, sizeof(path), "failing[%zu]", i);
			free(idx);
			json_decref(missing);
			http_reply_bad(r, path, "%s", why);
			return;
		}
		idx[i] = graph_find(g, ref);
		if (idx[i] < 0)
			json_array_append_new(missing, json_string(ref));
	}
	if (json_array_size(missing) > 0) {
		free(idx);
		http_reply_error(r, 404, "not_found", json_pack("{s:o}", "missing", missing),
				 "%zu failing node(s) not found, first %s",
				 json_array_size(missing),
				 json_string_value(json_array_get(missing, 0)));
		return;
	}
	json_decref(missing);
	reply_result(r, g, graph_rootcause(g, idx, n, (int)max_depth));
	free(idx);
}

void
api_graph(struct http_req *r)
{
	static const char *const allowed[] = {"root",  "depth", "direction", "format",
					      "index", "wait",	"as_of",     NULL};
	const char *dir = http_query(r, "direction"), *format = http_query(r, "format");
	const char *root = http_query(r, "root");
	struct watch_query q = {.kind = WATCH_GRAPH};
	long depth, index, wait, idx;
	graph *g;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "depth", 0, DEPTH_MAX, 2, &depth) || !watch_params(r, &index, &wait))
		return;
	q.direction = dir ? graph_direction_parse(dir) : GRAPH_DIR_BOTH;
	if (q.direction < 0) {
		http_reply_bad(r, "direction", "must be dependents, dependencies or both");
		return;
	}
	if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "dot") != 0) {
		http_reply_bad(r, "format", "must be json or dot");
		return;
	}
	q.depth = (int)depth;
	q.dot = format != NULL && strcmp(format, "dot") == 0;
	if (http_query(r, "as_of") == NULL || root == NULL) {
		if (resolve(r, r->app->g, root, "root") < 0)
			return;
		snprintf(q.ref, sizeof(q.ref), "%s", root); /* a valid ref fits */
		watch_answer(r->app->watch, r, &q, index, wait);
		return;
	}
	if ((g = history_graph(r, api_graph)) == NULL || (idx = resolve(r, g, root, "root")) < 0)
		return;
	if (q.dot) {
		char *dot = graph_subgraph_dot(g, idx, q.depth, q.direction);

		if (dot == NULL) {
			reply_graph_error(r, graph_error(g));
			return;
		}
		set_index(r);
		history_reply_dot(r, dot);
		free(dot);
		return;
	}
	reply_result(r, g, graph_subgraph(g, idx, q.depth, q.direction));
}
