/*
 * tailer.c — the change-log follower and the start-up graph loader (see tailer.h).
 */
#include "tailer.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

struct waiter {
	long long seq;
	tailer_wait_cb cb;
	void *arg;
	struct event *timer;
	struct tailer *t;
	struct waiter *next;
};

struct tailer {
	struct event_base *base;
	struct db *db;
	int stmt;
	graph *g;
	long long applied;
	bool fetching;
	bool again;
	bool closing; /* tailer_release_all() was called: nobody parks any more */
	int retry_ms; /* backoff after a failed read */
	struct event *retry;
	struct waiter *waiters;
};

static void fetch(struct tailer *t);
static void schedule_retry(struct tailer *t);

static void
waiter_unlink(struct tailer *t, struct waiter *w)
{
	for (struct waiter **p = &t->waiters; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			return;
		}
}

static void
waiter_fire(struct tailer *t, struct waiter *w, bool reached)
{
	waiter_unlink(t, w);
	event_free(w->timer);
	w->cb(w->arg, reached);
	free(w);
}

static void
wake_reached(struct tailer *t)
{
	struct waiter *ready = NULL;

	/* Unlink every reached waiter first, then fire: callbacks may park new ones. */
	for (struct waiter **p = &t->waiters; *p;) {
		struct waiter *w = *p;

		if (w->seq <= t->applied) {
			*p = w->next;
			w->next = ready;
			ready = w;
		} else {
			p = &w->next;
		}
	}
	while (ready != NULL) {
		struct waiter *w = ready;

		ready = w->next;
		event_free(w->timer);
		w->cb(w->arg, true);
		free(w);
	}
}

static void
waiter_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct waiter *w = arg;

	(void)fd;
	(void)what;
	waiter_fire(w->t, w, false);
}

/* Applies one change row; columns as in SQL_CHANGES_TAIL. */
static int
apply_row(graph *g, PGresult *res, int row)
{
	const char *op = PQgetvalue(res, row, 1);

	if (strncmp(op, "node.", 5) == 0) {
		const char *ref = PQgetvalue(res, row, 2);

		if (strcmp(op, "node.deleted") == 0)
			return graph_node_remove(g, ref);
		return graph_node_put(g, ref, graph_health_parse(PQgetvalue(res, row, 6)),
				      PQgetisnull(res, row, 7) ? NULL : PQgetvalue(res, row, 7));
	} else {
		const char *from = PQgetvalue(res, row, 3);
		int type = graph_edge_type_parse(PQgetvalue(res, row, 4));
		const char *to = PQgetvalue(res, row, 5);

		if (type < 0)
			return -1;
		if (strcmp(op, "edge.deleted") == 0)
			return graph_edge_remove(g, from, type, to);
		return graph_edge_put(g, from, type, to);
	}
}

static void
fetch_done(void *arg, const struct db_result *r)
{
	struct tailer *t = arg;
	int rows;

	t->fetching = false;
	if (r->status != DB_OK) {
		/*
		 * The read failed (database away, pool full, a timeout). Nothing else is
		 * sure to poke us again, so retry on a timer, backing off to 5 s.
		 */
		log_warn("event=tail_failed reason=\"%s\" retry_ms=%d", r->message, t->retry_ms);
		schedule_retry(t);
		return;
	}
	t->retry_ms = 0;
	rows = PQntuples(r->res);
	for (int i = 0; i < rows; i++) {
		long long seq = strtoll(PQgetvalue(r->res, i, 0), NULL, 10);

		if (seq <= t->applied)
			continue;
		if (apply_row(t->g, r->res, i) != 0)
			log_error("event=tail_apply_failed seq=%lld op=%s", seq,
				  PQgetvalue(r->res, i, 1));
		t->applied = seq;
	}
	wake_reached(t);
	if (rows >= 20000 || t->again) {
		t->again = false;
		fetch(t);
	}
}

static void
fetch(struct tailer *t)
{
	char since[32];
	const char *params[1] = {since};

	if (t->fetching) {
		t->again = true;
		return;
	}
	snprintf(since, sizeof(since), "%lld", t->applied);
	if (db_query(t->db, t->stmt, params, fetch_done, t) == 0)
		t->fetching = true;
	else
		schedule_retry(t);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fetch(arg);
}

static void
schedule_retry(struct tailer *t)
{
	struct timeval tv;

	if (t->closing || evtimer_pending(t->retry, NULL))
		return;
	t->retry_ms = t->retry_ms == 0 ? 250 : t->retry_ms * 2;
	if (t->retry_ms > 5000)
		t->retry_ms = 5000;
	tv.tv_sec = t->retry_ms / 1000;
	tv.tv_usec = (t->retry_ms % 1000) * 1000;
	evtimer_add(t->retry, &tv);
}

struct tailer *
tailer_new(struct event_base *base, struct db *db, int stmt_tail, graph *g, long long applied)
{
	struct tailer *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return NULL;
	t->base = base;
	t->db = db;
	t->stmt = stmt_tail;
	t->g = g;
	t->applied = applied;
	t->retry = evtimer_new(base, retry_cb, t);
	if (t->retry == NULL) {
		free(t);
		return NULL;
	}
	return t;
}

void
tailer_release_all(struct tailer *t)
{
	t->closing = true;
	while (t->waiters != NULL)
		waiter_fire(t, t->waiters, false);
}

