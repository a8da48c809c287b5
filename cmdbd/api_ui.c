/*
 * api_ui.c — GET /ui/: the web application (SPEC §8), no token needed for its files.
 *
 * The files are compiled into the binary (ui_assets.h), so a cmdbd serves the page
 * that matches its API whatever is installed beside it, and nothing is read from
 * disk on the request path. URLs:
 *
 *   /ui         308 to /ui/ (the page's links are relative to the directory)
 *   /ui/        index.html, revalidated every time (no-cache + ETag → 304)
 *   /ui/ID/F    asset F of build ID: immutable, cached for a year; another build's
 *               ID is a 404, never a file with other contents under an old name
 *
 * Every answer carries a Content-Security-Policy that allows only what the page does:
 * its own scripts, styles and API calls, data: images, no framing, no inline code, no
 * plugins or forms, and Trusted Types with no policy (so no string ever becomes HTML).
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "ui_assets.h"

#define UI_CSP                                                                                     \
	"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "          \
	"connect-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'; "        \
	"require-trusted-types-for 'script'; trusted-types 'none'"

static const struct ui_asset *
find_asset(const char *name)
{
	for (size_t i = 0; i < ui_assets_count; i++)
		if (strcmp(ui_assets[i].name, name) == 0)
			return &ui_assets[i];
	return NULL;
}

static void
serve(struct http_req *r, const struct ui_asset *a, const char *cache_control)
{
	const char *inm = http_header(r, "If-None-Match");
	char etag[40];

	snprintf(etag, sizeof(etag), "\"%s\"", ui_build_id);
	http_set_header(r, "Cache-Control", cache_control);
	http_set_header(r, "ETag", etag);
	http_set_header(r, "Content-Security-Policy", UI_CSP);
	http_set_header(r, "X-Content-Type-Options", "nosniff");
	http_set_header(r, "Referrer-Policy", "no-referrer");
	http_set_header(r, "Cross-Origin-Opener-Policy", "same-origin");
	if (inm != NULL && api_etag_listed(inm, etag)) {
		http_reply_empty(r, 304);
		return;
	}
	http_reply_text(r, 200, a->content_type, (const char *)a->data, a->len);
}

void
api_ui_index(struct http_req *r)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->ev);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	size_t n = path ? strlen(path) : 0;
	const struct ui_asset *index = find_asset("index.html");

	if (n == 0 || path[n - 1] != '/') {
		http_set_header(r, "Location", "/ui/");
		http_reply_empty(r, 308);
		return;
	}
	if (index == NULL) {
		http_reply_error(r, 404, "not_found", NULL, "this build has no web application");
		return;
	}
	serve(r, index, "no-cache");
}

void
api_ui_asset(struct http_req *r)
{
	const struct ui_asset *a = NULL;

	if (strcmp(http_param(r, 0), ui_build_id) == 0 &&
	    strcmp(http_param(r, 1), "index.html") != 0)
		a = find_asset(http_param(r, 1));
	if (a == NULL) {
		http_reply_error(r, 404, "not_found", NULL,
				 "no such file in this build of the web application: %s/%s",
				 http_param(r, 0), http_param(r, 1));
		return;
	}
	serve(r, a, "public, max-age=31536000, immutable");
}
