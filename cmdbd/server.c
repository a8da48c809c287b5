/*
 * server.c — `cmdbd serve`: start-up, the loop, the map's life, graceful shutdown.
 *
 * Start-up order: the async pool and its LISTEN connection, the token cache, the
 * HTTP listener, then the map: loaded from PostgreSQL in the background
 * (loader.h; retried on a timer while the database is away), after which the
 * tailer follows the change log from the loaded seq. /healthz answers from the
 * first moment; /readyz once the map is in and has caught up with the log.
 *
 * The map is reloaded the same way, whole, when the tailer cannot apply a change
 * row (or a verification with repair found a difference): the map is not ready
 * (503) meanwhile, the tailer waits, and the new graph is swapped in when it is
 * complete. Nothing here blocks the loop on the database.
 */
#include "server.h"

#include <stddef.h>

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "api.h"
#include "app.h"
#include "auth.h"
#include "db.h"
#include "http.h"
#include "loader.h"
#include "history.h"
#include "log.h"
#include "noop.h"
#include "sql.h"
#include "sweeper.h"
#include "tailer.h"
#include "verify.h"
#include "watch.h"

/* A reload that follows the last one within this many seconds is delayed, up to
 * RELOAD_BACKOFF_MAX_S (app_reload_map). */
#define RELOAD_QUIET_S 60
#define RELOAD_BACKOFF_MAX_S 30

/* Refs a periodic verification logs when something differs. */
#define PERIODIC_VERIFY_REFS 20

/*
 * Following a read database (a hot standby, which NOTIFY does not reach): the
 * tailer polls it, TAIL_POLL_MIN_MS after news (a NOTIFY from the primary, rows,
 * a reader waiting for a seq), backing off to TAIL_POLL_MAX_MS when idle.
 */
#define TAIL_POLL_MIN_MS 10
#define TAIL_POLL_MAX_MS 500

struct server {
	struct app app;	       /* what handlers reach (app.h); the rest is the server's own */
	struct loader *loader; /* a load under way */
	struct http_server *http;
	struct event *sigterm, *sigint, *grace, *load_timer, *verify_timer;
	int load_attempts;     /* of the load under way (reset once one succeeds) */
	bool reloading;	       /* the map is being reloaded: not ready */
	unsigned long reloads; /* reloads completed */
	time_t reloaded_at;    /* when the last one ended (monotonic seconds) */
	int reload_backoff;    /* seconds the next reload waits (see app_reload_map) */
	struct verify *verify; /* the running verification */
	app_verify_cb verify_cb;
	void *verify_arg;
	bool verify_repair;
	unsigned long verifications[APP_VERIFY_RESULTS];
	struct sweeper *sweeper;
};

static void on_tailer_failed(void *arg, long long seq, const char *reason);

/* The one server of the process. Handlers never see it: they get srv.app. */
static struct server srv;

/* The server that embeds a (the app.h operations are the server's). */
static const struct server *
server_of(const struct app *a)
{
	return (const struct server *)((const char *)a - offsetof(struct server, app));
}

static const char *const channels[] = {"cmdb_changes", "cmdb_tokens", NULL};

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	(void)arg;
	if (strcmp(channel, "cmdb_changes") == 0 && srv.app.tailer != NULL) {
		/* The payload is the last seq of the commit (migrations: cmdb_commit_changes). */
		if (payload != NULL)
			tailer_heard(srv.app.tailer, strtoll(payload, NULL, 10));
		tailer_poke(srv.app.tailer);
	} else if (strcmp(channel, "cmdb_tokens") == 0 && srv.app.auth != NULL)
		auth_reload(srv.app.auth);
}

/* The LISTEN connection is (re)established: anything may have happened meanwhile. */
static void
on_listen_connect(void *arg)
{
	(void)arg;
	if (srv.app.tailer != NULL)
		tailer_poke(srv.app.tailer);
	if (srv.app.auth != NULL)
		auth_reload(srv.app.auth);
}

