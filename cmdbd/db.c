/*
 * db.c — asynchronous libpq connection pool on libevent (see db.h).
 *
 * Each connection is a small state machine driven by one event on its socket:
 *
 *   DOWN --start--> CONNECTING --PQconnectPoll OK--> SETUP --session set--> IDLE
 *   IDLE --job--> PREPARING? --> BUSY --result--> IDLE
 *   any --socket error / CONNECTION_BAD--> DOWN (retry timer with backoff)
 *
 * Statements are prepared lazily, the first time a connection runs each one, so
 * a server started before `cmdbd migrate` becomes usable as soon as the schema is.
 */
#include "db.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "log.h"

#define DB_QUEUE_MAX 10000
#define DB_BACKOFF_MIN_MS 100
#define DB_BACKOFF_MAX_MS 5000
#define DB_CONNECT_TIMEOUT_S 10

enum conn_state { CS_DOWN, CS_CONNECTING, CS_SETUP, CS_IDLE, CS_PREPARING, CS_BUSY };

struct db_job {
	int stmt;
	char **params;
	int attempts;
	db_cb cb;
	void *arg;
	struct db_job *next;
};

struct db_conn {
	struct db *db;
	int id;
	bool listener;
	PGconn *pg;
	enum conn_state state;
	int sock;
	struct event *ev;    /* socket event, re-assigned as needs change */
	struct event *timer; /* reconnect backoff and connect timeout */
	int backoff_ms;
	bool *prepared;	    /* per statement */
	struct db_job *job; /* running job (PREPARING/BUSY) */
	PGresult *result;   /* first result of the running command */
};

struct db {
	struct event_base *base;
	char *conninfo;
	const char *label; /* in log lines: db_set_label() */
	const struct db_stmt *stmts;
	int nstmts;
	struct db_conn *conns;
	int nconns;
	struct db_conn *listen_conn;
	struct db_listen listen;
	struct db_job *head, *tail;
	int queued;
	struct db_job *failed; /* answered DB_UNAVAILABLE from the loop, see fail_later() */
	struct event *fail_ev;
	bool closing; /* db_close() or db_free(): queries fail at once */
	struct db_stats stats;
};

static void conn_start(struct db_conn *c);
static void conn_event_cb(evutil_socket_t fd, short what, void *arg);
static void conn_dispatch(struct db_conn *c);

/* ---------------------------------------------------------------- jobs */

static void
job_free(struct db_job *j, int nparams)
{
	if (j == NULL)
		return;
	if (j->params != NULL)
		for (int i = 0; i < nparams; i++)
			free(j->params[i]);
	free(j->params);
	free(j);
}

static void
job_finish(struct db *db, struct db_job *j, enum db_status status, PGresult *res,
	   const char *message)
{
	struct db_result r = {.status = status, .res = res, .sqlstate = "", .message = message};

	if (res != NULL) {
		const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

		if (st != NULL)
			r.sqlstate = st;
		if (status == DB_ERROR && msg != NULL)
			r.message = msg;
	}
	if (r.message == NULL)
		r.message = "";
	if (status == DB_ERROR)
		db->stats.errors++;
	else if (status == DB_UNAVAILABLE)
		db->stats.unavailable++;
	j->cb(j->arg, &r);
	job_free(j, db->stmts[j->stmt].nparams);
}

/* Answers every job on the failed list (oldest first) with DB_UNAVAILABLE. */
static void
run_failed(struct db *db)
{
	struct db_job *list = db->failed, *rev = NULL;

	db->failed = NULL;
	while (list != NULL) { /* the list is newest first: reverse it */
		struct db_job *next = list->next;

		list->next = rev;
		rev = list;
		list = next;
	}
	while (rev != NULL) {
		struct db_job *next = rev->next;

		job_finish(db, rev, DB_UNAVAILABLE, NULL, "database unavailable");
		rev = next;
	}
}

static void
failed_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	run_failed(arg);
}

/*
 * Fails a job from the loop, never from the caller's stack: a callback must not
 * run inside db_query(), and the caller may be in the middle of changing state.
 */
static void
fail_later(struct db *db, struct db_job *j)
{
	j->next = db->failed;
	db->failed = j;
	event_active(db->fail_ev, EV_TIMEOUT, 0);
}

static void
fail_queue(struct db *db)
{
	struct db_job *j;

	while ((j = db->head) != NULL) {
		db->head = j->next;
		db->queued--;
		fail_later(db, j);
	}
	db->tail = NULL;
}

