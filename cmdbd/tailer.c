/*
 * tailer.c — the change-log follower and the poll of source sightings (see
 * tailer.h). Loading the map is loader.c's job.
 */
#include "tailer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
	/* The sightings poll (see tailer.h). */
	int stmt_seen;
	struct event *seen_timer;
	bool seen_fetching;
	char seen_cursor[GRAPH_TIME_LEN + 1]; /* "" = from the start */
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
		return graph_node_put_image(
		    g, ref, graph_health_parse(PQgetvalue(res, row, 6)),
		    PQgetisnull(res, row, 7) ? NULL : PQgetvalue(res, row, 7),
		    PQgetisnull(res, row, 8) ? NULL : PQgetvalue(res, row, 8),
		    (size_t)PQgetlength(res, row, 8));
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

/* ------------------------------------------------------- sightings poll */

static void
seen_done(void *arg, const struct db_result *r)
{
	struct tailer *t = arg;
	int rows;

	t->seen_fetching = false;
	if (r->status != DB_OK) {
		log_debug("event=seen_poll_failed reason=\"%s\"", r->message); /* next tick */
		return;
	}
	rows = PQntuples(r->res);
	for (int i = 0; i < rows; i++) {
		if (!PQgetisnull(r->res, i, 0) &&
		    graph_source_seen(t->g, PQgetvalue(r->res, i, 0), PQgetvalue(r->res, i, 1)) &&
		    errno == ENOMEM)
			log_error("event=seen_poll_failed reason=\"out of memory\"");
		if (i == 0 && PQgetlength(r->res, i, 2) == GRAPH_TIME_LEN)
			memcpy(t->seen_cursor, PQgetvalue(r->res, i, 2), GRAPH_TIME_LEN + 1);
	}
}

static void
seen_tick(evutil_socket_t fd, short what, void *arg)
{
	struct tailer *t = arg;
	const char *params[1];

	(void)fd;
	(void)what;
	if (t->seen_fetching || t->closing)
		return;
	params[0] = t->seen_cursor[0] ? t->seen_cursor : NULL;
	if (db_query(t->db, t->stmt_seen, params, seen_done, t) == 0)
		t->seen_fetching = true;
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
tailer_new(struct event_base *base, struct db *db, int stmt_tail, int stmt_seen, graph *g,
	   long long applied)
{
	struct tailer *t = calloc(1, sizeof(*t));
	struct timeval second = {TAILER_SEEN_POLL_MS / 1000, (TAILER_SEEN_POLL_MS % 1000) * 1000};

	if (t == NULL)
		return NULL;
	t->base = base;
	t->db = db;
	t->stmt = stmt_tail;
	t->stmt_seen = stmt_seen;
	t->g = g;
	t->applied = applied;
	t->retry = evtimer_new(base, retry_cb, t);
	if (stmt_seen >= 0)
		t->seen_timer = event_new(base, -1, EV_PERSIST, seen_tick, t);
	if (t->retry == NULL || (stmt_seen >= 0 && t->seen_timer == NULL) ||
	    (t->seen_timer != NULL && event_add(t->seen_timer, &second) != 0)) {
		if (t->retry != NULL)
			event_free(t->retry);
		if (t->seen_timer != NULL)
			event_free(t->seen_timer);
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
	if (t->seen_timer != NULL)
		event_free(t->seen_timer);
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
