/*
 * check_router.c — the route table (cmdbd/router.c): matching on path segments,
 * parameters, 404 vs 405 with the Allow list, HEAD served by GET routes, the scope
 * and JSON-body flags of each route, the names /metrics uses, and the splitting of a
 * raw request path into decoded segments (router_split_path).
 *
 * Paths are written as strings and split on '/' here (no decoding: the router sees
 * already-decoded segments). The handlers are never called.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

#define MAX_SEGS 16

/* Splits "/a/b/c" into segments inside buf; returns the count. "/" gives 0. */
static int
split(const char *path, char *buf, size_t size, const char *segs[MAX_SEGS])
{
	int n = 0;
	char *p;

	ck_assert_uint_lt(strlen(path), size);
	strcpy(buf, path);
	p = buf[0] == '/' ? buf + 1 : buf;
	if (*p == '\0')
		return 0;
	for (;;) {
		char *slash = strchr(p, '/');

		ck_assert_int_lt(n, MAX_SEGS);
		segs[n++] = p;
		if (slash == NULL)
			break;
		*slash = '\0';
		p = slash + 1;
	}
	return n;
}

static enum router_result
match(enum evhttp_cmd_type m, const char *path, const struct route **rt)
{
	char buf[512];
	const char *segs[MAX_SEGS];
	int n = split(path, buf, sizeof(buf), segs);

	*rt = NULL;
	return router_match(m, segs, n, rt);
}

#define GET EVHTTP_REQ_GET
#define HEAD EVHTTP_REQ_HEAD
#define PUT EVHTTP_REQ_PUT
#define POST EVHTTP_REQ_POST
#define DEL EVHTTP_REQ_DELETE

/* Every route the SPEC names, and the admin verification (DESIGN.md), with its scope
 * and whether it takes a JSON body. */
static const struct {
	enum evhttp_cmd_type method;
	const char *path;
	const char *name;
	enum auth_scope scope;
	bool json;
	int params; /* parameter count (kind and name: segments 2 and 3; one: segment 2) */
} ok_routes[] = {
    {GET, "/healthz", "healthz", AUTH_NONE, false, 0},
    {GET, "/readyz", "readyz", AUTH_NONE, false, 0},
    {GET, "/metrics", "metrics", AUTH_NONE, false, 0},
    {GET, "/v1/nodes", "nodes.list", AUTH_READ, false, 0},
    {GET, "/v1/nodes/service/billing-api", "node.get", AUTH_READ, false, 2},
    {HEAD, "/v1/nodes/service/billing-api", "node.get", AUTH_READ, false, 2},
    {PUT, "/v1/nodes/service/billing-api", "node.put", AUTH_WRITE, true, 2},
    {DEL, "/v1/nodes/service/billing-api", "node.delete", AUTH_WRITE, false, 2},
    {GET, "/v1/nodes/host/web-01/edges", "node.edges", AUTH_READ, false, 2},
    {PUT, "/v1/nodes/host/web-01/health", "node.health", AUTH_WRITE, true, 2},
    {GET, "/v1/nodes/host/web-01/dependents", "node.dependents", AUTH_READ, false, 2},
    {GET, "/v1/nodes/host/web-01/dependencies", "node.dependencies", AUTH_READ, false, 2},
    {GET, "/v1/nodes/host/web-01/owners", "node.owners", AUTH_READ, false, 2},
    {HEAD, "/v1/nodes/host/web-01/owners", "node.owners", AUTH_READ, false, 2},
    {PUT, "/v1/edges", "edge.put", AUTH_WRITE, true, 0},
    {DEL, "/v1/edges", "edge.delete", AUTH_WRITE, false, 0},
    {POST, "/v1/manifests", "manifest.post", AUTH_WRITE, true, 0},
    {GET, "/v1/deployments", "deployments.list", AUTH_READ, false, 0},
    {GET, "/v1/changes", "changes", AUTH_READ, false, 0},
    {GET, "/v1/path", "path", AUTH_READ, false, 0},
    {POST, "/v1/rootcause", "rootcause", AUTH_READ, true, 0}, /* SPEC: read scope */
    {GET, "/v1/graph", "graph", AUTH_READ, false, 0},
    {GET, "/v1/admin/verify", "admin.verify", AUTH_ADMIN, false, 0},
    {GET, "/v1/sources", "sources.list", AUTH_READ, false, 0}, /* SPEC §5 */
    {GET, "/v1/drift", "drift", AUTH_READ, false, 0},
    {GET, "/v1/diff", "diff", AUTH_READ, false, 0},
    {GET, "/v1/deployments/0b8e6a0e-8a34-4f8e-9d57-1c2f3a4b5c6d/diff", "deployment.diff", AUTH_READ,
     false, 1},
    {HEAD, "/healthz", "healthz", AUTH_NONE, false, 0},
    /* SPEC §8: the web application's files need no token. (The server splits /ui/
     * as /ui: a trailing slash adds no segment; api_ui.c redirects /ui to /ui/.) */
    {GET, "/ui", "ui.index", AUTH_NONE, false, 0},
    {HEAD, "/ui", "ui.index", AUTH_NONE, false, 0},
    /* A decoded name may look like a keyword; it is still a parameter. */
    {GET, "/v1/nodes/nodes/edges", "node.get", AUTH_READ, false, 2},
    {GET, "/v1/nodes/service/owners/owners", "node.owners", AUTH_READ, false, 2},
};

