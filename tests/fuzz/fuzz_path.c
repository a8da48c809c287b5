/*
 * fuzz_path.c — the router (cmdbd/router.c): a request target taken apart as
 * handle_request() does it (libevent's URI parser, as evhttp calls it for a request
 * line; router_split_path(); router_match() for each method), then the route's
 * parameters and Allow list.
 *
 * Checks: segments are what their percent-encoding says (re-encoding and splitting
 * again gives the same), a match's parameters are non-empty segments, a 405's Allow
 * list is non-empty and fits, and matching is the same for GET and HEAD.
 */
#include <event2/http.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "router.h"
#include "fuzz.h"

static const enum evhttp_cmd_type methods[] = {
    EVHTTP_REQ_GET,    EVHTTP_REQ_HEAD,	   EVHTTP_REQ_PUT,   EVHTTP_REQ_POST,
    EVHTTP_REQ_DELETE, EVHTTP_REQ_OPTIONS, EVHTTP_REQ_PATCH,
};

static void
free_segs(char **segs, int n)
{
	for (int i = 0; i < n; i++)
		free(segs[i]);
}

/* "/" + each segment percent-encoded byte by byte: a path that splits the same. */
static char *
encode(char **segs, int n)
{
	size_t total = 2;
	char *out, *o;

	for (int i = 0; i < n; i++)
		total += 1 + 3 * strlen(segs[i]);
	o = out = malloc(total);
	CHECK(out != NULL);
	*o = '\0';
	for (int i = 0; i < n; i++) {
		*o++ = '/';
		for (const char *p = segs[i]; *p; p++, o += 3)
			snprintf(o, 4, "%%%02X", (unsigned char)*p);
	}
	/* "/a/" is one segment, "/a//" two: an empty last segment needs its slash. */
	if (n == 0 || segs[n - 1][0] == '\0')
		*o++ = '/';
	*o = '\0';
	return out;
}

static void
check_route(const char *const *segs, int n)
{
	enum router_result first = ROUTER_NOT_FOUND;

	for (size_t m = 0; m < sizeof(methods) / sizeof(methods[0]); m++) {
		const struct route *rt = NULL;
		enum router_result rr = router_match(methods[m], segs, n, &rt);
		char allow[128];

		if (m == 0)
			first = rr;
		if (methods[m] == EVHTTP_REQ_HEAD)
			CHECK(rr == first);
		/* Whether the path exists does not depend on the method. */
		CHECK((rr == ROUTER_NOT_FOUND) == (first == ROUTER_NOT_FOUND));
		if (rr == ROUTER_NOT_FOUND)
			continue;
		CHECK(rt != NULL && router_route_name(rt) != NULL);
		for (int i = 0; i < 3; i++) {
			int idx = router_param_segment(rt, i);

			CHECK(idx < n);
			if (idx >= 0)
				CHECK(segs[idx][0] != '\0');
		}
		router_allowed(rt, allow, sizeof(allow));
		CHECK(allow[0] != '\0' && strlen(allow) < sizeof(allow));
		if (rr == ROUTER_OK)
			CHECK(router_handler(rt) != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *target = malloc(size + 1);
	struct evhttp_uri *uri;
	char *segs[HTTP_MAX_SEGS], *segs2[HTTP_MAX_SEGS];
	const char *path;
	int n = 0, n2 = 0, rc;

	if (target == NULL)
		return 0;
	memcpy(target, data, size);
	target[size] = '\0';
	/* evhttp parses a request line's target this way; handle_request() takes its path. */
	uri = evhttp_uri_parse_with_flags(target, EVHTTP_URI_NONCONFORMANT);
	path = uri ? evhttp_uri_get_path(uri) : NULL;
	if (path == NULL || *path == '\0')
		path = "/";

	rc = router_split_path(path, segs, HTTP_MAX_SEGS, &n);
	CHECK(n >= 0 && n <= HTTP_MAX_SEGS);
	if (rc == 0) {
		char *again = encode(segs, n);

		CHECK(router_split_path(again, segs2, HTTP_MAX_SEGS, &n2) == 0 && n2 == n);
		for (int i = 0; i < n; i++)
			CHECK(strcmp(segs[i], segs2[i]) == 0);
		free_segs(segs2, n2);
		free(again);
		check_route((const char *const *)segs, n);
	}
	free_segs(segs, n);

	/* The raw input as a path too: the splitter must not trust evhttp's checks. */
	n = 0;
	router_split_path(target, segs, HTTP_MAX_SEGS, &n);
	CHECK(n >= 0 && n <= HTTP_MAX_SEGS);
	free_segs(segs, n);

	if (uri != NULL)
		evhttp_uri_free(uri);
	free(target);
	return 0;
}
