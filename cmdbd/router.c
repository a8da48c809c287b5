/*
 * router.c — the route table and its matcher (see router.h).
 *
 * Patterns are segment lists; "*" matches any one segment and is a parameter.
 * The table is small and static: a linear scan is faster than anything cleverer.
 */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "api.h"
#include "model.h"

#define MAX_PATTERN 6

struct route {
	enum evhttp_cmd_type method;
	const char *name;
	const char *pattern[MAX_PATTERN + 1]; /* NULL-terminated */
	route_fn fn;
	enum auth_scope scope;
	/* Takes a JSON object body: true (parsed before the handler runs), or
	 * JSON_LATE (parsed by the handler itself, http_parse_json, after a look at the
	 * raw bytes: an identical manifest re-post is known by its bytes, noop.h). */
	unsigned char json;
};

#define JSON_LATE 2

#define GET EVHTTP_REQ_GET
#define PUT EVHTTP_REQ_PUT
#define POST EVHTTP_REQ_POST
#define DEL EVHTTP_REQ_DELETE

static const struct route routes[] = {
    {GET, "healthz", {"healthz"}, api_healthz, AUTH_NONE, false},
    {GET, "readyz", {"readyz"}, api_readyz, AUTH_NONE, false},
    {GET, "metrics", {"metrics"}, api_metrics, AUTH_NONE, false},
    {GET, "nodes.list", {"v1", "nodes"}, api_node_list, AUTH_READ, false},
    {GET, "node.get", {"v1", "nodes", "*", "*"}, api_node_get, AUTH_READ, false},
    {PUT, "node.put", {"v1", "nodes", "*", "*"}, api_node_put, AUTH_WRITE, true},
    {DEL, "node.delete", {"v1", "nodes", "*", "*"}, api_node_delete, AUTH_WRITE, false},
    {GET, "node.edges", {"v1", "nodes", "*", "*", "edges"}, api_node_edges, AUTH_READ, false},
    {PUT, "node.health", {"v1", "nodes", "*", "*", "health"}, api_node_health, AUTH_WRITE, true},
    {GET,
     "node.dependents",
     {"v1", "nodes", "*", "*", "dependents"},
     api_dependents,
     AUTH_READ,
     false},
    {GET,
     "node.dependencies",
     {"v1", "nodes", "*", "*", "dependencies"},
     api_dependencies,
     AUTH_READ,
     false},
    {GET, "node.owners", {"v1", "nodes", "*", "*", "owners"}, api_owners, AUTH_READ, false},
    {PUT, "edge.put", {"v1", "edges"}, api_edge_put, AUTH_WRITE, true},
    {DEL, "edge.delete", {"v1", "edges"}, api_edge_delete, AUTH_WRITE, false},
    {POST, "manifest.post", {"v1", "manifests"}, api_manifest_post, AUTH_WRITE, JSON_LATE},
    {GET, "deployments.list", {"v1", "deployments"}, api_deployments, AUTH_READ, false},
    {GET,
     "deployment.diff",
     {"v1", "deployments", "*", "diff"},
     api_deployment_diff,
     AUTH_READ,
     false},
    {GET, "diff", {"v1", "diff"}, api_diff, AUTH_READ, false},
    {GET, "changes", {"v1", "changes"}, api_changes, AUTH_READ, false},
    {GET, "path", {"v1", "path"}, api_path, AUTH_READ, false},
    {POST, "rootcause", {"v1", "rootcause"}, api_rootcause, AUTH_READ, true},
    {GET, "graph", {"v1", "graph"}, api_graph, AUTH_READ, false},
    {GET, "admin.verify", {"v1", "admin", "verify"}, api_admin_verify, AUTH_ADMIN, false},
    {GET, "sources.list", {"v1", "sources"}, api_sources, AUTH_READ, false},
    {GET, "drift", {"v1", "drift"}, api_drift, AUTH_READ, false},
    {POST,
     "integrations.alertmanager",
     {"v1", "integrations", "alertmanager"},
     api_alertmanager,
     AUTH_WRITE,
     true},
    /* The web application (api_ui.c): its files need no token, its API calls do. */
    {GET, "ui.index", {"ui"}, api_ui_index, AUTH_NONE, false},
    {GET, "ui.asset", {"ui", "*", "*"}, api_ui_asset, AUTH_NONE, false},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

int
router_split_path(const char *path, char **segs, int max, int *nsegs)
{
	const char *p = path;

	if (*p != '/')
		return -1;
	while (*p == '/') {
		const char *start = ++p, *end = strchr(start, '/');
		size_t len = end ? (size_t)(end - start) : strlen(start);

		if (len == 0 && end == NULL)
			break; /* trailing slash */
		if (*nsegs >= max)
			return 1; /* too deep: no route has that many segments */
		segs[*nsegs] = model_percent_decode(start, len, NULL);
		if (segs[*nsegs] == NULL)
			return -1;
		(*nsegs)++;
		p = start + len;
	}
	return 0;
}

static bool
path_matches(const struct route *rt, const char *const *segs, int nsegs)
{
	int i;

	for (i = 0; i < nsegs; i++) {
		if (rt->pattern[i] == NULL)
			return false;
		if (strcmp(rt->pattern[i], "*") == 0) {
			if (segs[i][0] == '\0')
				return false;
		} else if (strcmp(rt->pattern[i], segs[i]) != 0) {
			return false;
		}
	}
	return rt->pattern[i] == NULL;
}

static bool
same_pattern(const struct route *a, const struct route *b)
{
	for (int i = 0; i <= MAX_PATTERN; i++) {
		if (a->pattern[i] == NULL || b->pattern[i] == NULL)
			return a->pattern[i] == b->pattern[i];
		if (strcmp(a->pattern[i], b->pattern[i]) != 0)
			return false;
	}
	return true;
}

enum router_result
router_match(enum evhttp_cmd_type method, const char *const *segs, int nsegs,
	     const struct route **out)
{
	const struct route *path_hit = NULL;

	if (method == EVHTTP_REQ_HEAD)
		method = EVHTTP_REQ_GET;
	for (size_t i = 0; i < NROUTES; i++) {
		if (!path_matches(&routes[i], segs, nsegs))
			continue;
		if (routes[i].method == method) {
			*out = &routes[i];
			return ROUTER_OK;
		}
		if (path_hit == NULL)
			path_hit = &routes[i];
	}
	if (path_hit != NULL) {
		*out = path_hit;
		return ROUTER_BAD_METHOD;
	}
	return ROUTER_NOT_FOUND;
}

const char *
router_route_name(const struct route *rt)
{
	return rt->name;
}

route_fn
router_handler(const struct route *rt)
{
	return rt->fn;
}

enum auth_scope
router_scope(const struct route *rt)
{
	return rt->scope;
}

bool
router_takes_json(const struct route *rt)
{
	return rt->json != 0;
}

bool
router_parses_json_late(const struct route *rt)
{
	return rt->json == JSON_LATE;
}

int
router_param_segment(const struct route *rt, int i)
{
	int n = 0;

	if (rt == NULL)
		return -1;
	for (int s = 0; rt->pattern[s] != NULL; s++)
		if (strcmp(rt->pattern[s], "*") == 0 && n++ == i)
			return s;
	return -1;
}

static const char *
method_text(enum evhttp_cmd_type m)
{
	switch (m) {
	case EVHTTP_REQ_GET:
		return "GET, HEAD";
	case EVHTTP_REQ_PUT:
		return "PUT";
	case EVHTTP_REQ_POST:
		return "POST";
	case EVHTTP_REQ_DELETE:
		return "DELETE";
	default:
		return "";
	}
}

void
router_allowed(const struct route *rt, char *buf, size_t size)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NROUTES && n < size; i++)
		if (same_pattern(rt, &routes[i]))
			n += (size_t)snprintf(buf + n, size - n, "%s%s", n ? ", " : "",
					      method_text(routes[i].method));
}

size_t
router_count(void)
{
	return NROUTES;
}

const char *
router_name_at(size_t i)
{
	return i < NROUTES ? routes[i].name : NULL;
}