START_TEST(test_ok_table)
{
	const struct route *rt;
	enum router_result res = match(ok_routes[_i].method, ok_routes[_i].path, &rt);

	ck_assert_msg(res == ROUTER_OK, "%s: result %d", ok_routes[_i].path, res);
	ck_assert_ptr_nonnull(rt);
	ck_assert_str_eq(router_route_name(rt), ok_routes[_i].name);
	ck_assert_int_eq(router_scope(rt), ok_routes[_i].scope);
	ck_assert_int_eq(router_takes_json(rt), ok_routes[_i].json);
	ck_assert_ptr_nonnull(router_handler(rt));
	if (ok_routes[_i].params == 2) {
		ck_assert_int_eq(router_param_segment(rt, 0), 2);
		ck_assert_int_eq(router_param_segment(rt, 1), 3);
	} else if (ok_routes[_i].params == 1) {
		ck_assert_int_eq(router_param_segment(rt, 0), 2);
	} else {
		ck_assert_int_eq(router_param_segment(rt, 0), -1);
	}
	ck_assert_int_eq(router_param_segment(rt, ok_routes[_i].params), -1);
}
END_TEST

/* The path exists with other methods: 405, and Allow lists them in table order. */
static const struct {
	enum evhttp_cmd_type method;
	const char *path;
	const char *allow;
} bad_methods[] = {
    {POST, "/v1/nodes/service/x", "GET, HEAD, PUT, DELETE"},
    {EVHTTP_REQ_PATCH, "/v1/nodes/service/x", "GET, HEAD, PUT, DELETE"},
    {EVHTTP_REQ_OPTIONS, "/v1/nodes/service/x", "GET, HEAD, PUT, DELETE"},
    {GET, "/v1/nodes/service/x/health", "PUT"},
    {HEAD, "/v1/nodes/service/x/health", "PUT"},
    {DEL, "/v1/nodes/service/x/owners", "GET, HEAD"},
    {GET, "/v1/edges", "PUT, DELETE"},
    {POST, "/v1/edges", "PUT, DELETE"},
    {GET, "/v1/manifests", "POST"},
    {POST, "/ui", "GET, HEAD"},
    {PUT, "/ui/0123456789abcdef/app.js", "GET, HEAD"},
    {PUT, "/v1/manifests", "POST"},
    {GET, "/v1/rootcause", "POST"},
    {POST, "/v1/nodes", "GET, HEAD"},
    {DEL, "/v1/changes", "GET, HEAD"},
    {POST, "/healthz", "GET, HEAD"},
    {PUT, "/metrics", "GET, HEAD"},
};

START_TEST(test_bad_method_table)
{
	const struct route *rt;
	char allow[128];
	enum router_result res = match(bad_methods[_i].method, bad_methods[_i].path, &rt);

	ck_assert_msg(res == ROUTER_BAD_METHOD, "%s: result %d", bad_methods[_i].path, res);
	ck_assert_ptr_nonnull(rt);
	router_allowed(rt, allow, sizeof(allow));
	ck_assert_str_eq(allow, bad_methods[_i].allow);
}
END_TEST

static const char *const not_found[] = {
    "/",
    "/v1",
    "/v1/",
    "/v2/nodes",
    "/V1/nodes",
    "/v1/Nodes",
    "/healthz/x",
    "/v1/nodes/service",
    "/v1/nodes/service/",   /* empty name */
    "/v1/nodes//x",	    /* empty kind */
    "/v1/nodes/service//x", /* an extra segment */
    "/v1/nodes/service/x/",
    "/v1/nodes/service/x/unknown",
    "/v1/nodes/service/x/owners/y",
    "/v1/edges/x",
    "/nodes",
    "/v1/a/b/c/d/e/f/g/h/i/j/k",
    "/x/x/x/x/x/x/x/x",
    "/ui/app.js", /* assets live under the build id */
    "/ui/a/b/c",
};

START_TEST(test_not_found_table)
{
	const struct route *rt;
	enum evhttp_cmd_type methods[] = {GET, HEAD, PUT, POST, DEL};

	for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++)
		ck_assert_msg(match(methods[m], not_found[_i], &rt) == ROUTER_NOT_FOUND,
			      "%s (method %d) matched", not_found[_i], methods[m]);
}
END_TEST

