/*
 * server.c — `cmdbd serve`: start-up, the loop, and graceful shutdown.
 *
 * Start-up order: the async pool and its LISTEN connection, the token cache, the
 * HTTP listener, then the map: loaded from PostgreSQL over a blocking connection
 * (the only blocking database work the server does), retried on a timer while the
 * database is away, after which the tailer follows the change log from the
 * loaded seq. /healthz answers from the first moment; /readyz once the map is in.
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
#include "history.h"
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
	struct event *sigterm, *sigint, *grace, *load_timer;
	int load_attempts;
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
bool
server_map_ready(void)
{
	return srv.tailer != NULL;
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
	struct timeval flush = {0, 300000};

	log_warn("event=shutdown_grace_expired inflight=%d", http_server_inflight(srv.http));
	/*
	 * Answer what is still waiting while the loop runs, so the answers are
	 * written: read-your-writes waits end, and every database statement fails
	 * (503). Then leave the loop after a moment for the writes to go out.
	 */
	if (srv.tailer != NULL)
		tailer_release_all(srv.tailer);
	db_close(srv.db);
	event_base_loopexit(srv.base, &flush);
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
	if (srv.tailer != NULL)
		tailer_release_all(srv.tailer);
	http_server_drain(srv.http);
}

/*
 * One attempt to load the graph over a blocking connection (the only blocking
 * database work the server does). Returns the seq it reflects, or -1. The
 * connect timeout keeps an unreachable host from stalling the loop for long; a
 * connect_timeout in the operator's conninfo wins.
 */
static long long
load_graph_once(void)
{
	const char *keys[] = {"connect_timeout", "dbname", NULL};
	const char *values[] = {"5", srv.cfg->database_url, NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	long long seq = -1;

	if (PQstatus(conn) == CONNECTION_OK) {
		seq = tailer_load(conn, srv.g);
	} else {
		const char *m = PQerrorMessage(conn);

		log_msg(srv.load_attempts == 1 ? LOG_WARN : LOG_DEBUG,
			"event=db_connect_failed attempt=%d reason=\"%.*s\"", srv.load_attempts,
			(int)strcspn(m, "\n"), m);
	}
	PQfinish(conn);
	return seq;
}

/*
 * Loads the map, and retries on a timer while the database is away or not yet
 * migrated. Until it succeeds the server answers: /healthz 200, /readyz 503, graph
 * queries 503; writes are accepted (the load's snapshot will include them).
 */
static void
load_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval again = {srv.load_attempts < 10 ? 1 : 3, 0};
	long long seq;

	(void)fd;
	(void)what;
	(void)arg;
	if (srv.stopping)
		return;
	srv.load_attempts++;
	seq = load_graph_once();
	if (seq >= 0) {
		srv.tailer =
		    tailer_new(srv.base, srv.db, SQL_CHANGES_TAIL, SQL_SOURCES_SEEN, srv.g, seq);
		if (srv.tailer == NULL) {
			log_error("event=graph_load_failed reason=\"out of memory\"");
			event_base_loopexit(srv.base, NULL);
			return;
		}
		/* Anything committed after the snapshot arrives through the log. */
		tailer_poke(srv.tailer);
		log_info("event=map_ready nodes=%zu edges=%zu seq=%lld", graph_node_count(srv.g),
			 graph_edge_count(srv.g), seq);
		return;
	}
	if (srv.load_attempts == 1)
		log_warn("event=waiting_for_database hint=\"is PostgreSQL up and `cmdbd migrate` "
			 "run?\"");
	/* A failed load may have left part of the map behind: start clean next time. */
	graph_free(srv.g);
	srv.g = graph_new();
	if (srv.g == NULL) {
		log_error("event=graph_load_failed reason=\"out of memory\"");
		event_base_loopexit(srv.base, NULL);
		return;
	}
	evtimer_add(srv.load_timer, &again);
}

int
server_run(const struct cfg *cfg)
{
	struct db_listen listen = {channels, on_notify, on_listen_connect, NULL};
	int rc = 1;

	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	srv.g = graph_new();
	srv.base = event_base_new();
	if (srv.g == NULL || srv.base == NULL)
		goto out;
	srv.db = db_new(srv.base, cfg->database_url, (int)cfg->db_pool_size, sql_statements,
			SQL_COUNT, &listen);
	if (srv.db == NULL)
		goto out;
	srv.auth = auth_new(srv.base, srv.db, SQL_TOKENS_ALL, SQL_TOKEN_ONE);
	if (srv.auth == NULL)
		goto out;
	srv.http = http_server_new(srv.base, cfg, on_drained, NULL);
	if (srv.http == NULL)
		goto out;
	srv.sigterm = evsignal_new(srv.base, SIGTERM, signal_cb, NULL);
	srv.sigint = evsignal_new(srv.base, SIGINT, signal_cb, NULL);
	srv.load_timer = evtimer_new(srv.base, load_cb, NULL);
	if (srv.sigterm == NULL || srv.sigint == NULL || srv.load_timer == NULL)
		goto out;
	evsignal_add(srv.sigterm, NULL);
	evsignal_add(srv.sigint, NULL);
	/* The first attempt runs now, so a healthy start serves the map from request one. */
	load_cb(-1, 0, NULL);
	log_info("event=serving listen=%s map_ready=%d", cfg->listen, server_map_ready());
	event_base_dispatch(srv.base);
	rc = 0;
	log_info("event=stopped");
out:
	/* The pool first: its pending callbacks still reply through http and the tailer. */
	db_free(srv.db);
	http_server_free(srv.http);
	tailer_free(srv.tailer);
	history_free_all(); /* as-of graphs (history.h) */
	auth_free(srv.auth);
	if (srv.sigterm != NULL)
		event_free(srv.sigterm);
	if (srv.sigint != NULL)
		event_free(srv.sigint);
	if (srv.grace != NULL)
		event_free(srv.grace);
	if (srv.load_timer != NULL)
		event_free(srv.load_timer);
	graph_free(srv.g);
	if (srv.base != NULL)
		event_base_free(srv.base);
	memset(&srv, 0, sizeof(srv));
	return rc;
}
