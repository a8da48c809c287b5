/*
 * tailer.h — keeps the in-memory graph current by applying the change log.
 *
 * PostgreSQL is the truth; the graph follows it in seq order from the seq the
 * loader (loader.h) loaded it at. A NOTIFY on cmdb_changes (or a write of our own
 * that returned a seq) pokes the tailer, which reads `changes WHERE seq > applied
 * ORDER BY seq` through the pool and applies the rows. One read is in flight at a
 * time; a poke during a read schedules another; a failed read is retried on a
 * timer (250 ms, doubling to 5 s).
 * Waiters (read-your-writes, long-polls) are woken once applied >= their seq, or
 * when their timeout passes. Never blocks the loop.
 *
 * A row that cannot be applied (tailer_row_apply fails: an unknown op or edge
 * type, a ref or health the graph refuses, an edge whose endpoint the map does
 * not hold, out of memory) means the graph no longer follows the database. The
 * tailer then logs event=tailer_apply_failed, counts it, stops (applied stays
 * before that row; later rows are not applied) and calls the failure callback:
 * the owner reloads the map and hands the new graph back with tailer_reset().
 * Nothing is skipped silently.
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
 *
 * The same poll checks that the log has not gone back under the map: a standby
 * promoted without the last commits of an asynchronous primary has a log that
 * ends before the seq the map applied, and will reuse those seqs for other
 * changes. When the database's high-water mark is below the applied seq, or its
 * row at that seq has another time than the row applied (known once the tailer
 * has applied a row since the load), the tailer logs
 * event=change_log_behind_map, stops and calls the failure callback, as for a
 * row it cannot apply: the owner reloads the map.
 */
#ifndef CMDB_TAILER_H
#define CMDB_TAILER_H

#include <libpq-fe.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "graph.h"

/* How often the tailer polls source_state for sightings of other processes. */
#define TAILER_SEEN_POLL_MS 1000

/* Most change rows one read returns (SQL_CHANGES_TAIL's LIMIT). */
#define TAILER_BATCH 20000

/* tailer_set_limit(): apply everything. */
#define TAILER_NO_LIMIT LLONG_MAX

struct tailer;

/* reached: applied >= seq; false on timeout or shutdown. */
typedef void (*tailer_wait_cb)(void *arg, bool reached);

/*
 * A row could not be applied (see above): seq is its seq, reason a static
 * string. Called from the loop, once per failure; the tailer stays stopped
 * until tailer_reset(). The callback must not free the tailer.
 */
typedef void (*tailer_failed_cb)(void *arg, long long seq, const char *reason);

/*
 * stmt_tail reads the change log (sql.c SQL_CHANGES_TAIL: seq, op, ref, from, type,
 * to, health, attributes, node image, at — each applied row is reported to
 * history.h); stmt_seen polls sightings (SQL_SOURCES_SEEN;
 * -1: no poll). on_failed may be NULL (the tailer then just stays stopped). NULL on
 * ENOMEM. The graph must outlive the tailer (or be replaced by tailer_reset()).
 * The tailer does not read until poked.
 */
struct tailer *tailer_new(struct event_base *base, struct db *db, int stmt_tail, int stmt_seen,
			  graph *g, long long applied, tailer_failed_cb on_failed, void *arg);
void tailer_free(struct tailer *t); /* wakes all waiters with reached=false; NULL-safe */

/* Fetch and apply whatever is new (after a NOTIFY, a reconnect or our own write).
 * Ignored while stopped (a failure, tailer_suspend). */
void tailer_poke(struct tailer *t);

/*
 * Follows a read database that NOTIFY does not reach (a hot standby, SPEC §7):
 * after each read that found the end of the log, reads again after min_ms when
 * it found rows, after a poke (a NOTIFY from the primary: the standby may not
 * have replayed the change yet) or while a waiter waits for a seq not applied;
 * otherwise the interval doubles up to max_ms. Off by default (the tailer then
 * reads only when poked). -1 on ENOMEM.
 */
int tailer_set_poll(struct tailer *t, int min_ms, int max_ms);

long long tailer_applied(const struct tailer *t);

/* A NOTIFY said the change log reached seq. tailer_latest() is the highest seq heard of
 * (never below applied): latest - applied is how far the graph is behind (/metrics). */
void tailer_heard(struct tailer *t, long long seq);
long long tailer_latest(const struct tailer *t);
/* When a read of the database last succeeded (the log, or the sightings poll,
 * which runs every TAILER_SEEN_POLL_MS): CLOCK_MONOTONIC in ms; 0 = never. */
long long tailer_read_ok_at(const struct tailer *t);

