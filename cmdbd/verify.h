/*
 * verify.h — compares the in-memory graph with PostgreSQL at one seq.
 *
 * One statement (sql.c SQL_VERIFY) reads, in one snapshot, the change-log
 * high-water mark N and a digest per node and per node's outgoing edges
 * (graph.h, "Digests"). Before it is sent the tailer is held where it is
 * (tailer_set_limit), then let run up to exactly N, so that the graph is
 * compared at the seq the database was read at; it is released when the
 * comparison ends, however it ends. Meanwhile writes wait for their
 * read-your-writes as they would for a slow tailer.
 *
 * The comparison runs on the loop in slices (VERIFY_SLICE rows a turn), so a
 * large map does not stall other requests: each row is looked up by ref
 * (graph_find) and its digest compared; the nodes the database did not name
 * are found by a scan at the end. A reload of the map (tailer_generation
 * changes) ends it with an error.
 *
 * The report (a new jansson object, the callee owns it):
 *
 *   {"seq": N, "ok": bool, "ms": elapsed (whole milliseconds),
 *    "nodes": {"memory": n, "database": n, "differ": [ref…], "differ_count": n},
 *    "edges": {"memory": n, "database": n, "differ": [ref…], "differ_count": n}}
 *
 * nodes.differ: the refs of the nodes that differ, are missing from one side,
 * or whose image cannot be digested; edges.differ: the refs of the nodes whose
 * outgoing edges differ. Both in byte order, at most max_differ each;
 * differ_count is how many in all. ok: nothing differs.
 */
#ifndef CMDB_VERIFY_H
#define CMDB_VERIFY_H

#include <stddef.h>

#include <event2/event.h>
#include <jansson.h>

#include "db.h"
#include "tailer.h"

/* Rows compared per loop turn. */
#define VERIFY_SLICE 20000

/* How long the tailer may take to reach the database's seq (ms). */
#define VERIFY_CATCH_UP_MS 10000

struct verify;

/* The end of a verification, on the loop: report (owned by the callee), or NULL
 * and error saying why (valid during the call). Called exactly once. */
typedef void (*verify_done_cb)(void *arg, json_t *report, const char *error);

/*
 * Starts a verification of tailer_graph(t) against the database behind db, with
 * statement stmt (SQL_VERIFY's text). One at a time per tailer: the caller
 * serialises them (they share the tailer's limit). Returns the running
 * verification, or NULL on ENOMEM (cb not called).
 */
struct verify *verify_start(struct event_base *base, struct db *db, int stmt, struct tailer *t,
			    size_t max_differ, verify_done_cb cb, void *arg);

/*
 * Ends a running verification now: cb(arg, NULL, why) is called from this call,
 * the tailer's limit is released, and what is left is freed (at once, or when
 * its statement or its wait on the tailer returns). Do not use v afterwards.
 * NULL-safe.
 */
void verify_cancel(struct verify *v, const char *why);

/*
 * `cmdbd verify [--url URL] [--token-file FILE] [--limit N] [--repair]`
 * (verify_cli.c): GET /v1/admin/verify of a running server, the report printed
 * on stdout. URL defaults to $CMDB_URL, else http://<listen>; the admin token
 * is $CMDB_TOKEN, else the first line of FILE (.cmdb/admin.token). Blocks (its
 * own loop). Returns the exit code: 0 the map equals the database, 1 it
 * differs, 2 usage, 3 refused (401/403), 4 any other failure.
 */
int verify_cli(int argc, char **argv, const char *listen);

#endif
