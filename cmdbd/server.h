/*
 * server.h — the `cmdbd serve` process: wiring of the loop, the database pool, the
 * token cache, the in-memory graph and its tailer, and the HTTP front; the map's
 * life (background loads, reloads, verification); signals and graceful shutdown.
 *
 * There is one server per process. Handlers reach its shared parts through these
 * accessors (valid only while server_run() runs, on the loop thread).
 */
#ifndef CMDB_SERVER_H
#define CMDB_SERVER_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "config.h"
#include "graph.h"

struct auth;
struct db;
struct tailer;
struct watch;

/* Runs until SIGTERM/SIGINT; returns the process exit code. */
int server_run(const struct cfg *cfg);

struct auth *server_auth(void);
/* The pool for writes (CMDB_DATABASE_URL: the primary). */
struct db *server_db(void);
/* The pool the map follows and lists read (CMDB_READ_DATABASE_URL, SPEC §7);
 * server_db() when none is set. */
struct db *server_read_db(void);
/* The read database's conninfo (the primary's without one). */
const char *server_read_url(void);
/* The map served (an empty graph until the first load; replaced by a reload:
 * do not keep it across loop turns). */
graph *server_graph(void);
/* NULL until the map has been loaded once; it then stays (a reload keeps it). */
struct tailer *server_tailer(void);
/* True once the map is loaded and has caught up with the change log, and is not
 * being reloaded: graph queries may be answered. */
bool server_map_ready(void);
/*
 * Why the map is not ready: NULL when it is, else an error code for a 503 —
 * "starting" (the first load, or its first catch-up) or "reloading" (after a
 * change row could not be applied, or a repair) — and a sentence in *detail
 * (when detail is not NULL).
 */
const char *server_map_unready(const char **detail);
/* The watch registry (watch.h); NULL until the map has been loaded. */
struct watch *server_watch(void);
const struct cfg *server_cfg(void);
struct event_base *server_base(void);
bool server_shutting_down(void);

/*
 * Reloads the whole map in the background (the tailer stops, the map is not
 * ready until the new graph is in; a running verification is cancelled). A
 * no-op while a load is already under way. reason is logged.
 */
void server_reload_map(const char *reason);

/* ---- Verification (verify.h) ---- */

enum { SERVER_VERIFY_OK, SERVER_VERIFY_DIFFER, SERVER_VERIFY_FAILED, SERVER_VERIFY_RESULTS };

/* report: verify.h's (the callee owns it), with "repair": "reloading" or
 * "not_needed" added when repair was asked; or NULL and error. */
typedef void (*server_verify_cb)(void *arg, json_t *report, const char *error);

/*
 * Compares the map with the database (verify.h), listing at most max_differ refs
 * per side; with repair, a difference reloads the map. One at a time. Returns
 * 0 (cb will be called once, from the loop, never from this call), or -1 with
 * errno EBUSY (one is running), EAGAIN (the map is not ready, or the server is
 * stopping) or ENOMEM.
 */
int server_verify(size_t max_differ, bool repair, server_verify_cb cb, void *arg);

/* The map's figures for /metrics. */
struct server_map_stats {
	bool ready;
	unsigned long reloads;	      /* reloads completed */
	unsigned long apply_failures; /* change rows the tailer could not apply */
	unsigned long verifications[SERVER_VERIFY_RESULTS];
};
void server_map_stats(struct server_map_stats *out);

#endif
