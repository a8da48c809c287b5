/*
 * app.h — the application context: what a request handler may reach.
 *
 * `cmdbd serve` has one struct app, owned and filled by server.c as its parts start
 * and cleared as they stop; http.c hands it to every request (http_req.app), and
 * the handlers (api_*.c) reach the pool, the map, the tailer and the settings only
 * through it — never through globals. Everything here lives on the loop thread;
 * nothing in it may be kept across loop turns except through the app itself (a
 * reload replaces g).
 *
 * The operations at the bottom are the server's (server.c implements them on the
 * server that embeds the app).
 */
#ifndef CMDB_APP_H
#define CMDB_APP_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config.h"
#include "graph.h"

struct auth;
struct db;
struct noop;
struct tailer;
struct watch;

struct app {
	const struct cfg *cfg;
	struct event_base *base;
	struct db *db;	      /* the pool for writes (CMDB_DATABASE_URL: the primary) */
	struct db *read_db;   /* the pool the map follows and lists read
				 (CMDB_READ_DATABASE_URL, SPEC §7); == db when none is set */
	const char *read_url; /* the read database's conninfo (the primary's without one) */
	struct auth *auth;    /* the token cache (auth.h) */
	graph *g;	      /* the map served: empty until the first load, replaced by a reload */
	struct tailer *tailer; /* NULL until the map has been loaded once; then it stays */
	struct watch *watch;   /* watchers (watch.h); NULL until the first load */
	struct noop *noop;     /* identical re-posts: fingerprints and batches (noop.h) */
	bool stopping;	       /* SIGTERM/SIGINT came: shutting down */
};

/*
 * Why the map is not ready: NULL when it is (loaded, caught up with the change log,
 * not being reloaded: graph queries may be answered), else an error code for a 503
 * — "starting" (the first load, or its first catch-up) or "reloading" (after a
 * change row could not be applied, or a repair) — and a sentence in *detail (when
 * detail is not NULL).
 */
const char *app_map_unready(const struct app *a, const char **detail);

/*
 * Reloads the whole map in the background (the tailer stops, the map is not ready
 * until the new graph is in; a running verification is cancelled). A no-op while a
 * load is already under way. reason is logged.
 */
void app_reload_map(struct app *a, const char *reason);

/* ---- Verification (verify.h) ---- */

enum { APP_VERIFY_OK, APP_VERIFY_DIFFER, APP_VERIFY_FAILED, APP_VERIFY_RESULTS };

/* report: verify.h's (the callee owns it), with "repair": "reloading" or
 * "not_needed" added when repair was asked; or NULL and error. */
typedef void (*app_verify_cb)(void *arg, json_t *report, const char *error);

/*
 * Compares the map with the database (verify.h), listing at most max_differ refs
 * per side; with repair, a difference reloads the map. One at a time. Returns 0
 * (cb will be called once, from the loop, never from this call), or -1 with errno
 * EBUSY (one is running), EAGAIN (the map is not ready, or the server is stopping)
 * or ENOMEM.
 */
int app_verify(struct app *a, size_t max_differ, bool repair, app_verify_cb cb, void *arg);

/* The map's figures for /metrics. */
struct app_map_stats {
	bool ready;
	unsigned long reloads;	      /* reloads completed */
	unsigned long apply_failures; /* change rows the tailer could not apply */
	unsigned long verifications[APP_VERIFY_RESULTS];
};
void app_map_stats(const struct app *a, struct app_map_stats *out);

#endif
