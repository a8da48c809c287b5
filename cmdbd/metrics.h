/*
 * metrics.h — /metrics in Prometheus text format: request counters, latency
 * histograms and manifest outcomes kept here, and the gauges of the database
 * pool and of the in-memory graph rendered from values the caller reads.
 * Single-threaded: called only from the event loop.
 */
#ifndef CMDB_METRICS_H
#define CMDB_METRICS_H

#include "attrs.h"

#include <stdbool.h>
#include <stddef.h>

struct db_stats;

/* Records one answered request. route is a router name or "none". */
void metrics_observe_request(const char *route, int status, double seconds);

/* Counts a manifest outcome: "applied", "noop", "dry_run", "rejected", "failed". */
void metrics_count_manifest(const char *outcome);

/* Counts one unit of the staleness sweep done here: "source_expired", "orphan_purged". */
void metrics_count_sweep(const char *action);

/*
 * Client connections (http_conn.c): open now and the cap on them (gauges), one
 * refused over the cap, one request answered 408 (its headers or its body came too
 * slowly).
 */
void metrics_set_connections(int open, long limit);
void metrics_count_connection_refused(void);
void metrics_count_request_timeout(const char *phase); /* "headers" or "body" */

/*
 * Appends the request, connection and manifest metrics in Prometheus text format to a
 * malloc'd buffer *buf of length *len (both may start NULL/0). Returns 0 or -1.
 */
CMDB_MUST_USE int metrics_render(char **buf, size_t *len);

/* Appends the database pool's state (db_get_stats()): connections by state, the
 * queue, statements completed, failed, refused and retried, connection attempts.
 * Same buffer contract as metrics_render(). Returns 0 or -1. */
CMDB_MUST_USE int metrics_render_db(char **buf, size_t *len, const struct db_stats *st);

/* Appends the in-memory graph's size and the last change-log seq applied to it.
 * Returns 0 or -1. */
CMDB_MUST_USE int metrics_render_graph(char **buf, size_t *len, size_t nodes, size_t edges,
				       long long seq);

/* Appends the map's health: ready (1/0), rows it could not apply, reloads done, and
 * verifications by result. Returns 0 or -1. */
CMDB_MUST_USE int metrics_render_map(char **buf, size_t *len, bool ready,
				     unsigned long apply_failures, unsigned long reloads,
				     unsigned long verify_ok, unsigned long verify_differ,
				     unsigned long verify_failed);

/* The printf-append every render function uses. Returns 0 or -1. */
CMDB_MUST_USE int metrics_appendf(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