static bool
conn_up(const struct db_conn *c)
{
	return c->state == CS_IDLE || c->state == CS_BUSY || c->state == CS_PREPARING ||
	       c->state == CS_SETUP;
}

bool
db_ready(const struct db *db)
{
	for (int i = 0; i < db->nconns; i++)
		if (conn_up(&db->conns[i]) && db->conns[i].state != CS_SETUP)
			return true;
	return false;
}

static bool
any_conn_up(const struct db *db)
{
	for (int i = 0; i < db->nconns; i++)
		if (conn_up(&db->conns[i]))
			return true;
	return false;
}

/* Worth queueing for: a connection is up or on its way (bounded by the connect timeout). */
static bool
any_conn_hopeful(const struct db *db)
{
	for (int i = 0; i < db->nconns; i++)
		if (conn_up(&db->conns[i]) || db->conns[i].state == CS_CONNECTING)
			return true;
	return false;
}

/* ---------------------------------------------------------- connections */

static void
conn_wait(struct db_conn *c, short what)
{
	event_del(c->ev);
	event_assign(c->ev, c->db->base, c->sock, what, conn_event_cb, c);
	event_add(c->ev, NULL);
}

static void
conn_close(struct db_conn *c)
{
	event_del(c->ev);
	if (c->result != NULL) {
		PQclear(c->result);
		c->result = NULL;
	}
	if (c->pg != NULL) {
		PQfinish(c->pg);
		c->pg = NULL;
	}
	c->sock = -1;
	if (c->prepared != NULL)
		memset(c->prepared, 0, sizeof(bool) * (size_t)c->db->nstmts);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	(void)fd;
	(void)what;
	if (c->state == CS_CONNECTING) {
		/* The connect timeout fired: the server accepts but does not answer. */
		log_warn("event=db_connect_timeout pool=%s conn=%d", c->db->label, c->id);
		conn_close(c);
		c->state = CS_DOWN;
		if (!c->listener && !any_conn_up(c->db))
			fail_queue(c->db);
	}
	if (c->state == CS_DOWN)
		conn_start(c);
}

static void
schedule_retry(struct db_conn *c)
{
	struct timeval tv;

	if (c->db->closing)
		return;
	if (c->backoff_ms == 0)
		c->backoff_ms = DB_BACKOFF_MIN_MS;
	tv.tv_sec = c->backoff_ms / 1000;
	tv.tv_usec = (c->backoff_ms % 1000) * 1000;
	evtimer_add(c->timer, &tv);
	c->backoff_ms *= 2;
	if (c->backoff_ms > DB_BACKOFF_MAX_MS)
		c->backoff_ms = DB_BACKOFF_MAX_MS;
}

/* The connection broke: fail its job, close, and try again later. */
static void
conn_lost(struct db_conn *c, const char *why)
{
	struct db *db = c->db;
	struct db_job *j = c->job;
	bool was_up = conn_up(c);

	if (was_up) {
		char q[256];

		log_warn("event=db_connection_lost pool=%s conn=%d listener=%d reason=%s",
			 c->db->label, c->id, c->listener, log_q(why, q, sizeof(q)));
	}
	c->job = NULL;
	conn_close(c);
	c->state = CS_DOWN;
	if (j != NULL)
		fail_later(db, j);
	if (!c->listener && !any_conn_up(db))
		fail_queue(db);
	schedule_retry(c);
}

/* Server notices (and the FATAL that precedes a kill) become log lines. */
static void
notice_cb(void *arg, const char *message)
{
	struct db_conn *c = arg;
	char q[512];
	size_t n = strcspn(message, "\n");
	char line[512];

	snprintf(line, sizeof(line), "%.*s", (int)n, message);
	log_info("event=db_notice pool=%s conn=%d message=%s", c->db->label, c->id,
		 log_q(line, q, sizeof(q)));
}

