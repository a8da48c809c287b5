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

/* Counts one unit of the staleness sweep done here: "source_expired", "orphan_purged". */
void metrics_count_sweep(const char *action);

/*
 * Appends the request and manifest metrics in Prometheus text format to a
 * malloc'd buffer *buf of length *len (both may start NULL/0). Returns 0 or -1.
 */
int metrics_render(char **buf, size_t *len);

/* printf-append helper shared with the gauges in api_ops.c. Returns 0 or -1. */
int metrics_appendf(char **buf, size_t *len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
