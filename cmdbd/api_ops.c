/*
 * api_ops.c — /healthz, /readyz and /metrics: no token needed.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "log.h"
#include "metrics.h"
#include "migrate.h"
#include "app.h"
#include "noop.h"
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

/*
 * /readyz answers for reads, /readyz?for=write for writes (SPEC §7, README
 * "Running several instances"). Reads need the map loaded and caught up, and
 * the read database (the primary without --read-database) answering with the
 * current schema — or, with --ready-grace, reached that recently: the map then
 * answers from memory while the database is away (a failover). Writes need the
 * primary: answering, current, and not in recovery.
 */
struct ready_check {
	struct http_req *r;
	bool write;
};

static json_t *
ready_body(const struct app *a, bool write, int schema)
{
	return json_pack("{s:s,s:s,s:i,s:I}", "status", "ready", "for", write ? "write" : "read",
			 "schema", schema, "seq", (json_int_t)applied_seq(a));
}

/* Reads while the read database does not answer: within the grace, from memory. */
static bool
read_grace(struct http_req *r, const char *reason)
{
	long long grace_ms = r->app->cfg->ready_grace * 1000LL, at, now_ms;
	struct timespec now;
	json_t *body;

	if (grace_ms <= 0 || r->app->tailer == NULL ||
	    (at = tailer_read_ok_at(r->app->tailer)) == 0)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	now_ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
	if (now_ms - at > grace_ms)
		return false;
	body = ready_body(r->app, false, migrate_latest_version());
	json_object_set_new(body, "database", json_string(reason));
	json_object_set_new(body, "database_seen_ms_ago", json_integer(now_ms - at));
	http_reply_json(r, 200, body);
	return true;
}