static void
conn_start(struct db_conn *c)
{
	struct timeval tv = {DB_CONNECT_TIMEOUT_S, 0};

	{
		/*
		 * TCP keepalives, so a half-open connection (a peer gone without a FIN)
		 * fails in about a minute instead of two hours. The operator's conninfo,
		 * expanded from "dbname", overrides these defaults.
		 */
		const char *keys[] = {"keepalives",	  "keepalives_idle", "keepalives_interval",
				      "keepalives_count", "dbname",	     NULL};
		const char *values[] = {"1", "30", "10", "3", c->db->conninfo, NULL};

		c->pg = PQconnectStartParams(keys, values, 1);
	}
	if (c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD) {
		const char *msg = c->pg ? PQerrorMessage(c->pg) : "out of memory";

		log_msg(c->backoff_ms <= DB_BACKOFF_MIN_MS ? LOG_WARN : LOG_DEBUG,
			"event=db_connect_failed pool=%s conn=%d reason=\"%.*s\"", c->db->label,
			c->id, (int)strcspn(msg, "\n"), msg);
		conn_close(c);
		c->state = CS_DOWN;
		schedule_retry(c);
		return;
	}
	PQsetnonblocking(c->pg, 1);
	PQsetNoticeProcessor(c->pg, notice_cb, c);
	c->state = CS_CONNECTING;
	c->sock = PQsocket(c->pg);
	c->db->stats.reconnects++;
	evtimer_add(c->timer, &tv);
	conn_wait(c, EV_WRITE);
}

/* Sends the session set-up (and LISTENs for the listener). */
static void
conn_setup(struct db_conn *c)
{
	char sql[1024];
	size_t n;

	n = (size_t)snprintf(sql, sizeof(sql),
			     "SET application_name = 'cmdbd'; SET statement_timeout = '60s'; "
			     "SET idle_in_transaction_session_timeout = '60s';");
	if (c->listener && c->db->listen.channels != NULL)
		for (const char *const *ch = c->db->listen.channels; *ch && n < sizeof(sql); ch++)
			n += (size_t)snprintf(sql + n, sizeof(sql) - n, " LISTEN %s;", *ch);
	c->state = CS_SETUP;
	if (!PQsendQuery(c->pg, sql)) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	conn_wait(c, EV_READ | EV_WRITE | EV_PERSIST);
}

static void
connect_poll(struct db_conn *c)
{
	PostgresPollingStatusType st = PQconnectPoll(c->pg);

	if (PQsocket(c->pg) != c->sock)
		c->sock = PQsocket(c->pg);
	switch (st) {
	case PGRES_POLLING_READING:
		conn_wait(c, EV_READ);
		break;
	case PGRES_POLLING_WRITING:
		conn_wait(c, EV_WRITE);
		break;
	case PGRES_POLLING_OK:
		evtimer_del(c->timer);
		log_info("event=db_connected pool=%s conn=%d listener=%d", c->db->label, c->id,
			 c->listener);
		conn_setup(c);
		break;
	case PGRES_POLLING_FAILED:
	default: {
		const char *msg = PQerrorMessage(c->pg);

		evtimer_del(c->timer);
		/* The first failure is news; the retries that follow are noise. */
		log_msg(c->backoff_ms <= DB_BACKOFF_MIN_MS ? LOG_WARN : LOG_DEBUG,
			"event=db_connect_failed pool=%s conn=%d reason=\"%.*s\"", c->db->label,
			c->id, (int)strcspn(msg, "\n"), msg);
		conn_close(c);
		c->state = CS_DOWN;
		if (!c->listener && !any_conn_up(c->db))
			fail_queue(c->db);
		schedule_retry(c);
		break;
	}
	}
}

/* Sends what the running job needs next: its PREPARE, or the query itself. */
static void
conn_send_job(struct db_conn *c)
{
	struct db_job *j = c->job;
	const struct db_stmt *s = &c->db->stmts[j->stmt];
	int ok;

	if (!c->prepared[j->stmt]) {
		c->state = CS_PREPARING;
		ok = PQsendPrepare(c->pg, s->name, s->sql, s->nparams, NULL);
	} else {
		c->state = CS_BUSY;
		ok = PQsendQueryPrepared(c->pg, s->name, s->nparams, (const char *const *)j->params,
					 NULL, NULL, 0);
	}
	if (!ok) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	/* Write interest until PQflush says everything went out. */
	conn_wait(c, EV_READ | EV_WRITE | EV_PERSIST);
}

/* Takes the next queued job if this connection is idle. */
static void
conn_dispatch(struct db_conn *c)
{
	struct db *db = c->db;
	struct db_job *j;

	if (c->state != CS_IDLE || c->listener || db->head == NULL)
		return;
	j = db->head;
	db->head = j->next;
	if (db->head == NULL)
		db->tail = NULL;
	db->queued--;
	j->next = NULL;
	c->job = j;
	conn_send_job(c);
}

static void
dispatch_all(struct db *db)
{
	for (int i = 0; i < db->nconns && db->head != NULL; i++)
		conn_dispatch(&db->conns[i]);
}

