/*
 * tailer.c — the change-log follower and the poll of source sightings (see
 * tailer.h). Loading the map is loader.c's job.
 */
#include "tailer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "history.h"
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
	long long limit;      /* apply no row past this (tailer_set_limit) */
	long long heard;      /* highest seq a NOTIFY named */
	long long applied_at; /* the time of change `applied` (SQL_CHANGE_AT); 0 = unknown */
	bool fetching;
	bool again;
	bool held;	    /* the last read stopped at the limit */
	bool stopped;	    /* a row failed, or tailer_suspend(): until tailer_reset() */
	bool synced;	    /* see tailer_synced() */
	bool closing;	    /* tailer_release_all() was called: nobody parks any more */
	unsigned gen;	    /* bumped by suspend/reset: a read of an older gen is stale */
	unsigned fetch_gen; /* gen of the read in flight */
	int retry_ms;	    /* backoff after a failed read */
	struct event *retry;
	struct waiter *waiters;
	unsigned long failures;
	tailer_failed_cb on_failed;
	void *arg;
	/* The sightings poll (see tailer.h). */
	int stmt_seen;
	struct event *seen_timer;
	bool seen_fetching;
	long long seen_applied, seen_at; /* applied (and its time) when the poll was sent ... */
	unsigned seen_gen;		 /* ... and gen */
	char seen_cursor[GRAPH_TIME_LEN + 1]; /* "" = from the start */
	tailer_seen_cb seen_cb;		      /* tailer_set_seen_listener */
	void *seen_arg;
	/* The observer (tailer_set_observer) and the touches of the current batch. */
	tailer_touch_cb touch_cb;
	void *touch_arg;
	struct tailer_touch *touch;
	size_t ntouch, touch_cap;
	bool touch_lost; /* a touch could not be recorded (ENOMEM) */
	/* Polling (tailer_set_poll): 0 = off. */
	int poll_min_ms, poll_max_ms, poll_ms;
	struct event *poll_timer;
	long long read_ok_at; /* monotonic ms of the last read that succeeded; 0 = none */
};

