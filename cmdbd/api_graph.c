/*
 * api_graph.c — the graph queries: dependents, dependencies, owners, path,
 * rootcause and subgraph (json or Graphviz dot).
 *
 * All of them are answered from the in-memory graph (graph.h) on the loop, with
 * no database work on the request path.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jv.h"
#include "model.h"
#include "server.h"

#define DEPTH_MAX 100000
#define ROOTCAUSE_FAILING_MAX 10000

/* Resolves a ref to a live graph node, or replies 400/404 and returns -1. */
static long
resolve(struct http_req *r, const char *ref, const char *field)
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
	idx = graph_find(server_graph(), ref);
	if (idx < 0)
		http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", ref),
				 "node %s not found", ref);
	return idx;
}

/* The {kind}/{name} of the path as a graph node, or replies and returns -1. */
static long
path_node(struct http_req *r)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], ref[MODEL_REF_MAX + 2];

	if (!api_path_ref(r, kind, name, ref))
		return -1;
	return resolve(r, ref, "ref");
}

static void
reply_result(struct http_req *r, json_t *result)
{
	if (result == NULL) {
		http_reply_error(r, 500, "internal", NULL, "graph query failed: %s",
				 strerror(errno));
		return;
	}
	http_reply_json(r, 200, result);
}

static void
walk(struct http_req *r, bool dependents)
{
	static const char *const allowed[] = {"depth", "types", "limit", NULL};
	long idx, depth, limit;
	unsigned mask;
	char *text;
	size_t len;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "depth", 0, DEPTH_MAX, -1, &depth) ||
	    !api_query_long(r, "limit", 1, MODEL_WALK_MAX, MODEL_WALK_DEFAULT, &limit))
		return;
	if (graph_impact_mask_parse(http_query(r, "types"), &mask) != 0) {
		api_reply_not_allowed(r, "types", model_edge_types, MODEL_IMPACT_TYPE_COUNT,
				      "must be a comma list of " MODEL_IMPACT_TYPES_LIST);
		return;
	}
	if ((idx = path_node(r)) < 0)
		return;
	/* Serialised straight from the walk: the same bytes as the jansson value
	 * graph_dependents() builds, without building thousands of objects. */
	text = graph_walk_text(server_graph(), idx,
			       dependents ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES,
			       (int)depth, mask, (size_t)limit, &len);
	if (text == NULL) {
		http_reply_error(r, 500, "internal", NULL, "graph query failed: %s",
				 strerror(errno));
		return;
	}
	http_reply_raw(r, 200, text, len);
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
	static const char *const no_params[] = {NULL};
	long idx;

	if (!api_query_only(r, no_params, NULL) || (idx = path_node(r)) < 0)
		return;
	reply_result(r, graph_owners(server_graph(), idx));
}

void
api_path(struct http_req *r)
{
	static const char *const allowed[] = {"from", "to", NULL};
	const char *from = http_query(r, "from"), *to = http_query(r, "to");
	long a, b;
	json_t *result;

	if (!api_query_only(r, allowed, NULL) || (a = resolve(r, from, "from")) < 0 ||
	    (b = resolve(r, to, "to")) < 0)
		return;
	result = graph_path(server_graph(), a, b);
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
		idx[i] = graph_find(server_graph(), ref);
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
	reply_result(r, graph_rootcause(server_graph(), idx, n, (int)max_depth));
	free(idx);
}

void
api_graph(struct http_req *r)
{
	static const char *const allowed[] = {"root", "depth", "direction", "format", NULL};
	const char *dir = http_query(r, "direction"), *format = http_query(r, "format");
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
	if ((root = resolve(r, http_query(r, "root"), "root")) < 0)
		return;
	if (format != NULL && strcmp(format, "dot") == 0) {
		char *dot = graph_subgraph_dot(server_graph(), root, (int)depth, direction);

		if (dot == NULL) {
			http_reply_error(r, 500, "internal", NULL, "graph query failed");
			return;
		}
		http_reply_text(r, 200, "text/vnd.graphviz; charset=utf-8", dot, strlen(dot));
		free(dot);
		return;
	}
	reply_result(r, graph_subgraph(server_graph(), root, (int)depth, direction));
}