/* A short buffer holds a cut, terminated Allow list. */
START_TEST(test_allowed_small_buffer)
{
	const struct route *rt;
	char allow[8];

	memset(allow, 'Z', sizeof(allow));
	ck_assert_int_eq(match(POST, "/v1/nodes/k/n", &rt), ROUTER_BAD_METHOD);
	router_allowed(rt, allow, 6);
	ck_assert_str_eq(allow, "GET, ");
	ck_assert_int_eq(allow[6], 'Z');
	router_allowed(rt, allow, 1);
	ck_assert_str_eq(allow, "");
}
END_TEST

/* router_split_path(): the raw request path into decoded segments. */
static const struct {
	const char *path;
	int rc;
	int n;
	const char *segs[4];
} splits[] = {
    {"/", 0, 0, {NULL}},
    {"/v1/nodes", 0, 2, {"v1", "nodes"}},
    {"/v1/nodes/", 0, 2, {"v1", "nodes"}}, /* a trailing slash adds nothing */
    {"/v1//nodes", 0, 3, {"v1", "", "nodes"}},
    {"//", 0, 1, {""}},
    {"/a%2Fb/pg%3A5432", 0, 2, {"a/b", "pg:5432"}},
    {"/caf%C3%A9", 0, 1, {"caf\xc3\xa9"}},
    {"/a/b/c/d/e/f/g/h", 0, 8, {"a", "b", "c", "d"}},
    {"/a/b/c/d/e/f/g/h/", 0, 8, {"a", "b", "c", "d"}},
    {"/a/b/c/d/e/f/g/h/i", 1, 8, {"a", "b", "c", "d"}}, /* too deep: no route */
    {"", -1, 0, {NULL}},
    {"v1/nodes", -1, 0, {NULL}},
    {"/v1/%zz", -1, 1, {"v1"}},
    {"/v1/a%00b", -1, 1, {"v1"}},
    {"/%", -1, 0, {NULL}},
};

START_TEST(test_split_path_table)
{
	char *segs[8];
	int n = 0, rc = router_split_path(splits[_i].path, segs, 8, &n);

	ck_assert_msg(rc == splits[_i].rc, "\"%s\": rc %d", splits[_i].path, rc);
	ck_assert_int_eq(n, splits[_i].n); /* segments made so far are the caller's */
	for (int i = 0; i < n; i++) {
		if (i < 4 && splits[_i].segs[i] != NULL)
			ck_assert_str_eq(segs[i], splits[_i].segs[i]);
		free(segs[i]);
	}
}
END_TEST

/* /ui/{build}/{file}: no token, and its two parameters are segments 1 and 2. */
START_TEST(test_ui_asset)
{
	const struct route *rt;

	ck_assert_int_eq(match(GET, "/ui/0123456789abcdef/app.js", &rt), ROUTER_OK);
	ck_assert_str_eq(router_route_name(rt), "ui.asset");
	ck_assert_int_eq(router_scope(rt), AUTH_NONE);
	ck_assert(!router_takes_json(rt));
	ck_assert_int_eq(router_param_segment(rt, 0), 1);
	ck_assert_int_eq(router_param_segment(rt, 1), 2);
	ck_assert_int_eq(router_param_segment(rt, 2), -1);
}
END_TEST

/* Names are unique and stable for /metrics; every route has a handler. */
START_TEST(test_names)
{
	size_t n = router_count();

	ck_assert_uint_gt(n, 0);
	for (size_t i = 0; i < n; i++) {
		ck_assert_ptr_nonnull(router_name_at(i));
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(router_name_at(i), router_name_at(j)) != 0,
				      "route name %s twice", router_name_at(i));
	}
	ck_assert_ptr_null(router_name_at(n));
	ck_assert_ptr_null(router_name_at((size_t)-1));
	/* Every tested route name is in the table. */
	for (size_t r = 0; r < sizeof(ok_routes) / sizeof(ok_routes[0]); r++) {
		bool found = false;

		for (size_t i = 0; i < n; i++)
			found = found || strcmp(router_name_at(i), ok_routes[r].name) == 0;
		ck_assert_msg(found, "%s not listed", ok_routes[r].name);
	}
	ck_assert_int_eq(router_param_segment(NULL, 0), -1);
}
END_TEST

Suite *
suite_router(void)
{
	Suite *s = suite_create("router");
	TCase *tc = tcase_create("unit");

#define N(a) (int)(sizeof(a) / sizeof((a)[0]))
	tcase_add_loop_test(tc, test_ok_table, 0, N(ok_routes));
	tcase_add_loop_test(tc, test_bad_method_table, 0, N(bad_methods));
	tcase_add_loop_test(tc, test_not_found_table, 0, N(not_found));
	tcase_add_test(tc, test_allowed_small_buffer);
	tcase_add_test(tc, test_names);
	tcase_add_loop_test(tc, test_split_path_table, 0, N(splits));
	tcase_add_test(tc, test_ui_asset);
#undef N
	suite_add_tcase(s, tc);
	return s;
}