static void
note_read_ok(struct tailer *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	t->read_ok_at = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

static void fetch(struct tailer *t);
static void schedule_retry(struct tailer *t);
static void schedule_poll(struct tailer *t, bool got_rows);

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

/* ------------------------------------------------------------ one row */

static const char *
cell(const PGresult *res, int i, int col)
{
	return PQgetisnull(res, i, col) ? NULL : PQgetvalue(res, i, col);
}

int
tailer_row_decode(const PGresult *res, int i, struct tailer_row *row)
{
	const char *seq = cell(res, i, 0);
	char *end;

	memset(row, 0, sizeof(*row));
	if (seq == NULL)
		return -1;
	errno = 0;
	row->seq = strtoll(seq, &end, 10);
	if (errno != 0 || end == seq || *end != '\0')
		return -1;
	row->op = cell(res, i, 1);
	row->ref = cell(res, i, 2);
	row->from = cell(res, i, 3);
	row->type = cell(res, i, 4);
	row->to = cell(res, i, 5);
	row->health = cell(res, i, 6);
	row->attributes = cell(res, i, 7);
	row->image = cell(res, i, 8);
	row->image_len = row->image != NULL ? (size_t)PQgetlength(res, i, 8) : 0;
	row->at = PQnfields(res) > 9 ? cell(res, i, 9) : NULL;
	row->at_us = PQnfields(res) > 10 && !PQgetisnull(res, i, 10)
			 ? strtoll(PQgetvalue(res, i, 10), NULL, 10)
			 : 0;
	return 0;
}

static bool
op_is(const char *op, const char *what)
{
	return op != NULL && strcmp(op, what) == 0;
}

int
tailer_row_apply(graph *g, const struct tailer_row *row, const char **reason)
{
	const char *op = row->op;

	if (op_is(op, "node.created") || op_is(op, "node.updated")) {
		int health = graph_health_parse(row->health);

		if (row->ref == NULL || row->image == NULL || health < 0) {
			*reason = "node row without a ref, an image or a known health";
			return -1;
		}
		int rc = graph_node_put_image(g, row->ref, health, row->attributes, row->image,
					      row->image_len);

		if (rc != 0) {
			*reason =
			    rc == GRAPH_ENOMEM ? "out of memory" : "the graph refused the node";
			return -1;
		}
		return 0;
	}
	if (op_is(op, "node.deleted")) {
		if (row->ref == NULL) {
			*reason = "node row without a ref";
			return -1;
		}
		if (graph_node_remove(g, row->ref) != 0) { /* cannot fail with a ref */
			*reason = "the graph refused the removal";
			return -1;
		}
		return 0;
	}
	if (op_is(op, "edge.created") || op_is(op, "edge.updated") || op_is(op, "edge.deleted")) {
		int type = graph_edge_type_parse(row->type);
		long from, to;

		if (row->from == NULL || row->to == NULL || type < 0) {
			*reason = "edge row without endpoints or a known type";
			return -1;
		}
		if (op_is(op, "edge.deleted")) {
			if (graph_edge_remove(g, row->from, type, row->to) != 0) {
				*reason = "the graph refused the removal";
				return -1;
			}
			return 0;
		}
		/* Its endpoints' node rows come first in the log: an edge to a node the
		 * map does not hold means the map has lost track. */
		from = graph_find(g, row->from);
		to = graph_find(g, row->to);
		if (from < 0 || to < 0) {
			*reason = "edge endpoint not in the map";
			return -1;
		}
		int rc = graph_edge_put_idx(g, from, type, to);

		if (rc != 0) {
			*reason =
			    rc == GRAPH_ENOMEM ? "out of memory" : "the graph refused the edge";
			return -1;
		}
		return 0;
	}
	*reason = "unknown op";
	return -1;
}

/* ------------------------------------------------------------ following */

/* A row failed: stop, count, say so. */
static void
row_failed(struct tailer *t, const struct tailer_row *row, const char *reason)
{
	char ref[600];

	if (row->ref != NULL)
		snprintf(ref, sizeof(ref), "%s", row->ref);
	else
		snprintf(ref, sizeof(ref), "%s %s %s", row->from ? row->from : "-",
			 row->type ? row->type : "-", row->to ? row->to : "-");
	t->failures++;
	t->stopped = true;
	t->synced = false;
	t->gen++;
	log_error("event=tailer_apply_failed seq=%lld op=%s ref=\"%s\" reason=\"%s\" "
		  "applied=%lld",
		  row->seq, row->op ? row->op : "-", ref, reason, t->applied);
	if (t->on_failed != NULL)
		t->on_failed(t->arg, row->seq, reason);
}

static void
touch_idx(struct tailer *t, uint32_t idx, long long seq)
{
	if (t->ntouch == t->touch_cap) {
		size_t ncap = t->touch_cap ? t->touch_cap * 2 : 64;
		struct tailer_touch *nt = realloc(t->touch, ncap * sizeof *nt);

		if (nt == NULL) {
			t->touch_lost = true;
			return;
		}
		t->touch = nt;
		t->touch_cap = ncap;
	}
	t->touch[t->ntouch++] = (struct tailer_touch){idx, seq};
}

static void
touch_add(struct tailer *t, const char *ref, long long seq)
{
	long idx = ref != NULL ? graph_find(t->g, ref) : -1;

	if (idx >= 0)
		touch_idx(t, (uint32_t)idx, seq);
}

/* A node about to be removed touches its neighbours too: their adjacency lists
 * lose its edges (which the log normally names first as edge rows). */
static void
touch_neighbours(struct tailer *t, const char *ref, long long seq)
{
	long idx = ref != NULL ? graph_find(t->g, ref) : -1;
	uint32_t *nb = NULL;
	size_t n = 0;

	if (idx < 0)
		return;
	if (graph_reads_neighbours(t->g, idx, &nb, &n) != 0) {
		t->touch_lost = true;
		return;
	}
	for (size_t i = 0; i < n; i++)
		touch_idx(t, nb[i], seq);
	free(nb);
}

/* Records the nodes change row `row` touches, for the observer. */
static void
touch_row(struct tailer *t, const struct tailer_row *row)
{
	if (t->touch_cb == NULL)
		return;
	if (strncmp(row->op, "node.", 5) == 0) {
		touch_add(t, row->ref, row->seq);
		if (strcmp(row->op, "node.deleted") == 0)
			touch_neighbours(t, row->ref, row->seq);
	} else {
		touch_add(t, row->from, row->seq);
		touch_add(t, row->to, row->seq);
	}
}

/* Tells the observer what the batch touched. */
static void
touch_report(struct tailer *t)
{
	if (t->touch_cb != NULL && (t->ntouch > 0 || t->touch_lost))
		t->touch_cb(t->touch_arg, t->touch_lost ? NULL : t->touch,
			    t->touch_lost ? 0 : t->ntouch);
	t->ntouch = 0;
	t->touch_lost = false;
}

static void
fetch_done(void *arg, const struct db_result *r)
{
	struct tailer *t = arg;
	struct tailer_row row;
	int rows;

	t->fetching = false;
	if (t->fetch_gen != t->gen || t->stopped) {
		/* Read for a graph we no longer follow (suspended, failed, reset). */
		if (!t->stopped && t->again) {
			t->again = false;
			fetch(t);
		}
		return;
	}
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
	t->held = false;
	note_read_ok(t);
	rows = PQntuples(r->res);
	for (int i = 0; i < rows; i++) {
		const char *reason = "unreadable seq";

		if (tailer_row_decode(r->res, i, &row) != 0) {
			row_failed(t, &row, reason);
			break;
		}
		if (row.seq <= t->applied)
			continue;
		if (row.seq > t->limit) {
			t->held = true;
			break;
		}
		touch_row(t, &row); /* before: a removed node is named */
		if (tailer_row_apply(t->g, &row, &reason) != 0) {
			row_failed(t, &row, reason);
			break;
		}
		touch_row(t, &row); /* after: a created one */
		t->applied = row.seq;
		history_note_applied(row.seq, row.at);
		t->applied_at = row.at_us;
	}
	touch_report(t);
	if (!t->stopped && !t->held && rows < TAILER_BATCH)
		t->synced = true;
	wake_reached(t);
	if (!t->stopped && !t->held && (rows >= TAILER_BATCH || t->again)) {
		t->again = false;
		fetch(t);
	} else if (!t->stopped && !t->held) {
		schedule_poll(t, rows > 0);
	}
}

static void
fetch(struct tailer *t)
{
	char since[32];
	const char *params[1] = {since};

	if (t->stopped || t->held)
		return;
	if (t->fetching) {
		t->again = true;
		return;
	}
	snprintf(since, sizeof(since), "%lld", t->applied);
	if (db_query(t->db, t->stmt, params, fetch_done, t) == 0) {
		t->fetching = true;
		t->fetch_gen = t->gen;
	} else {
		schedule_retry(t);
	}
}

/* ------------------------------------------------------- sightings poll */

/*
 * The database's log ends before rows the map applied: they are gone (a
 * standby promoted without the last commits of an asynchronous primary), and
 * their seqs will be reused for other changes. The map must be reloaded.
 */
static void
log_went_back(struct tailer *t, long long last)
{
	t->stopped = true;
	t->synced = false;
	t->gen++;
	log_error("event=change_log_behind_map last=%lld applied=%lld hint=\"a failover lost "
		  "commits the map had applied\"",
		  last, t->seen_applied);
	if (t->on_failed != NULL)
		t->on_failed(t->arg, last, "the change log is behind the map");
}

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
	note_read_ok(t);
	rows = PQntuples(r->res);
	/* Its snapshot was taken after every row applied before it was sent: the
	 * log must reach that row, and hold the same change there. */
	if (rows > 0 && PQnfields(r->res) > 4 && t->seen_gen == t->gen && !t->stopped) {
		long long last = strtoll(PQgetvalue(r->res, 0, 3), NULL, 10);
		long long at =
		    PQgetisnull(r->res, 0, 4) ? 0 : strtoll(PQgetvalue(r->res, 0, 4), NULL, 10);

		if (last < t->seen_applied || (t->seen_at != 0 && at != 0 && at != t->seen_at)) {
			log_went_back(t, last);
			return;
		}
	}
	for (int i = 0; i < rows; i++) {
		if (!PQgetisnull(r->res, i, 0) &&
		    graph_source_seen(t->g, PQgetvalue(r->res, i, 0), PQgetvalue(r->res, i, 1)) ==
			GRAPH_ENOMEM)
			log_error("event=seen_poll_failed reason=\"out of memory\"");
		if (t->seen_cb != NULL && !PQgetisnull(r->res, i, 0) && PQnfields(r->res) > 5)
			t->seen_cb(t->seen_arg, PQgetvalue(r->res, i, 0), PQgetvalue(r->res, i, 1),
				   PQgetisnull(r->res, i, 5) ? NULL : PQgetvalue(r->res, i, 5));
		if (i == 0 && PQgetlength(r->res, i, 2) == GRAPH_TIME_LEN)
			memcpy(t->seen_cursor, PQgetvalue(r->res, i, 2), GRAPH_TIME_LEN + 1);
	}
}

