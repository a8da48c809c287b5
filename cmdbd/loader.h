/*
 * loader.h — loads the whole map from PostgreSQL into a new in-memory graph.
 *
 * The map is read at one consistent snapshot (a REPEATABLE READ READ ONLY
 * transaction): the change-log high-water mark (change_seq.last, the seq the map
 * reflects), every source's sighting (source_state.last_applied_at), every node
 * with its image (a COPY of the nodes' columns, the image built as
 * cmdb_node_json() shapes it, with the stored last_seen_at; the derived one
 * follows from the sightings), then every edge (a binary COPY by node id).
 * From that seq on, the tailer (tailer.h) keeps the graph current.
 *
 * Two ways to run it:
 *
 *  - loader_load(): blocking, on a connection the caller owns. For tests and
 *    tools; the server never calls it on its event loop.
 *  - loader_start(): the same load in a thread of its own, on a connection of
 *    its own, into a graph of its own; the result is handed to a callback on the
 *    event loop. The server uses it at start, for its retries while the database
 *    is away, and to reload the map after the tailer could not apply a change
 *    (or a verification found a difference). The graph being built is not
 *    reachable from the loop until it is handed over whole, so readers never see
 *    a half-built map; the caller swaps it in.
 *
 * Threads: the worker touches only its own graph, connection and strbufs (the
 * graph has no global state, log lines are written whole); it blocks every
 * signal. Nothing else in cmdbd runs off the loop.
 */
#ifndef CMDB_LOADER_H
#define CMDB_LOADER_H

#include <event2/event.h>
#include <libpq-fe.h>

#include "graph.h"

/*
 * Loads into g (normally empty) over conn, which must be open with no
 * transaction in progress. Returns the seq the graph reflects, or -1 on error
 * (the reason is logged as event=graph_load_failed; the connection is usable
 * again, its transaction rolled back). On error g may hold part of the map:
 * throw it away. Blocks for the whole load.
 */
long long loader_load(PGconn *conn, graph *g);

struct loader;

/*
 * Called once on the loop thread when a background load ends: g is the new
 * graph (the callee owns it) and seq the seq it reflects; or g NULL, seq -1 and
 * error saying why (valid during the call only). The loader is freed after the
 * callback returns: do not pass it to loader_cancel() from then on.
 */
typedef void (*loader_done_cb)(void *arg, graph *g, long long seq, const char *error);

/*
 * Starts a background load from conninfo (a libpq connection string or URI;
 * copied) into a new graph. The connection waits at most connect_timeout_s to
 * be established (0: libpq's default; a connect_timeout in conninfo wins).
 * Returns the running load, or NULL with errno when it could not be started
 * (cb is then never called).
 */
struct loader *loader_start(struct event_base *base, const char *conninfo, int connect_timeout_s,
			    loader_done_cb cb, void *arg);

/*
 * Stops a running load: cancels its statement, waits for its thread (a moment:
 * at most the connect timeout while still connecting), frees what it built.
 * The callback is not called. NULL-safe.
 */
void loader_cancel(struct loader *l);

#endif
