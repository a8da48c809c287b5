/*
 * api_ops.c — /healthz, /readyz and /metrics: no token needed.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "metrics.h"
#include "migrate.h"
#include "server.h"
#include "sql.h"
#include "tailer.h"
#include "watch.h"

static long long
applied_seq(void)
{
	return server_tailer() ? tailer_applied(server_tailer()) : 0;
}

void
api_healthz(struct http_req *r)
{
	http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

static void
ready_done(void *arg, const struct db_result *res)
{
	struct http_req *r = arg;
	int have, want = migrate_latest_version();

	if (res->status != DB_OK) {
		http_reply_error(r, 503, "unavailable", NULL, "database unavailable: %s",
				 res->message);
		return;
	}
	have = atoi(PQgetvalue(res->res, 0, 0));
	if (have != want) {
		http_reply_error(r, 503, "schema_not_current",
				 json_pack("{s:i,s:i}", "applied", have, "expected", want),
				 "database schema is at migration %d; this server needs %d", have,
				 want);
		return;
	}
	http_reply_json(r, 200,
			json_pack("{s:s,s:i,s:I}", "status", "ready", "schema", have, "seq",
				  (json_int_t)applied_seq()));
}

void
api_readyz(struct http_req *r)
{
	if (server_shutting_down()) {
		http_reply_error(r, 503, "shutting_down", NULL, "server is shutting down");
		return;
	}
	if (!server_map_ready()) {
		http_reply_error(r, 503, "starting", NULL,
				 "the map is still being loaded from the database");
		return;
	}
	if (db_query(server_db(), SQL_READY, NULL, ready_done, r) != 0)
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
}

void
api_metrics(struct http_req *r)
{
	char *buf = NULL;
	size_t len = 0;
	struct db_stats st;
	int rc;

	db_get_stats(server_db(), &st);
	rc = metrics_render(&buf, &len);
	rc |= metrics_appendf(
	    &buf, &len,
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
	    "# TYPE cmdb_db_connects_total counter\ncmdb_db_connects_total %lu\n"
	    "# HELP cmdb_graph_nodes Nodes in the in-memory graph.\n"
	    "# TYPE cmdb_graph_nodes gauge\ncmdb_graph_nodes %zu\n"
	    "# HELP cmdb_graph_edges Edges in the in-memory graph.\n"
	    "# TYPE cmdb_graph_edges gauge\ncmdb_graph_edges %zu\n"
	    "# HELP cmdb_change_seq Last change-log seq applied to the graph.\n"
	    "# TYPE cmdb_change_seq gauge\ncmdb_change_seq %lld\n",
	    st.total, st.up, st.busy, st.queued, st.queries, st.errors, st.unavailable, st.retries,
	    st.reconnects, graph_node_count(server_graph()), graph_edge_count(server_graph()),
	    applied_seq());
	rc |= metrics_appendf(&buf, &len,
			      "# HELP cmdb_watchers Graph queries parked with index/wait.\n"
			      "# TYPE cmdb_watchers gauge\ncmdb_watchers %zu\n",
			      watch_count(server_watch()));
	if (rc != 0 || buf == NULL) {
		free(buf);
		http_reply_error(r, 500, "internal", NULL, "could not render metrics");
		return;
	}
	http_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
	free(buf);
}