static void
seen_tick(evutil_socket_t fd, short what, void *arg)
{
	struct tailer *t = arg;
	const char *params[2];
	char applied[24];

	(void)fd;
	(void)what;
	if (t->seen_fetching || t->closing)
		return;
	snprintf(applied, sizeof(applied), "%lld", t->applied);
	params[0] = t->seen_cursor[0] ? t->seen_cursor : NULL;
	params[1] = applied;
	if (db_query(t->db, t->stmt_seen, params, seen_done, t) == 0) {
		t->seen_fetching = true;
		t->seen_applied = t->applied;
		t->seen_at = t->applied_at;
		t->seen_gen = t->gen;
	}
}

/* ------------------------------------------------------------ polling */

/* Someone waits for a seq the map has not applied: it exists somewhere. */
static bool
waiting_beyond(const struct tailer *t)
{
	for (const struct waiter *w = t->waiters; w != NULL; w = w->next)
		if (w->seq > t->applied)
			return true;
	return false;
}

/*
 * After a read that reached the end of what the read database has: read again
 * after poll_ms — the minimum after rows came, after a poke, or while a waiter
 * waits for a seq not applied yet (the database has it or soon will), else
 * doubling toward the maximum.
 */
static void
schedule_poll(struct tailer *t, bool got_rows)
{
	struct timeval tv;

	if (t->poll_max_ms == 0 || t->closing)
		return;
	if (got_rows || t->poll_ms < t->poll_min_ms || waiting_beyond(t))
		t->poll_ms = t->poll_min_ms;
	else if ((t->poll_ms *= 2) > t->poll_max_ms)
		t->poll_ms = t->poll_max_ms;
	tv.tv_sec = t->poll_ms / 1000;
	tv.tv_usec = (t->poll_ms % 1000) * 1000;
	evtimer_del(t->poll_timer);
	evtimer_add(t->poll_timer, &tv);
}

