/*
 * api_changes.c — GET /v1/changes?since=&limit=&wait=: the change feed.
 *
 * The rows come from PostgreSQL (cmdb_changes), in seq order. With wait, a request
 * for which nothing newer than since has been applied yet parks on the tailer —
 * woken by NOTIFY, never blocking the loop — and queries once it is woken or its
 * wait runs out. seq order is commit order (see DESIGN.md), so paging with
 * since=next never misses a change.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "api.h"
#include "model.h"
#include "app.h"
#include "sql.h"
#include "tailer.h"

#define CHANGES_WAIT_MAX 60

struct changes_req {
	struct http_req *r;
	char since[24];
	char limit[24];
};

static void
run_query(struct changes_req *c)
{
	const char *params[2] = {c->since, c->limit};

	/* db_query copies the parameters, so c can go once the call is queued. */
	api_call_db(c->r, SQL_CHANGES, params, NULL);
	free(c);
}

static void
woken(void *arg, bool reached)
{
	(void)reached;
	run_query(arg);
}

void
api_changes(struct http_req *r)
{
	static const char *const allowed[] = {"since", "limit", "wait", NULL};
	long since, limit, wait;
	struct changes_req *c;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "since", 0, LONG_MAX - 1, 0, &since) ||
	    !api_query_long(r, "limit", 1, MODEL_PAGE_MAX, MODEL_PAGE_DEFAULT, &limit) ||
	    !api_query_long(r, "wait", 0, CHANGES_WAIT_MAX, 0, &wait))
		return;
	c = malloc(sizeof(*c));
	if (c == NULL) {
		http_reply_nomem(r);
		return;
	}
	c->r = r;
	snprintf(c->since, sizeof(c->since), "%ld", since);
	snprintf(c->limit, sizeof(c->limit), "%ld", limit);
	/* Long-polls park on the tailer; before the map is loaded they just ask. */
	if (wait > 0 && !r->app->stopping && r->app->tailer != NULL &&
	    tailer_applied(r->app->tailer) <= (long long)since) {
		if (tailer_wait(r->app->tailer, (long long)since + 1, (int)wait * 1000, woken, c) ==
		    0)
			return;
	}
	run_query(c);
}