static void
on_drained(void *arg)
{
	(void)arg;
	log_info("event=drained");
	event_base_loopexit(srv.app.base, NULL);
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
	watch_release_all(srv.app.watch);
	if (srv.app.tailer != NULL)
		tailer_release_all(srv.app.tailer);
	if (srv.app.read_db != srv.app.db)
		db_close(srv.app.read_db);
	db_close(srv.app.db);
	event_base_loopexit(srv.app.base, &flush);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct timeval tv = {srv.app.cfg->shutdown_grace, 0};

	(void)what;
	(void)arg;
	if (srv.app.stopping)
		return;
	srv.app.stopping = true;
	sweeper_stop(srv.sweeper);
	log_info("event=shutdown signal=%d inflight=%d", (int)sig, http_server_inflight(srv.http));
	srv.grace = evtimer_new(srv.app.base, grace_cb, NULL);
	if (srv.grace != NULL)
		evtimer_add(srv.grace, &tv);
	/* Parked requests answer now; then the listener closes and in-flight ones finish. */
	verify_cancel(srv.verify, "the server is shutting down");
	watch_release_all(srv.app.watch);
	if (srv.app.tailer != NULL)
		tailer_release_all(srv.app.tailer);
	http_server_drain(srv.http);
}

/* ------------------------------------------------------------ the map */

static void start_load(void);

/* Retries a failed load: every second for the first ten attempts, then every 3 s. */
static void
load_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	start_load();
}

/* A row of the tailer's sightings poll (tailer.h). */
static void
on_source_seen(void *arg, const char *source, const char *at, const char *fp)
{
	(void)arg;
	noop_learn(srv.app.noop, source, fp, at);
}

/* A loaded graph goes live: the first one starts the tailer, a reload swaps it in. */
static void
install(graph *g, long long seq)
{
	graph *old = srv.app.g;
	struct timespec now;

	if (srv.app.tailer == NULL) {
		srv.app.tailer = tailer_new(srv.app.base, srv.app.read_db, SQL_CHANGES_TAIL,
					    SQL_SOURCES_SEEN, g, seq, on_tailer_failed, NULL);
		if (srv.app.tailer != NULL && srv.app.read_db != srv.app.db &&
		    tailer_set_poll(srv.app.tailer, TAIL_POLL_MIN_MS, TAIL_POLL_MAX_MS) != 0) {
			tailer_free(srv.app.tailer);
			srv.app.tailer = NULL;
		}
		if (srv.app.tailer != NULL) {
			srv.app.watch =
			    watch_new(srv.app.base, g, srv.app.tailer, srv.app.cfg->max_watchers);
			/* Other processes' applies teach the no-op memory. */
			tailer_set_seen_listener(srv.app.tailer, on_source_seen, NULL);
		}
		if (srv.app.tailer == NULL || srv.app.watch == NULL) {
			log_error("event=graph_load_failed reason=\"out of memory\"");
			graph_free(g);
			event_base_loopexit(srv.app.base, NULL);
			return;
		}
		srv.app.g = g;
		/* Anything committed after the snapshot arrives through the log; the map
		 * is ready once that first read has reached the end of it. */
		tailer_poke(srv.app.tailer);
		log_info("event=map_loaded nodes=%zu edges=%zu seq=%lld", graph_node_count(g),
			 graph_edge_count(g), seq);
	} else {
		srv.app.g = g;
		tailer_reset(srv.app.tailer, g, seq);
		/* Parked watchers' read sets name nodes of the old graph: re-run them all. */
		watch_graph_replaced(srv.app.watch, g);
		srv.reloading = false;
		srv.reloads++;
		clock_gettime(CLOCK_MONOTONIC, &now);
		srv.reloaded_at = now.tv_sec;
		log_info("event=map_reloaded nodes=%zu edges=%zu seq=%lld reloads=%lu",
			 graph_node_count(g), graph_edge_count(g), seq, srv.reloads);
	}
	graph_free(old);
	srv.load_attempts = 0;
}

