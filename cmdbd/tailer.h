/*
 * tailer.h — keeps the in-memory graph current by applying the change log.
 *
 * PostgreSQL is the truth; the graph follows it in seq order. A NOTIFY on
 * cmdb_changes (or a write of our own that returned a seq) pokes the tailer, which
 * reads `changes WHERE seq > applied ORDER BY seq` through the pool and applies the
 * rows. One read is in flight at a time; a poke during a read schedules another; a
 * failed read is retried on a timer (250 ms, doubling to 5 s).
 * Waiters (read-your-writes, long-polls) are woken once applied >= their seq, or
 * when their timeout passes. Never blocks the loop.
 *
 * Node rows carry the whole node (`after`), which the graph keeps as the node's
 * image: GET /v1/nodes/{kind}/{name} answers from it. Its last_seen_at is derived
 * (graph.h, "Node images and last_seen_at"): max(the image's last_seen_at, seen[s]
 * for each of the node's sources s), seen[s] being when source s last applied a
 * manifest. A no-op re-post logs no change row, so the tailer also polls
 * `source_state` every TAILER_SEEN_POLL_MS (one statement on the pool, never two at
 * once; a failure just waits for the next tick) for sources applied since its last
 * poll, minus 30 s of slack for transactions that commit well after they started
 * (last_applied_at is their start time), and feeds graph_source_seen(). This
 * process's own manifests feed it at once from their reply ("sighting").
 */

/* How often the tailer polls source_state for sightings of other processes. */
#define TAILER_SEEN_POLL_MS 1000
#ifndef CMDB_TAILER_H
#define CMDB_TAILER_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "db.h"
#include "graph.h"

struct tailer;

/* reached: applied >= seq; false on timeout or shutdown. */
typedef void (*tailer_wait_cb)(void *arg, bool reached);

/*
 * stmt_tail reads the change log (sql.c SQL_CHANGES_TAIL: seq, op, ref, from, type,
 * to, health, attributes, node image, at — each row is reported to history.h);
 * stmt_seen polls sightings (SQL_SOURCES_SEEN;
 * -1: no poll). NULL on ENOMEM. The graph must outlive the tailer.
 */
struct tailer *tailer_new(struct event_base *base, struct db *db, int stmt_tail, int stmt_seen,
			  graph *g, long long applied);
void tailer_free(struct tailer *t); /* wakes all waiters with reached=false; NULL-safe */

/* Fetch and apply whatever is new (after a NOTIFY, a reconnect or our own write). */
void tailer_poke(struct tailer *t);

long long tailer_applied(const struct tailer *t);

/*
 * Calls cb(arg, true) once applied >= seq (at once if already so — from this
 * call's stack), or cb(arg, false) after timeout_ms. Returns 0 or -1 (ENOMEM,
 * cb not called).
 */
int tailer_wait(struct tailer *t, long long seq, int timeout_ms, tailer_wait_cb cb, void *arg);

/* Wakes every waiter now with reached=false, and from then on tailer_wait() answers at
 * once instead of parking (shutdown). */
void tailer_release_all(struct tailer *t);

/*
 * Loads the whole graph from the database over a blocking connection, at one
 * consistent snapshot, and returns the seq it reflects (-1 on error, message
 * logged): every source's sighting, every node with its image (built from the
 * nodes' columns as cmdb_node_json() shapes them, with the stored last_seen_at;
 * the derived one follows from the sightings), then every edge (a binary COPY by
 * node id). Used once at start, before the server accepts requests. On error the
 * graph may hold part of the map: the caller starts over with a new one.
 */
long long tailer_load(PGconn *conn, graph *g);

#endif
