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
 */
#ifndef CMDB_TAILER_H
#define CMDB_TAILER_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "db.h"
#include "graph.h"

struct tailer;

/* reached: applied >= seq; false on timeout or shutdown. */
typedef void (*tailer_wait_cb)(void *arg, bool reached);

struct tailer *tailer_new(struct event_base *base, struct db *db, int stmt_tail, graph *g,
			  long long applied);
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
 * logged). Used once at start, before the server accepts requests.
 */
long long tailer_load(PGconn *conn, graph *g);

#endif