static void
load_done(void *arg, graph *g, long long seq, const char *error)
{
	struct timeval again = {srv.load_attempts < 10 ? 1 : 3, 0};
	char q[300];

	(void)arg;
	srv.loader = NULL;
	if (srv.app.stopping) {
		graph_free(g);
		return;
	}
	if (g != NULL) {
		install(g, seq);
		return;
	}
	log_msg(srv.load_attempts == 1 ? LOG_WARN : LOG_DEBUG,
		"event=map_load_failed attempt=%d reason=%s", srv.load_attempts,
		log_q(error, q, sizeof(q)));
	if (srv.load_attempts == 1 && srv.app.tailer == NULL)
		log_warn("event=waiting_for_database hint=\"is PostgreSQL up and `cmdbd migrate` "
			 "run?\"");
	evtimer_add(srv.load_timer, &again);
}

/*
 * Loads the map in the background (loader.h) — at start, for each retry while
 * the database is away or not yet migrated, and for a reload. Until the first
 * load is in the server answers /healthz 200, /readyz 503, graph queries 503;
 * writes are accepted (the load's snapshot, or the log after it, has them).
 */
static void
start_load(void)
{
	struct timeval again = {1, 0};

	if (srv.app.stopping || srv.loader != NULL)
		return;
	srv.load_attempts++;
	/* The connect timeout bounds how long an unreachable host holds the attempt;
	 * a connect_timeout in the operator's conninfo wins. */
	srv.loader = loader_start(srv.app.base, srv.app.read_url, 5, load_done, NULL);
	if (srv.loader == NULL) {
		log_error("event=map_load_failed reason=\"cannot start the loader: %s\"",
			  strerror(errno));
		evtimer_add(srv.load_timer, &again);
	}
}

void
app_reload_map(struct app *a, const char *reason)
{
	struct timespec now;
	struct timeval wait = {0, 0};

	(void)a; /* the one server's: a is srv.app */
	if (srv.app.tailer == NULL || srv.reloading || srv.app.stopping)
		return; /* the first load, or a reload, is already under way */
	/*
	 * Reloads in a row (a writer that keeps logging rows this version cannot
	 * apply, say) back off: the next one waits 1, 2, 4 … up to 30 s when the
	 * last ended less than RELOAD_QUIET_S ago, so the database is not read whole
	 * in a loop. The map is not ready meanwhile.
	 */
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (srv.reloads > 0 && now.tv_sec - srv.reloaded_at < RELOAD_QUIET_S)
		srv.reload_backoff = srv.reload_backoff ? srv.reload_backoff * 2 : 1;
	else
		srv.reload_backoff = 0;
	if (srv.reload_backoff > RELOAD_BACKOFF_MAX_S)
		srv.reload_backoff = RELOAD_BACKOFF_MAX_S;
	srv.reloading = true;
	log_warn("event=map_reload reason=\"%s\" seq=%lld delay_s=%d", reason,
		 tailer_applied(srv.app.tailer), srv.reload_backoff);
	/* A verification compares the graph that is about to go. */
	verify_cancel(srv.verify, "the map is being reloaded");
	tailer_suspend(srv.app.tailer);
	wait.tv_sec = srv.reload_backoff;
	if (wait.tv_sec > 0)
		evtimer_add(srv.load_timer, &wait);
	else
		start_load();
}

/* The tailer met a row it could not apply (it has logged and counted it). */
static void
on_tailer_failed(void *arg, long long seq, const char *reason)
{
	char why[200];

	(void)arg;
	snprintf(why, sizeof(why), "change %lld could not be applied: %s", seq, reason);
	app_reload_map(&srv.app, why);
}

const char *
app_map_unready(const struct app *a, const char **detail)
{
	const struct server *s = server_of(a);
	const char *code = NULL, *text = NULL;

	if (a->tailer == NULL || (!s->reloading && !tailer_synced(a->tailer))) {
		code = "starting";
		text = "the map is still being loaded from the database";
	} else if (s->reloading) {
		code = "reloading";
		text = "the map is being reloaded from the database";
	}
	if (detail != NULL)
		*detail = text;
	return code;
}

static bool
map_ready(void)
{
	return app_map_unready(&srv.app, NULL) == NULL;
}

