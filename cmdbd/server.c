/*
 * server.c — `cmdbd serve`: start-up, the loop, and graceful shutdown.
 *
 * Start-up order: load the graph from PostgreSQL over a blocking connection (the
 * only blocking database work the server does, before it accepts anything), then
 * start the async pool and its LISTEN connection, the token cache, the tailer from
 * the loaded seq, and finally the HTTP listener.
 */
#include "server.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>

#include "api.h"
#include "auth.h"
#include "db.h"
#include "http.h"
#include "log.h"
#include "sql.h"
#include "tailer.h"

struct server {
	const struct cfg *cfg;
	struct event_base *base;
	struct db *db;
	struct auth *auth;
	graph *g;
	struct tailer *tailer;
	struct http_server *http;
	struct event *sigterm, *sigint, *grace;
	bool stopping;
};

static struct server srv;

struct auth *
server_auth(void)
{
	return srv.auth;
}
struct db *
server_db(void)
{
	return srv.db;
}
graph *
server_graph(void)
{
	return srv.g;
}
struct tailer *
server_tailer(void)
{
	return srv.tailer;
}
const struct cfg *
server_cfg(void)
{
	return srv.cfg;
}
struct event_base *
server_base(void)
{
	return srv.base;
}
bool
server_shutting_down(void)
{
	return srv.stopping;
}

static const char *const channels[] = {"cmdb_changes", "cmdb_tokens", NULL};

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	(void)arg;
	(void)payload;
	if (strcmp(channel, "cmdb_changes") == 0 && srv.tailer != NULL)
		tailer_poke(srv.tailer);
	else if (strcmp(channel, "cmdb_tokens") == 0 && srv.auth != NULL)
		auth_reload(srv.auth);
}

/* The LISTEN connection is (re)established: anything may have happened meanwhile. */
static void
on_listen_connect(void *arg)
{
	(void)arg;
	if (srv.tailer != NULL)
		tailer_poke(srv.tailer);
	if (srv.auth != NULL)
		auth_reload(srv.auth);
}

static void
on_drained(void *arg)
{
	(void)arg;
	log_info("event=drained");
	event_base_loopexit(srv.base, NULL);
}

static void
grace_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	log_warn("event=shutdown_grace_expired inflight=%d", http_server_inflight(srv.http));
	event_base_loopexit(srv.base, NULL);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = {srv.cfg->shutdown_grace, 0};

	(void)what;
	(void)arg;
	if (srv.stopping)
		return;
	srv.stopping = true;
	log_info("event=shutdown signal=%d inflight=%d", (int)sig, http_server_inflight(srv.http));
	srv.grace = evtimer_new(srv.base, grace_cb, NULL);
	if (srv.grace != NULL)
		evtimer_add(srv.grace, &tv);
	/* Parked requests answer now; then the listener closes and in-flight ones finish. */
	tailer_release_all(srv.tailer);
	http_server_drain(srv.http);
}

/* Loads the graph, retrying while the database is away or not yet migrated. */
static long long
load_graph(const struct cfg *cfg)
{
	for (int attempt = 1;; attempt++) {
		PGconn *conn = PQconnectdb(cfg->database_url);
		long long seq = -1;

		if (PQstatus(conn) == CONNECTION_OK) {
			seq = tailer_load(conn, srv.g);
		} else {
			const char *m = PQerrorMessage(conn);
			log_warn("event=db_connect_failed attempt=%d reason=\"%.*s\"", attempt,
				 (int)strcspn(m, "\n"), m);
		}
		PQfinish(conn);
		if (seq >= 0)
			return seq;
		if (attempt == 1)
			log_warn("event=waiting_for_database hint=\"is PostgreSQL up and "
				 "`cmdbd migrate` run?\"");
		graph_free(srv.g);
		srv.g = graph_new();
		if (srv.g == NULL)
			return -1;
		sleep(attempt < 10 ? 1 : 3);
	}
}

int
server_run(const struct cfg *cfg)
{
	struct db_listen listen = {channels, on_notify, on_listen_connect, NULL};
	long long seq;
	int rc = 1;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	srv.g = graph_new();
	srv.base = event_base_new();
	if (srv.g == NULL || srv.base == NULL)
		goto out;
	seq = load_graph(cfg);
	if (seq < 0)
		goto out;
	srv.db = db_new(srv.base, cfg->database_url, (int)cfg->db_pool_size, sql_statements,
			SQL_COUNT, &listen);
	if (srv.db == NULL)
		goto out;
	srv.auth = auth_new(srv.base, srv.db, SQL_TOKENS_ALL, SQL_TOKEN_ONE);
	srv.tailer = tailer_new(srv.base, srv.db, SQL_CHANGES_TAIL, srv.g, seq);
	if (srv.auth == NULL || srv.tailer == NULL)
		goto out;
	srv.http = http_server_new(srv.base, cfg, on_drained, NULL);
	if (srv.http == NULL)
		goto out;
	srv.sigterm = evsignal_new(srv.base, SIGTERM, signal_cb, NULL);
	srv.sigint = evsignal_new(srv.base, SIGINT, signal_cb, NULL);
	if (srv.sigterm == NULL || srv.sigint == NULL)
		goto out;
	evsignal_add(srv.sigterm, NULL);
	evsignal_add(srv.sigint, NULL);
	log_info("event=serving listen=%s nodes=%zu edges=%zu seq=%lld", cfg->listen,
		 graph_node_count(srv.g), graph_edge_count(srv.g), seq);
	event_base_dispatch(srv.base);
	rc = 0;
	log_info("event=stopped");
out:
	/* The pool first: its pending callbacks still reply through http and the tailer. */
	db_free(srv.db);
	http_server_free(srv.http);
	tailer_free(srv.tailer);
	auth_free(srv.auth);
	if (srv.sigterm != NULL)
		event_free(srv.sigterm);
	if (srv.sigint != NULL)
		event_free(srv.sigint);
	if (srv.grace != NULL)
		event_free(srv.grace);
	graph_free(srv.g);
	if (srv.base != NULL)
		event_base_free(srv.base);
	memset(&srv, 0, sizeof(srv));
	return rc;
}