static bool
is_retryable_state(const char *st)
{
	return st != NULL && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0);
}

static void
push_front(struct db *db, struct db_job *j)
{
	j->next = db->head;
	db->head = j;
	if (db->tail == NULL)
		db->tail = j;
	db->queued++;
}

/* One command finished on c; its first result (maybe NULL) is in c->result. */
static void
conn_command_done(struct db_conn *c)
{
	struct db *db = c->db;
	PGresult *res = c->result;
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;

	c->result = NULL;
	if (c->state == CS_SETUP) {
		if (!ok) {
			log_error("event=db_setup_failed pool=%s conn=%d reason=\"%s\"",
				  c->db->label, c->id,
				  res ? PQresultErrorMessage(res) : "no result");
			PQclear(res);
			conn_lost(c, "session set-up failed");
			return;
		}
		PQclear(res);
		c->state = CS_IDLE;
		/* Only a session that is ready resets the backoff: one whose set-up keeps
		 * failing (LISTEN on a standby) must not reconnect every 100 ms. */
		c->backoff_ms = 0;
		conn_wait(c, EV_READ | EV_PERSIST);
		if (c->listener) {
			if (db->listen.on_connect != NULL)
				db->listen.on_connect(db->listen.arg);
		} else {
			dispatch_all(db);
		}
		return;
	}
	if (c->state == CS_PREPARING) {
		if (ok) {
			PQclear(res);
			c->prepared[c->job->stmt] = true;
			conn_send_job(c);
			return;
		}
		/* The statement cannot be prepared (schema not current?): fail the job. */
	}
	{
		struct db_job *j = c->job;
		const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

		c->job = NULL;
		c->state = CS_IDLE;
		conn_wait(c, EV_READ | EV_PERSIST);
		if (!ok && is_retryable_state(sqlstate) && db->stmts[j->stmt].retryable &&
		    j->attempts < DB_RETRY_MAX) {
			j->attempts++;
			db->stats.retries++;
			log_info("event=db_retry stmt=%s sqlstate=%s attempt=%d",
				 db->stmts[j->stmt].name, sqlstate, j->attempts);
			PQclear(res);
			push_front(db, j);
		} else {
			db->stats.queries++;
			job_finish(db, j, ok ? DB_OK : DB_ERROR, res,
				   res ? NULL : PQerrorMessage(c->pg));
			PQclear(res);
		}
		dispatch_all(db);
	}
}

static void
conn_read(struct db_conn *c)
{
	PGnotify *n;

	if (!PQconsumeInput(c->pg)) {
		conn_lost(c, PQerrorMessage(c->pg));
		return;
	}
	while ((n = PQnotifies(c->pg)) != NULL) {
		if (c->listener && c->db->listen.on_notify != NULL)
			c->db->listen.on_notify(c->db->listen.arg, n->relname,
						n->extra ? n->extra : "");
		PQfreemem(n);
	}
	while (c->state == CS_SETUP || c->state == CS_PREPARING || c->state == CS_BUSY) {
		PGresult *r;

		if (PQisBusy(c->pg))
			return;
		r = PQgetResult(c->pg);
		if (r == NULL) {
			conn_command_done(c);
			return;
		}
		/* Keep the first result; a later one with an error replaces it. */
		if (c->result == NULL) {
			c->result = r;
		} else if (PQresultStatus(r) == PGRES_FATAL_ERROR &&
			   PQresultStatus(c->result) != PGRES_FATAL_ERROR) {
			PQclear(c->result);
			c->result = r;
		} else {
			PQclear(r);
		}
	}
	if (PQstatus(c->pg) == CONNECTION_BAD)
		conn_lost(c, "connection closed");
}

static void
conn_event_cb(evutil_socket_t fd, short what, void *arg)
{
	struct db_conn *c = arg;

	(void)fd;
	if (c->state == CS_CONNECTING) {
		connect_poll(c);
		return;
	}
	if (c->pg == NULL)
		return;
	if (what & EV_WRITE) {
		int f = PQflush(c->pg);

		if (f < 0) {
			conn_lost(c, PQerrorMessage(c->pg));
			return;
		}
		if (f == 0)
			conn_wait(c, EV_READ | EV_PERSIST);
	}
	if (what & EV_READ)
		conn_read(c);
}

/* ---------------------------------------------------------------- API */