static void
poll_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fetch(arg);
}

int
tailer_set_poll(struct tailer *t, int min_ms, int max_ms)
{
	if (t->poll_timer == NULL && (t->poll_timer = evtimer_new(t->base, poll_cb, t)) == NULL)
		return -1;
	t->poll_min_ms = min_ms;
	t->poll_max_ms = max_ms;
	t->poll_ms = 0;
	return 0;
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
	   long long applied, tailer_failed_cb on_failed, void *arg)
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
	t->limit = TAILER_NO_LIMIT;
	t->on_failed = on_failed;
	t->arg = arg;
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
tailer_set_observer(struct tailer *t, tailer_touch_cb cb, void *arg)
{
	t->touch_cb = cb;
	t->touch_arg = arg;
}

void
tailer_set_seen_listener(struct tailer *t, tailer_seen_cb cb, void *arg)
{
	t->seen_cb = cb;
	t->seen_arg = arg;
}

void
tailer_release_all(struct tailer *t)
{
	t->closing = true;
	if (t->poll_timer != NULL)
		evtimer_del(t->poll_timer);
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
	if (t->poll_timer != NULL)
		event_free(t->poll_timer);
	free(t->touch);
	free(t);
}

void
tailer_poke(struct tailer *t)
{
	t->poll_ms = 0; /* news: if this read finds nothing yet, the next comes soon */
	fetch(t);
}

long long
tailer_read_ok_at(const struct tailer *t)
{
	return t->read_ok_at;
}

long long
tailer_applied(const struct tailer *t)
{
	return t->applied;
}

bool
tailer_synced(const struct tailer *t)
{
	return t->synced && !t->stopped;
}

graph *
tailer_graph(const struct tailer *t)
{
	return t->g;
}

unsigned
tailer_generation(const struct tailer *t)
{
	return t->gen;
}

unsigned long
tailer_apply_failures(const struct tailer *t)
{
	return t->failures;
}

void
tailer_suspend(struct tailer *t)
{
	t->stopped = true;
	t->synced = false;
	t->gen++;
}

void
tailer_reset(struct tailer *t, graph *g, long long applied)
{
	t->g = g;
	t->applied = applied;
	t->applied_at = 0;
	t->limit = TAILER_NO_LIMIT;
	t->stopped = t->held = t->synced = false;
	t->retry_ms = 0;
	t->gen++;
	wake_reached(t);
	fetch(t);
}

void
tailer_set_limit(struct tailer *t, long long limit)
{
	bool raised = limit > t->limit;

	t->limit = limit < t->applied ? t->applied : limit;
	if (raised && t->held) {
		t->held = false;
		fetch(t);
	}
}

void
tailer_heard(struct tailer *t, long long seq)
{
	if (seq > t->heard)
		t->heard = seq;
}

long long
tailer_latest(const struct tailer *t)
{
	return t->heard > t->applied ? t->heard : t->applied;
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