static void
ready_done(void *arg, const struct db_result *res)
{
	struct ready_check *c = arg;
	struct http_req *r = c->r;
	bool write = c->write;
	int have, want = migrate_latest_version();

	free(c);
	if (res->status != DB_OK) {
		char q[300];

		log_debug("event=readyz_db_unavailable id=%s for=%s reason=%s", r->id,
			  write ? "write" : "read", log_q(res->message, q, sizeof(q)));
		if (!write && read_grace(r, "unavailable"))
			return;
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
	if (write && strcmp(PQgetvalue(res->res, 0, 1), "t") == 0) {
		/* A standby: CMDB_DATABASE_URL should list hosts with
		 * target_session_attrs=read-write; the pool finds the primary on its
		 * next connect. */
		http_reply_error(r, 503, "read_only", NULL,
				 "the write database is a standby (in recovery); writes wait for "
				 "a primary");
		return;
	}
	http_reply_json(r, 200, ready_body(r->app, write, have));
}

void
api_readyz(struct http_req *r)
{
	static const char *const allowed[] = {"for", NULL};
	const char *code, *detail, *what = http_query(r, "for");
	struct ready_check *c;
	bool write;

	if (!api_query_only(r, allowed, NULL))
		return;
	if (what != NULL && strcmp(what, "read") != 0 && strcmp(what, "write") != 0) {
		http_reply_bad(r, "for", "must be read or write (got \"%.20s\")", what);
		return;
	}
	write = what != NULL && strcmp(what, "write") == 0;
	if (r->app->stopping) {
		http_reply_error(r, 503, "shutting_down", NULL, "server is shutting down");
		return;
	}
	/* Writes do not need the map (the load, or the log after it, has them). */
	if (!write && (code = app_map_unready(r->app, &detail)) != NULL) {
		http_reply_error(r, 503, code, NULL, "%s", detail);
		return;
	}
	c = malloc(sizeof(*c));
	if (c == NULL) {
		http_reply_nomem(r);
		return;
	}
	c->r = r;
	c->write = write;
	if (db_query(write ? r->app->db : r->app->read_db, SQL_READY, NULL, ready_done, c) != 0) {
		free(c);
		http_reply_nomem(r);
	}
}

void
api_metrics(struct http_req *r)
{
	char *buf = NULL;
	size_t len = 0;
	struct db_stats st;
	graph *g = r->app->g;
	struct app_map_stats ms;
	struct noop_stats ns;
	int rc;

	db_get_stats(r->app->db, &st);
	app_map_stats(r->app, &ms);
	rc = metrics_render(&buf, &len);
	rc |= metrics_render_db(&buf, &len, &st);
	if (r->app->read_db != r->app->db) {
		/* The read database's pool (--read-database), beside the main one's. */
		db_get_stats(r->app->read_db, &st);
		rc |= metrics_appendf(
		    &buf, &len,
		    "# HELP cmdb_db_read_connections Read-database pool connections by state.\n"
		    "# TYPE cmdb_db_read_connections gauge\n"
		    "cmdb_db_read_connections{state=\"total\"} %d\n"
		    "cmdb_db_read_connections{state=\"up\"} %d\n"
		    "cmdb_db_read_connections{state=\"busy\"} %d\n"
		    "# HELP cmdb_db_read_queue_depth Statements waiting for a read connection.\n"
		    "# TYPE cmdb_db_read_queue_depth gauge\ncmdb_db_read_queue_depth %d\n"
		    "# HELP cmdb_db_read_queries_total Statements completed on the read "
		    "database.\n"
		    "# TYPE cmdb_db_read_queries_total counter\ncmdb_db_read_queries_total %lu\n"
		    "# HELP cmdb_db_read_unavailable_total Read statements refused: no "
		    "connection.\n"
		    "# TYPE cmdb_db_read_unavailable_total counter\n"
		    "cmdb_db_read_unavailable_total %lu\n",
		    st.total, st.up, st.busy, st.queued, st.queries, st.unavailable);
	}
	rc |= metrics_render_graph(&buf, &len, graph_node_count(g), graph_edge_count(g),
				   applied_seq(r->app));
	rc |= metrics_render_map(
	    &buf, &len, ms.ready, ms.apply_failures, ms.reloads, ms.verifications[APP_VERIFY_OK],
	    ms.verifications[APP_VERIFY_DIFFER], ms.verifications[APP_VERIFY_FAILED]);
	rc |= metrics_appendf(&buf, &len,
			      "# HELP cmdb_watchers Graph queries parked with index/wait.\n"
			      "# TYPE cmdb_watchers gauge\ncmdb_watchers %zu\n",
			      watch_count(r->app->watch));
	noop_get_stats(r->app->noop, &ns);
	rc |= metrics_appendf(
	    &buf, &len,
	    "# HELP cmdb_noop_batches_total Batches of identical re-posts sent (one statement, "
	    "one commit each).\n"
	    "# TYPE cmdb_noop_batches_total counter\ncmdb_noop_batches_total %lu\n"
	    "# HELP cmdb_noop_batched_total Identical re-posts sent in batches.\n"
	    "# TYPE cmdb_noop_batched_total counter\ncmdb_noop_batched_total %lu\n"
	    "# HELP cmdb_noop_refused_total Batched re-posts the database did not take as "
	    "no-ops (then applied alone).\n"
	    "# TYPE cmdb_noop_refused_total counter\ncmdb_noop_refused_total %lu\n"
	    "# HELP cmdb_noop_failed_total Batched re-posts whose batch failed.\n"
	    "# TYPE cmdb_noop_failed_total counter\ncmdb_noop_failed_total %lu\n"
	    "# HELP cmdb_noop_known_bytes_total Re-posts known by their bytes (not parsed).\n"
	    "# TYPE cmdb_noop_known_bytes_total counter\ncmdb_noop_known_bytes_total %lu\n"
	    "# HELP cmdb_noop_sources Sources whose last manifest's fingerprint this process "
	    "knows.\n"
	    "# TYPE cmdb_noop_sources gauge\ncmdb_noop_sources %lu\n",
	    ns.batches, ns.items, ns.refused, ns.failed, ns.bodies, ns.sources);
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
