/*
 * metrics.c — counters, histograms and gauges, rendered in Prometheus text format.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "router.h"

#define MAX_ROUTES 64
#define MAX_STATUS 24
#define NBUCKETS 12

static const double bucket_le[NBUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
					   0.05,   0.1,	  0.25,	  0.5,	 1.0,  5.0};

struct status_count {
	int status;
	unsigned long count;
};

struct route_stats {
	struct status_count by_status[MAX_STATUS];
	int nstatus;
	unsigned long buckets[NBUCKETS + 1]; /* last = +Inf */
	double sum;
	unsigned long count;
};

static struct route_stats stats[MAX_ROUTES + 1]; /* last = "none" */

static const char *const manifest_outcomes[] = {"applied", "noop", "dry_run", "rejected", "failed"};
static unsigned long manifest_counts[5];

static int conns_open;
static long conns_limit;
static unsigned long conns_refused;
static unsigned long timeouts_headers, timeouts_body;
static const char *const sweep_actions[] = {"source_expired", "orphan_purged"};
static unsigned long sweep_counts[2];

static int
route_index(const char *route)
{
	size_t n = router_count();

	for (size_t i = 0; i < n && i < MAX_ROUTES; i++)
		if (strcmp(router_name_at(i), route) == 0)
			return (int)i;
	return MAX_ROUTES;
}

void
metrics_observe_request(const char *route, int status, double seconds)
{
	struct route_stats *s = &stats[route_index(route)];
	int i;

	for (i = 0; i < s->nstatus; i++)
		if (s->by_status[i].status == status)
			break;
	if (i == s->nstatus) {
		if (s->nstatus == MAX_STATUS)
			i = MAX_STATUS - 1; /* lump rare codes into the last slot */
		else
			s->by_status[s->nstatus++].status = status;
	}
	s->by_status[i].count++;
	for (i = 0; i < NBUCKETS && seconds > bucket_le[i]; i++)
		;
	s->buckets[i]++;
	s->sum += seconds;
	s->count++;
}

void
metrics_count_manifest(const char *outcome)
{
	for (size_t i = 0; i < 5; i++)
		if (strcmp(outcome, manifest_outcomes[i]) == 0)
			manifest_counts[i]++;
}

void
metrics_set_connections(int open, long limit)
{
	conns_open = open;
	conns_limit = limit;
}

void
metrics_count_connection_refused(void)
{
	conns_refused++;
}

void
metrics_count_request_timeout(const char *phase)
{
	if (strcmp(phase, "body") == 0)
		timeouts_body++;
	else
		timeouts_headers++;
}

int
metrics_appendf(char **buf, size_t *len, const char *fmt, ...)
{
	va_list ap;
	char *line = NULL;
	char *grown;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&line, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	grown = realloc(*buf, *len + (size_t)n + 1);
	if (grown == NULL) {
		free(line);
		return -1;
	}
	memcpy(grown + *len, line, (size_t)n + 1);
	*buf = grown;
	*len += (size_t)n;
	free(line);
	return 0;
}

void
metrics_count_sweep(const char *action)
{
	for (size_t i = 0; i < 2; i++)
		if (strcmp(action, sweep_actions[i]) == 0)
			sweep_counts[i]++;
}

int
metrics_render(char **buf, size_t *len)
{
	size_t n = router_count();
	int rc = 0;

	rc |= metrics_appendf(buf, len,
			      "# HELP cmdb_http_requests_total HTTP requests answered, by route "
			      "and status.\n# TYPE cmdb_http_requests_total counter\n");
	for (size_t i = 0; i <= MAX_ROUTES; i++) {
		const char *name = i < n ? router_name_at(i) : i == MAX_ROUTES ? "none" : NULL;

		if (name == NULL)
			continue;
		for (int k = 0; k < stats[i].nstatus; k++)
			rc |= metrics_appendf(
			    buf, len,
			    "cmdb_http_requests_total{route=\"%s\",status=\"%d\"} "
			    "%lu\n",
			    name, stats[i].by_status[k].status, stats[i].by_status[k].count);
	}
	rc |= metrics_appendf(buf, len,
			      "# HELP cmdb_http_request_duration_seconds Time to answer, by "
			      "route.\n# TYPE cmdb_http_request_duration_seconds histogram\n");
	for (size_t i = 0; i <= MAX_ROUTES; i++) {
		const char *name = i < n ? router_name_at(i) : i == MAX_ROUTES ? "none" : NULL;
		unsigned long cum = 0;

		if (name == NULL || stats[i].count == 0)
			continue;
		for (int b = 0; b < NBUCKETS; b++) {
			cum += stats[i].buckets[b];
			rc |= metrics_appendf(
			    buf, len,
			    "cmdb_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} "
			    "%lu\n",
			    name, bucket_le[b], cum);
		}
		cum += stats[i].buckets[NBUCKETS];
		rc |= metrics_appendf(
		    buf, len,
		    "cmdb_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %lu\n"
		    "cmdb_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
		    "cmdb_http_request_duration_seconds_count{route=\"%s\"} %lu\n",
		    name, cum, name, stats[i].sum, name, stats[i].count);
	}
	rc |= metrics_appendf(buf, len,
			      "# HELP cmdb_manifests_total Manifests received, by outcome.\n"
			      "# TYPE cmdb_manifests_total counter\n");
	for (size_t i = 0; i < 5; i++)
		rc |= metrics_appendf(buf, len, "cmdb_manifests_total{outcome=\"%s\"} %lu\n",
				      manifest_outcomes[i], manifest_counts[i]);
	rc |= metrics_appendf(
	    buf, len,
	    "# HELP cmdb_http_connections_open Client connections open and counted against "
	    "the cap.\n# TYPE cmdb_http_connections_open gauge\ncmdb_http_connections_open %d\n"
	    "# HELP cmdb_http_connections_max The cap on open client connections.\n"
	    "# TYPE cmdb_http_connections_max gauge\ncmdb_http_connections_max %ld\n"
	    "# HELP cmdb_http_connections_refused_total Connections refused (503) at the cap.\n"
	    "# TYPE cmdb_http_connections_refused_total counter\n"
	    "cmdb_http_connections_refused_total %lu\n"
	    "# HELP cmdb_http_request_timeouts_total Requests answered 408: headers or body "
	    "too slow.\n# TYPE cmdb_http_request_timeouts_total counter\n"
	    "cmdb_http_request_timeouts_total{phase=\"headers\"} %lu\n"
	    "cmdb_http_request_timeouts_total{phase=\"body\"} %lu\n",
	    conns_open, conns_limit, conns_refused, timeouts_headers, timeouts_body);
	rc |= metrics_appendf(buf, len,
			      "# HELP cmdb_sweep_total Sources expired and orphans purged by this "
			      "process's sweeper.\n"
			      "# TYPE cmdb_sweep_total counter\n");
	for (size_t i = 0; i < 2; i++)
		rc |= metrics_appendf(buf, len, "cmdb_sweep_total{action=\"%s\"} %lu\n",
				      sweep_actions[i], sweep_counts[i]);
	return rc ? -1 : 0;
}