void
tailer_free(struct tailer *t)
{
	if (t == NULL)
		return;
	tailer_release_all(t);
	event_free(t->retry);
	free(t);
}

void
tailer_poke(struct tailer *t)
{
	fetch(t);
}

long long
tailer_applied(const struct tailer *t)
{
	return t->applied;
}

int
tailer_wait(struct tailer *t, long long seq, int timeout_ms, tailer_wait_cb cb, void *arg)
{
	struct waiter *w;
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	if (seq <= t->applied || t->closing) {
		cb(arg, seq <= t->applied);
		return 0;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return -1;
	w->timer = evtimer_new(t->base, waiter_timeout, w);
	if (w->timer == NULL) {
		free(w);
		return -1;
	}
	w->seq = seq;
	w->cb = cb;
	w->arg = arg;
	w->t = t;
	w->next = t->waiters;
	t->waiters = w;
	evtimer_add(w->timer, &tv);
	return 0;
}

/* ------------------------------------------------------- start-up loading */

/*
 * Undoes COPY text-format escaping in place (\\, \t, \n, \r, \b, \f, \v, \NNN).
 * Names cannot hold control characters, but attributes JSON text can hold
 * backslashes, which COPY doubles.
 */
static void
copy_unescape(char *s)
{
	char *o = s;

	for (char *p = s; *p; p++) {
		if (*p != '\\' || p[1] == '\0') {
			*o++ = *p;
			continue;
		}
		p++;
		switch (*p) {
		case 't':
			*o++ = '\t';
			break;
		case 'n':
			*o++ = '\n';
			break;
		case 'r':
			*o++ = '\r';
			break;
		case 'b':
			*o++ = '\b';
			break;
		case 'f':
			*o++ = '\f';
			break;
		case 'v':
			*o++ = '\v';
			break;
		default:
			if (*p >= '0' && *p <= '7') {
				int v = 0;

				for (int k = 0; k < 3 && *p >= '0' && *p <= '7'; k++, p++)
					v = v * 8 + (*p - '0');
				p--;
				*o++ = (char)v;
			} else {
				*o++ = *p;
			}
		}
	}
	*o = '\0';
}

/* Splits a COPY line into at most n tab-separated fields, unescaped in place. */
static int
copy_fields(char *line, char **fields, int n)
{
	int k = 0;
	char *p = line;

	while (k < n) {
		char *tab = strchr(p, '\t');

		fields[k++] = p;
		if (tab == NULL)
			break;
		*tab = '\0';
		p = tab + 1;
	}
	for (int i = 0; i < k; i++)
		copy_unescape(fields[i]);
	return k;
}

/* Streams one COPY ... TO STDOUT and calls row() per line. Returns rows or -1. */
static long
copy_stream(PGconn *conn, const char *sql, int nfields, int (*row)(graph *g, char **f), graph *g)
{
	PGresult *res = PQexec(conn, sql);
	char *buf = NULL;
	long n = 0;
	int len;

	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		log_error("event=graph_load_failed reason=\"%s\"", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	while ((len = PQgetCopyData(conn, &buf, 0)) > 0) {
		char *f[4];

		if (len > 0 && buf[len - 1] == '\n')
			buf[len - 1] = '\0';
		if (copy_fields(buf, f, nfields) == nfields && row(g, f) != 0) {
			PQfreemem(buf);
			log_error("event=graph_load_failed reason=\"cannot apply a row\" row=%ld",
				  n);
			return -1;
		}
		PQfreemem(buf);
		n++;
	}
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		log_error("event=graph_load_failed reason=\"%s\"", PQerrorMessage(conn));
		n = -1;
	}
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return n;
}

static int
load_node(graph *g, char **f)
{
	return graph_node_put(g, f[0], graph_health_parse(f[1]),
			      strcmp(f[2], "{}") == 0 ? NULL : f[2]);
}

static int
load_edge(graph *g, char **f)
{
	return graph_edge_put(g, f[0], graph_edge_type_parse(f[1]), f[2]);
}

long long
tailer_load(PGconn *conn, graph *g)
{
	PGresult *res;
	long long seq = -1;
	long nodes, edges;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	res = PQexec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto fail;
	PQclear(res);
	res = PQexec(conn, "SELECT last FROM change_seq");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		goto fail;
	seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	res = NULL;
	nodes = copy_stream(conn,
			    "COPY (SELECT kind || '/' || name, health, attributes::text FROM nodes)"
			    " TO STDOUT",
			    3, load_node, g);
	edges = copy_stream(conn,
			    "COPY (SELECT f.kind || '/' || f.name, e.type, t.kind || '/' || t.name"
			    " FROM edges e JOIN nodes f ON f.id = e.from_id"
			    " JOIN nodes t ON t.id = e.to_id) TO STDOUT",
			    3, load_edge, g);
	if (nodes < 0 || edges < 0) {
		seq = -1;
		goto out;
	}
	res = PQexec(conn, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto fail;
	PQclear(res);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	log_info("event=graph_loaded nodes=%ld edges=%ld seq=%lld ms=%.0f", nodes, edges, seq,
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	return seq;
fail:
	log_error("event=graph_load_failed reason=\"%s\"", PQerrorMessage(conn));
	seq = -1;
out:
	PQclear(res);
	res = PQexec(conn, "ROLLBACK");
	PQclear(res);
	return seq;
}
