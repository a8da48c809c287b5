/*
 * db.h — an asynchronous PostgreSQL connection pool on a libevent loop.
 *
 * Every call here returns at once; results arrive in callbacks run by the loop.
 * Connections use libpq's non-blocking API (PQconnectStart/PQconnectPoll,
 * PQsendQueryPrepared, PQconsumeInput/PQisBusy/PQgetResult), one event per socket.
 * Each connection prepares the statement table on connect. A dead connection is
 * retried with backoff; queries fail fast with DB_UNAVAILABLE while no connection
 * is up. Deadlocks and serialization failures (40P01, 40001) are retried inside the
 * layer for statements marked retryable — they are single atomic SQL functions, so
 * running them again is safe.
 *
 * Ownership: the layer owns every PGresult and clears it after the callback returns;
 * callbacks must copy what they keep. Parameters are copied at db_query() time.
 */
#ifndef CMDB_DB_H
#define CMDB_DB_H

#include "attrs.h"

#include <event2/event.h>
#include <libpq-fe.h>
#include <stdbool.h>

struct db;

/*
 * Re-runs of a retryable statement after 40P01/40001, at once. A write that lost a
 * race with a concurrent delete nearly always wins the next round; the bound only
 * stops a livelock.
 */
#define DB_RETRY_MAX 10

/* One prepared statement: name, SQL text with $n parameters, parameter count. */
struct db_stmt {
	const char *name;
	const char *sql;
	int nparams;
	bool retryable;
};

enum db_status {
	DB_OK,		/* res holds a tuples/command result */
	DB_ERROR,	/* the statement failed: sqlstate + message say why */
	DB_UNAVAILABLE, /* no connection, connection lost, or queue full */
};

struct db_result {
	enum db_status status;
	PGresult *res;	      /* DB_OK and DB_ERROR; owned by the layer */
	const char *sqlstate; /* "" when unknown */
	const char *message;  /* primary message, never NULL */
};

typedef void (*db_cb)(void *arg, const struct db_result *r);

/* Called for each NOTIFY on a channel given to db_new; payload may be "". */
typedef void (*db_notify_cb)(void *arg, const char *channel, const char *payload);
/* Called each time the listening connection is (re)established: catch up then. */
typedef void (*db_listen_cb)(void *arg);

struct db_listen {
	const char *const *channels; /* NULL-terminated */
	db_notify_cb on_notify;
	db_listen_cb on_connect;
	void *arg;
};

/*
 * Creates a pool of pool_size connections plus, when listen is non-NULL, one
 * connection that LISTENs on its channels. Connecting starts at once, in the
 * background. stmts must outlive the pool. Returns NULL on ENOMEM.
 */
CMDB_MUST_USE struct db *db_new(struct event_base *base, const char *conninfo, int pool_size,
				const struct db_stmt *stmts, int nstmts,
				const struct db_listen *listen);

/* Names the pool in its log lines (pool=LABEL; "main" by default). label must
 * outlive the pool. */
void db_set_label(struct db *db, const char *label);

/* Closes everything. Pending callbacks are run with DB_UNAVAILABLE first. NULL-safe. */
void db_free(struct db *db);

/*
 * Shutting down, while the loop still runs: every queued and running statement is
 * answered DB_UNAVAILABLE (from the loop), the connections close and stay closed,
 * and later db_query() calls fail the same way. db_free() is still needed.
 */
void db_close(struct db *db);

/*
 * Queues statement stmt (an index into the table) with text parameters (NULL
 * entries are SQL NULL). cb runs exactly once, later, from the loop — never from
 * inside db_query. Returns 0, or -1 on ENOMEM (cb will not run).
 */
CMDB_MUST_USE int db_query(struct db *db, int stmt, const char *const *params, db_cb cb, void *arg);

/* True when at least one pool connection is up and ready. */
bool db_ready(const struct db *db);

/* Pool figures for /metrics. */
struct db_stats {
	int total, up, busy, queued;
	unsigned long queries, errors, unavailable, retries, reconnects;
};
void db_get_stats(const struct db *db, struct db_stats *out);

#endif
