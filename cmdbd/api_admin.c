/*
 * api_admin.c — admin-scope endpoints: GET /v1/admin/verify.
 *
 * /v1/admin/verify compares the in-memory map with PostgreSQL at one seq
 * (verify.h) and replies 200 with the report, whether or not anything differs
 * ("ok" says). ?limit= caps the refs listed per side (1..10000, default 100);
 * ?repair=true reloads the map when something differs ("repair": "reloading").
 * 503 while the map is loading or reloading, or when the database cannot be
 * read; 409 while another verification runs.
 */
#include <errno.h>

#include "api.h"
#include "app.h"

#define VERIFY_LIMIT_DEFAULT 100
#define VERIFY_LIMIT_MAX 10000

static void
verify_replied(void *arg, json_t *report, const char *error)
{
	struct http_req *r = arg;

	if (report == NULL) {
		http_set_header(r, "Retry-After", "1");
		http_reply_error(r, 503, "unavailable", NULL, "the verification failed: %s", error);
		return;
	}
	http_reply_json(r, 200, report);
}

void
api_admin_verify(struct http_req *r)
{
	static const char *const allowed[] = {"limit", "repair", NULL};
	long limit;
	int repair;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "limit", 1, VERIFY_LIMIT_MAX, VERIFY_LIMIT_DEFAULT, &limit) ||
	    !api_query_bool(r, "repair", 0, &repair) || !api_require_map(r))
		return;
	if (app_verify(r->app, (size_t)limit, repair != 0, verify_replied, r) == 0)
		return;
	if (errno == EBUSY)
		http_reply_error(r, 409, "conflict", NULL,
				 "a verification is already running; try again when it ends");
	else if (errno == EAGAIN)
		http_reply_error(r, 503, "unavailable", NULL,
				 "the map is not ready (or the server is stopping)");
	else
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
}
