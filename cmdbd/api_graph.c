/*
 * api_graph.c — the graph queries: dependents, dependencies, owners, path,
 * rootcause and subgraph (json or Graphviz dot).
 *
 * All of them are answered from the in-memory graph (graph.h) on the loop, with
 * no database work on the request path. With as_of (SPEC §5) they answer from the
 * graph of that moment (history.h): the handler is run again once it is there.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "history.h"
#include "jv.h"
#include "model.h"
#include "server.h"

#define WALK_LIMIT_DEFAULT 1000
#define WALK_LIMIT_MAX 100000
#define DEPTH_MAX 100000
#define ROOTCAUSE_FAILING_MAX 10000

/* Resolves a ref to a live graph node, or replies 400/404 and returns -1. */
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

/* The {kind}/{name} of the path as a graph node, or replies and returns -1. */
static long
path_node(struct http_req *r, graph *g)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], ref[MODEL_REF_MAX + 2];

	if (!api_path_ref(r, kind, name, ref))
		return -1;
	return resolve(r, g, ref, "ref");
}

static void
reply_result(struct http_req *r, json_t *result)
{
	history_reply_json(r, result); /* 500 when NULL; "as_of" added when as of */
}

static void
walk(struct http_req *r, bool dependents)
{
	static const char *const allowed[] = {"depth", "types", "limit", "as_of", NULL};
	graph *g;
	long idx, depth, limit;
	unsigned mask;
	char *text;
	size_t len;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "depth", 0, DEPTH_MAX, -1, &depth) ||
	    !api_query_long(r, "limit", 1, WALK_LIMIT_MAX, WALK_LIMIT_DEFAULT, &limit))
		return;
	if (graph_impact_mask_parse(http_query(r, "types"), &mask) != 0) {
		http_reply_error(r, 400, "bad_request",
				 json_pack("{s:s,s:[ssss]}", "field", "types", "allowed",
					   "depends_on", "runs_on", "connects_to", "part_of"),
				 "types: must be a comma list of depends_on, runs_on, "
				 "connects_to, part_of");
		return;
	}
	if ((g = history_graph(r, dependents ? api_dependents : api_dependencies)) == NULL ||
	    (idx = path_node(r, g)) < 0)
		return;
	/* Serialised straight from the walk: the same bytes as the jansson value
	 * graph_dependents() builds, without building thousands of objects. */
	text = graph_walk_text(g, idx, dependents ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES,
			       (int)depth, mask, (size_t)limit, &len);
	if (text == NULL) {
		http_reply_error(r, 500, "internal", NULL, "graph query failed: %s",
				 strerror(errno));
		return;
	}
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
	static const char *const allowed[] = {"as_of", NULL};
	graph *g;
	long idx;

	if (!api_query_only(r, allowed, NULL) || (g = history_graph(r, api_owners)) == NULL ||
	    (idx = path_node(r, g)) < 0)
		return;
	reply_result(r, graph_owners(g, idx));
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
		g = server_graph(); /* resolve() replies 400 */
	else if ((g = history_graph(r, api_path)) == NULL)
		return;
	if ((a = resolve(r, g, from, "from")) < 0 || (b = resolve(r, g, to, "to")) < 0)
		return;
	result = graph_path(g, a, b);
	if (result == NULL && errno == ENOENT) {
		http_reply_error(r, 404, "no_path", json_pack("{s:s,s:s}", "from", from, "to", to),
				 "%s does not need %s (no path)", from, to);
		return;
	}
	reply_result(r, result);
}

static const struct jv_field rootcause_fields[] = {
    {"failing", JV_ARRAY, true},
    {"max_depth", JV_INTEGER, false},
    {"as_of", JV_ANY, false},
    {NULL, JV_ANY, false},
};

void
api_rootcause(struct http_req *r)
{
	static const char *const no_params[] = {NULL};
	json_t *failing, *missing, *item, *md;
	graph *g;
	long *idx = NULL;
	long max_depth = 16;
	size_t i, n;

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
	if (n == 0 || n > ROOTCAUSE_FAILING_MAX) {
		http_reply_bad(r, "failing", "must list 1 to %d refs", ROOTCAUSE_FAILING_MAX);
		return;
	}
	if ((g = history_graph(r, api_rootcause)) == NULL)
		return;
	idx = malloc(n * sizeof(*idx));
	missing = json_array();
	if (idx == NULL || missing == NULL) {
		free(idx);
		json_decref(missing);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
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
	reply_result(r, graph_rootcause(g, idx, n, (int)max_depth));
	free(idx);
}

void
api_graph(struct http_req *r)
{
	static const char *const allowed[] = {"root",	"depth", "direction",
					      "format", "as_of", NULL};
	const char *dir = http_query(r, "direction"), *format = http_query(r, "format");
	graph *g;
	long root, depth;
	int direction;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "depth", 0, DEPTH_MAX, 2, &depth))
		return;
	direction = dir ? graph_direction_parse(dir) : GRAPH_DIR_BOTH;
	if (direction < 0) {
		http_reply_bad(r, "direction", "must be dependents, dependencies or both");
		return;
	}
	if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "dot") != 0) {
		http_reply_bad(r, "format", "must be json or dot");
		return;
	}
	if (http_query(r, "root") == NULL)
		g = server_graph(); /* resolve() replies 400 */
	else if ((g = history_graph(r, api_graph)) == NULL)
		return;
	if ((root = resolve(r, g, http_query(r, "root"), "root")) < 0)
		return;
	if (format != NULL && strcmp(format, "dot") == 0) {
		char *dot = graph_subgraph_dot(g, root, (int)depth, direction);

		if (dot == NULL) {
			http_reply_error(r, 500, "internal", NULL, "graph query failed");
			return;
		}
		history_reply_dot(r, dot);
		free(dot);
		return;
	}
	reply_result(r, graph_subgraph(g, root, (int)depth, direction));
}