/*
 * True once a read since the last tailer_reset() (or tailer_new()) reached the
 * end of the log: every change committed before that read started is in the
 * graph. Stays true when later reads fail (the database away: the graph keeps
 * answering from memory). False while stopped.
 */
bool tailer_synced(const struct tailer *t);

/* The graph the tailer applies to (the last one given to tailer_new/tailer_reset). */
graph *tailer_graph(const struct tailer *t);

/* Changes whenever the graph stops following the log or is replaced (a failure,
 * tailer_suspend, tailer_reset): work that spans loop turns compares it to know
 * that the graph it started on is still the one followed. */
unsigned tailer_generation(const struct tailer *t);

/* Rows that could not be applied, since tailer_new(). */
unsigned long tailer_apply_failures(const struct tailer *t);

/*
 * Stops applying (as after a failure, without calling the callback): the owner
 * is about to reload the map. Waiters keep waiting. Reads in flight are ignored.
 */
void tailer_suspend(struct tailer *t);

/*
 * Follows from a freshly loaded graph: g (which must outlive the tailer or the
 * next reset) reflects `applied`. Clears a failure or suspension and the limit,
 * wakes the waiters that `applied` reaches, and reads on from there at once.
 * Does not free the previous graph.
 */
void tailer_reset(struct tailer *t, graph *g, long long applied);

/*
 * Applies no row with seq > limit until the limit is raised (TAILER_NO_LIMIT: no
 * limit); raising it reads on at once. A verification holds the graph at one
 * seq this way while it compares. Never below the rows already applied.
 */
void tailer_set_limit(struct tailer *t, long long limit);

/*
 * Calls cb(arg, true) once applied >= seq (at once if already so — from this
 * call's stack), or cb(arg, false) after timeout_ms. Returns 0 or -1 (ENOMEM,
 * cb not called).
 */
int tailer_wait(struct tailer *t, long long seq, int timeout_ms, tailer_wait_cb cb, void *arg);

/*
 * The observer of applied changes (watch.c): after each applied batch, before the
 * waiters are woken, cb(arg, touched, n) with the nodes the batch's rows touched —
 * a node row its node (a removal also its neighbours), an edge row both endpoints,
 * each as an index before and after the row (so a removed node is named), with the
 * row's seq; in seq order,
 * possibly repeated. touched == NULL means the tailer could not record them (out
 * of memory): anything may have changed. One observer; NULL cb removes it.
 */
struct tailer_touch {
	uint32_t node;
	long long seq;
};
typedef void (*tailer_touch_cb)(void *arg, const struct tailer_touch *touched, size_t n);
void tailer_set_observer(struct tailer *t, tailer_touch_cb cb, void *arg);

/*
 * Hears each row of the sightings poll as it feeds graph_source_seen(): the source,
 * its last apply (graph.h's time format) and the fingerprint of that manifest
 * (source_state.manifest_hash; NULL when the source is stale: its next manifest is
 * applied in full). noop.h's memory learns other processes' applies from it. One
 * listener; NULL cb removes it.
 */
typedef void (*tailer_seen_cb)(void *arg, const char *source, const char *at, const char *fp);
void tailer_set_seen_listener(struct tailer *t, tailer_seen_cb cb, void *arg);

/* Wakes every waiter now with reached=false, and from then on tailer_wait() answers at
 * once instead of parking (shutdown). */
void tailer_release_all(struct tailer *t);

/* ---- One change row (the pure part, for tests too) ----------------------- */

/* A row of SQL_CHANGES_TAIL; the strings point into the result (NULL for SQL NULL). */
struct tailer_row {
	long long seq;
	const char *op;		/* node.created|updated|deleted, edge.created|updated|deleted */
	const char *ref;	/* node rows: the node's ref */
	const char *from;	/* edge rows */
	const char *type;	/* edge rows */
	const char *to;		/* edge rows */
	const char *health;	/* node rows with an after image */
	const char *attributes; /* node rows: after's attributes as JSON text */
	const char *image;	/* node rows: the whole after image as JSON text */
	size_t image_len;
	const char *at;	 /* the change's time (cmdb_ts), for history.h's as-of points */
	long long at_us; /* the change's time in microseconds (SQL_CHANGE_AT; 0: not read) */
};

/* Row i of a SQL_CHANGES_TAIL result. -1 when its seq is not a number. */
int tailer_row_decode(const PGresult *res, int i, struct tailer_row *row);

/*
 * Applies one row to g: a node row puts the node with its image (or removes it;
 * removing an absent node is a no-op), an edge row puts the edge between two
 * nodes the graph holds (or removes it; removing an absent edge is a no-op).
 * Returns 0, or -1 with *reason a static string (the graph is unchanged).
 */
int tailer_row_apply(graph *g, const struct tailer_row *row, const char **reason);

#endif
