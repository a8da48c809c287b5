/*
 * api_ops.c — /healthz, /readyz and /metrics: no token needed.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "app.h"
#include "sql.h"
#include "tailer.h"
#include "watch.h"

static long long
applied_seq(const struct app *a)
{
	return a->tailer ? tailer_applied(a->tailer) : 0;
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
		char q[300];

		log_debug("event=readyz_db_unavailable id=%s reason=%s", r->id,
			  log_q(res->message, q, sizeof(q)));
		http_reply_error(r, 503, "unavailable", NULL, "database unavailable");
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
				  (json_int_t)applied_seq(r->app)));
}

void
api_readyz(struct http_req *r)
{
	const char *code, *detail;

	if (r->app->stopping) {
		http_reply_error(r, 503, "shutting_down", NULL, "server is shutting down");
		return;
	}
	if ((code = app_map_unready(r->app, &detail)) != NULL) {
		http_reply_error(r, 503, code, NULL, "%s", detail);
		return;
	}
	if (db_query(r->app->db, SQL_READY, NULL, ready_done, r) != 0)
		http_reply_nomem(r);
}

void
api_metrics(struct http_req *r)
{
	char *buf = NULL;
	size_t len = 0;
	struct db_stats st;
	graph *g = r->app->g;
	struct app_map_stats ms;
	int rc;

	db_get_stats(r->app->db, &st);
	app_map_stats(r->app, &ms);
	rc = metrics_render(&buf, &len);
	rc |= metrics_render_db(&buf, &len, &st);
	rc |= metrics_render_graph(&buf, &len, graph_node_count(g), graph_edge_count(g),
				   applied_seq(r->app));
	rc |= metrics_render_map(
	    &buf, &len, ms.ready, ms.apply_failures, ms.reloads, ms.verifications[APP_VERIFY_OK],
	    ms.verifications[APP_VERIFY_DIFFER], ms.verifications[APP_VERIFY_FAILED]);
	rc |= metrics_appendf(&buf, &len,
			      "# HELP cmdb_watchers Graph queries parked with index/wait.\n"
			      "# TYPE cmdb_watchers gauge\ncmdb_watchers %zu\n",
			      watch_count(r->app->watch));
	rc |= metrics_appendf(
	    &buf, &len,
	    "# HELP cmdb_change_seq_latest Highest change-log seq this process was notified of; "
	    "minus cmdb_change_seq, how far the graph is behind.\n"
	    "# TYPE cmdb_change_seq_latest gauge\ncmdb_change_seq_latest %lld\n",
	    r->app->tailer ? tailer_latest(r->app->tailer) : 0);
	if (rc != 0 || buf == NULL) {
		free(buf);
		http_reply_nomem(r); /* open_memstream/fprintf fail only for memory */
		return;
	}
	http_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
	free(buf);
}