void
app_map_stats(const struct app *a, struct app_map_stats *out)
{
	const struct server *s = server_of(a);

	memset(out, 0, sizeof(*out));
	out->ready = app_map_unready(a, NULL) == NULL;
	out->reloads = s->reloads;
	out->apply_failures = a->tailer != NULL ? tailer_apply_failures(a->tailer) : 0;
	memcpy(out->verifications, s->verifications, sizeof(out->verifications));
}

/* ------------------------------------------------------------ verification */

static void
verify_done(void *arg, json_t *report, const char *error)
{
	app_verify_cb cb = srv.verify_cb;
	void *cb_arg = srv.verify_arg;
	bool repair = srv.verify_repair;

	(void)arg;
	srv.verify = NULL;
	srv.verify_cb = NULL;
	if (report == NULL) {
		srv.verifications[APP_VERIFY_FAILED]++;
	} else if (json_is_true(json_object_get(report, "ok"))) {
		srv.verifications[APP_VERIFY_OK]++;
		if (repair)
			json_object_set_new(report, "repair", json_string("not_needed"));
	} else {
		srv.verifications[APP_VERIFY_DIFFER]++;
		if (repair) {
			app_reload_map(&srv.app, "a verification found differences");
			json_object_set_new(report, "repair", json_string("reloading"));
		}
	}
	cb(cb_arg, report, error);
}