int
metrics_render_db(char **buf, size_t *len, const struct db_stats *st)
{
	return metrics_appendf(
	    buf, len,
	    "# HELP cmdb_db_connections Database pool connections by state.\n"
	    "# TYPE cmdb_db_connections gauge\n"
	    "cmdb_db_connections{state=\"total\"} %d\n"
	    "cmdb_db_connections{state=\"up\"} %d\n"
	    "cmdb_db_connections{state=\"busy\"} %d\n"
	    "# HELP cmdb_db_queue_depth Statements waiting for a connection.\n"
	    "# TYPE cmdb_db_queue_depth gauge\ncmdb_db_queue_depth %d\n"
	    "# HELP cmdb_db_queries_total Statements completed.\n"
	    "# TYPE cmdb_db_queries_total counter\ncmdb_db_queries_total %lu\n"
	    "# HELP cmdb_db_errors_total Statements that failed.\n"
	    "# TYPE cmdb_db_errors_total counter\ncmdb_db_errors_total %lu\n"
	    "# HELP cmdb_db_unavailable_total Statements refused: no connection.\n"
	    "# TYPE cmdb_db_unavailable_total counter\ncmdb_db_unavailable_total %lu\n"
	    "# HELP cmdb_db_retries_total Statements retried after a deadlock or "
	    "serialization failure.\n"
	    "# TYPE cmdb_db_retries_total counter\ncmdb_db_retries_total %lu\n"
	    "# HELP cmdb_db_connects_total Connection attempts.\n"
	    "# TYPE cmdb_db_connects_total counter\ncmdb_db_connects_total %lu\n",
	    st->total, st->up, st->busy, st->queued, st->queries, st->errors, st->unavailable,
	    st->retries, st->reconnects);
}

int
metrics_render_graph(char **buf, size_t *len, size_t nodes, size_t edges, long long seq)
{
	return metrics_appendf(buf, len,
			       "# HELP cmdb_graph_nodes Nodes in the in-memory graph.\n"
			       "# TYPE cmdb_graph_nodes gauge\ncmdb_graph_nodes %zu\n"
			       "# HELP cmdb_graph_edges Edges in the in-memory graph.\n"
			       "# TYPE cmdb_graph_edges gauge\ncmdb_graph_edges %zu\n"
			       "# HELP cmdb_change_seq Last change-log seq applied to the graph.\n"
			       "# TYPE cmdb_change_seq gauge\ncmdb_change_seq %lld\n",
			       nodes, edges, seq);
}

int
metrics_render_map(char **buf, size_t *len, bool ready, unsigned long apply_failures,
		   unsigned long reloads, unsigned long verify_ok, unsigned long verify_differ,
		   unsigned long verify_failed)
{
	return metrics_appendf(
	    buf, len,
	    "# HELP cmdb_graph_ready Whether the in-memory map answers (1) or is loading (0).\n"
	    "# TYPE cmdb_graph_ready gauge\ncmdb_graph_ready %d\n"
	    "# HELP cmdb_graph_apply_failures_total Change rows the map could not apply (each "
	    "reloads it).\n"
	    "# TYPE cmdb_graph_apply_failures_total counter\n"
	    "cmdb_graph_apply_failures_total %lu\n"
	    "# HELP cmdb_graph_reloads_total Reloads of the whole map completed.\n"
	    "# TYPE cmdb_graph_reloads_total counter\ncmdb_graph_reloads_total %lu\n"
	    "# HELP cmdb_graph_verifications_total Comparisons of the map with the database, by "
	    "result.\n"
	    "# TYPE cmdb_graph_verifications_total counter\n"
	    "cmdb_graph_verifications_total{result=\"ok\"} %lu\n"
	    "cmdb_graph_verifications_total{result=\"differ\"} %lu\n"
	    "cmdb_graph_verifications_total{result=\"failed\"} %lu\n",
	    ready ? 1 : 0, apply_failures, reloads, verify_ok, verify_differ, verify_failed);
}
