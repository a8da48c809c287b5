/*
 * metrics.h — request counters and latency histograms for /metrics (Prometheus
 * text format). Single-threaded: called only from the event loop.
 */
#ifndef CMDB_METRICS_H
#define CMDB_METRICS_H

#include <stddef.h>

/* Records one answered request. route is a router name or "none". */
void metrics_observe_request(const char *route, int status, double seconds);

/* Counts a manifest outcome: "applied", "noop", "dry_run", "rejected", "failed". */
void metrics_count_manifest(const char *outcome);

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
int metrics_render(char **buf, size_t *len);

/* printf-append helper shared with the gauges in api_ops.c. Returns 0 or -1. */
int metrics_appendf(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