int
app_verify(struct app *a, size_t max_differ, bool repair, app_verify_cb cb, void *arg)
{
	(void)a; /* the one server's: a is srv.app */
	if (srv.verify != NULL) {
		errno = EBUSY;
		return -1;
	}
	if (!map_ready() || srv.app.stopping) {
		errno = EAGAIN;
		return -1;
	}
	srv.verify_cb = cb;
	srv.verify_arg = arg;
	srv.verify_repair = repair;
	srv.verify = verify_start(srv.app.base, srv.app.read_db, SQL_VERIFY, srv.app.tailer,
				  max_differ, verify_done, NULL);
	if (srv.verify == NULL) {
		srv.verify_cb = NULL;
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

/* --verify-interval: verify, and repair what differs, now and then. */
static void
periodic_done(void *arg, json_t *report, const char *error)
{
	(void)arg;
	(void)error; /* verify.c has logged the outcome */
	if (report != NULL && !json_is_true(json_object_get(report, "ok"))) {
		char *nodes = json_dumps(
		    json_object_get(json_object_get(report, "nodes"), "differ"), JSON_COMPACT);
		char *edges = json_dumps(
		    json_object_get(json_object_get(report, "edges"), "differ"), JSON_COMPACT);
		char qn[1024], qe[1024];

		log_warn("event=verify_differs nodes=%s edges=%s", log_q(nodes, qn, sizeof(qn)),
			 log_q(edges, qe, sizeof(qe)));
		free(nodes);
		free(edges);
	}
	json_decref(report);
}

static void
verify_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	if (map_ready() && srv.verify == NULL)
		(void)app_verify(&srv.app, PERIODIC_VERIFY_REFS, true, periodic_done, NULL);
}

/*
 * The loop. With epoll, libevent's change list: the changes of one turn of the loop
 * go to the kernel once, at its end, so a connection's read interest turned off and on
 * again within a request costs no system call (evhttp toggles it several times per
 * request: 5.6 epoll_ctl calls a request before, measured with strace -c). libevent
 * warns that the change list is unsafe with descriptors cloned by dup(); the server
 * has none (sockets from accept(), libpq's, the signal pipe).
 */
static struct event_base *
new_base(void)
{
	struct event_config *c = event_config_new();
	struct event_base *base;

	if (c == NULL)
		return NULL;
	event_config_set_flag(c, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
	base = event_base_new_with_config(c);
	event_config_free(c);
	return base;
}

int
server_run(const struct cfg *cfg)
{
	struct db_listen listen = {channels, on_notify, on_listen_connect, NULL};
	int rc = 1;

	memset(&srv, 0, sizeof(srv));
	srv.app.cfg = cfg;
	signal(SIGPIPE, SIG_IGN);
	srv.app.g = graph_new();
	srv.app.base = new_base();
	if (srv.app.g == NULL || srv.app.base == NULL)
		goto out;
	srv.app.db = db_new(srv.app.base, cfg->database_url, (int)cfg->db_pool_size, sql_statements,
			    SQL_COUNT, &listen);
	if (srv.app.db == NULL)
		goto out;
	/* SPEC §7: the map, the log and the lists from a standby. It cannot LISTEN
	 * (NOTIFY does not reach standbys): the primary's LISTEN above pokes the
	 * tailer, which also polls (install()). */
	srv.app.read_db = cfg->read_database_url[0]
			      ? db_new(srv.app.base, cfg->read_database_url, (int)cfg->db_pool_size,
				       sql_statements, SQL_COUNT, NULL)
			      : srv.app.db;
	if (srv.app.read_db == NULL)
		goto out;
	if (srv.app.read_db != srv.app.db)
		db_set_label(srv.app.read_db, "read");
	srv.app.read_url = cfg->read_database_url[0] ? cfg->read_database_url : cfg->database_url;
	srv.app.noop = noop_new(srv.app.base, srv.app.db, SQL_MANIFEST_NOOP_BATCH);
	if (srv.app.noop == NULL)
		goto out;
	srv.app.auth = auth_new(srv.app.base, srv.app.db, SQL_TOKENS_ALL, SQL_TOKEN_ONE);
	history_bind(&srv.app);
	if (srv.app.auth == NULL)
		goto out;
	srv.http = http_server_new(srv.app.base, cfg, srv.app.auth, &srv.app, on_drained, NULL);
	if (srv.http == NULL)
		goto out;
	srv.sweeper = sweeper_new(srv.app.base, srv.app.db, SQL_SWEEP, cfg->source_ttl,
				  cfg->orphan_purge_after);
	if (srv.sweeper == NULL)
		goto out;
	srv.sigterm = evsignal_new(srv.app.base, SIGTERM, signal_cb, NULL);
	srv.sigint = evsignal_new(srv.app.base, SIGINT, signal_cb, NULL);
	srv.load_timer = evtimer_new(srv.app.base, load_timer_cb, NULL);
	srv.verify_timer = event_new(srv.app.base, -1, EV_PERSIST, verify_timer_cb, NULL);
	if (srv.sigterm == NULL || srv.sigint == NULL || srv.load_timer == NULL ||
	    srv.verify_timer == NULL)
		goto out;
	evsignal_add(srv.sigterm, NULL);
	evsignal_add(srv.sigint, NULL);
	if (cfg->verify_interval > 0) {
		struct timeval every = {cfg->verify_interval, 0};

		evtimer_add(srv.verify_timer, &every);
	}
	start_load();
	log_info("event=serving listen=%s verify_interval=%ld read_database=%s", cfg->listen,
		 cfg->verify_interval, srv.app.read_db != srv.app.db ? "separate" : "primary");
	event_base_dispatch(srv.app.base);
	rc = 0;
	log_info("event=stopped");
out:
	/* A load under way is stopped (and what it built freed). */
	loader_cancel(srv.loader);
	srv.loader = NULL;
	/* Answered now if the loop ended before it did (its leftovers go with the pool
	 * and the tailer below). */
	verify_cancel(srv.verify, "the server is shutting down");
	/* The pool first: its pending callbacks still reply through http and the tailer. */
	if (srv.app.read_db != srv.app.db)
		db_free(srv.app.read_db);
	db_free(srv.app.db);
	noop_free(srv.app.noop); /* after the pool: its batches out have been answered */
	http_server_free(srv.http);
	watch_free(srv.app.watch);
	tailer_free(srv.app.tailer);
	history_free_all(); /* as-of graphs (history.h) */
	sweeper_free(srv.sweeper);
	auth_free(srv.app.auth);
	if (srv.sigterm != NULL)
		event_free(srv.sigterm);
	if (srv.sigint != NULL)
		event_free(srv.sigint);
	if (srv.grace != NULL)
		event_free(srv.grace);
	if (srv.load_timer != NULL)
		event_free(srv.load_timer);
	if (srv.verify_timer != NULL)
		event_free(srv.verify_timer);
	graph_free(srv.app.g);
	if (srv.app.base != NULL)
		event_base_free(srv.app.base);
	memset(&srv, 0, sizeof(srv));
	return rc;
}