struct db *
db_new(struct event_base *base, const char *conninfo, int pool_size, const struct db_stmt *stmts,
       int nstmts, const struct db_listen *listen)
{
	struct db *db = calloc(1, sizeof(*db));
	int total = pool_size + (listen ? 1 : 0);

	if (db == NULL)
		return NULL;
	db->base = base;
	db->label = "main";
	db->stmts = stmts;
	db->nstmts = nstmts;
	db->nconns = pool_size;
	db->conninfo = strdup(conninfo);
	db->conns = calloc((size_t)total, sizeof(struct db_conn));
	db->fail_ev = event_new(base, -1, 0, failed_cb, db);
	if (db->conninfo == NULL || db->conns == NULL || db->fail_ev == NULL)
		goto fail;
	if (listen != NULL) {
		db->listen = *listen;
		db->listen_conn = &db->conns[pool_size];
	}
	for (int i = 0; i < total; i++) {
		struct db_conn *c = &db->conns[i];

		c->db = db;
		c->id = i;
		c->sock = -1;
		c->listener = (i == pool_size);
		c->prepared = calloc((size_t)(nstmts > 0 ? nstmts : 1), sizeof(bool));
		c->ev = event_new(base, -1, 0, conn_event_cb, c);
		c->timer = evtimer_new(base, retry_cb, c);
		if (c->prepared == NULL || c->ev == NULL || c->timer == NULL)
			goto fail;
	}
	db->stats.total = pool_size;
	for (int i = 0; i < total; i++)
		conn_start(&db->conns[i]);
	return db;
fail:
	db_free(db);
	return NULL;
}

void
db_set_label(struct db *db, const char *label)
{
	db->label = label;
}

void
db_close(struct db *db)
{
	int total = db->nconns + (db->listen_conn ? 1 : 0);

	db->closing = true;
	for (int i = 0; i < total; i++) {
		struct db_conn *c = &db->conns[i];

		if (c->job != NULL) {
			fail_later(db, c->job);
			c->job = NULL;
		}
		evtimer_del(c->timer);
		conn_close(c);
		c->state = CS_DOWN;
	}
	fail_queue(db);
}

void
db_free(struct db *db)
{
	int total;

	if (db == NULL)
		return;
	total = db->nconns + (db->listen_conn ? 1 : 0);
	for (int i = 0; db->conns != NULL && i < total; i++) {
		struct db_conn *c = &db->conns[i];

		if (c->job != NULL) {
			fail_later(db, c->job);
			c->job = NULL;
		}
	}
	fail_queue(db);
	/*
	 * Everyone still waiting hears now: the loop will not run for us again. A
	 * callback that queries again is failed in the same loop.
	 */
	db->closing = true;
	while (db->failed != NULL)
		run_failed(db);
	for (int i = 0; db->conns != NULL && i < total; i++) {
		struct db_conn *c = &db->conns[i];

		if (c->ev != NULL)
			conn_close(c);
		if (c->ev != NULL)
			event_free(c->ev);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c->prepared);
	}
	free(db->conns);
	free(db->conninfo);
	if (db->fail_ev != NULL)
		event_free(db->fail_ev);
	free(db);
}

int
db_query(struct db *db, int stmt, const char *const *params, db_cb cb, void *arg)
{
	struct db_job *j = calloc(1, sizeof(*j));
	int n = db->stmts[stmt].nparams;

	if (j == NULL)
		return -1;
	j->stmt = stmt;
	j->cb = cb;
	j->arg = arg;
	if (n > 0) {
		j->params = calloc((size_t)n, sizeof(char *));
		if (j->params == NULL)
			goto oom;
		for (int i = 0; i < n; i++) {
			if (params[i] == NULL)
				continue;
			j->params[i] = strdup(params[i]);
			if (j->params[i] == NULL)
				goto oom;
		}
	}
	if (db->closing || !any_conn_hopeful(db) || db->queued >= DB_QUEUE_MAX) {
		fail_later(db, j);
		return 0;
	}
	if (db->tail != NULL)
		db->tail->next = j;
	else
		db->head = j;
	db->tail = j;
	db->queued++;
	dispatch_all(db);
	return 0;
oom:
	job_free(j, n);
	return -1;
}

void
db_get_stats(const struct db *db, struct db_stats *out)
{
	*out = db->stats;
	out->up = 0;
	out->busy = 0;
	for (int i = 0; i < db->nconns; i++) {
		if (conn_up(&db->conns[i]))
			out->up++;
		if (db->conns[i].state == CS_BUSY || db->conns[i].state == CS_PREPARING)
			out->busy++;
	}
	out->queued = db->queued;
}
