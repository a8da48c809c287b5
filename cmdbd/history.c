/*
 * history.c — as-of graphs: building them from the change log, their LRU cache,
 * and the as_of plumbing of the graph handlers (see history.h).
 */
#include "history.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "api.h"
#include "db.h"
#include "log.h"
#include "manifest.h"
#include "app.h"
#include "clock.h"
#include "sql.h"
#include "tailer.h"

#define PAGE_ROWS 20000 /* the LIMIT of SQL_HISTORY_REDO / _UNDO */

/* The application this history serves (history_bind): its pool, live map and
 * tailer. Module state, like the cache: one per process. */
static struct app *bound;

void
history_bind(struct app *a)
{
	bound = a;
}

struct hwaiter {
	history_cb cb;
	void *arg;
	struct hwaiter *next;
};

/* One as-of graph, built or being built. */
struct entry {
	long long seq;
	graph *g;
	bool ready;
	unsigned long used;	     /* LRU clock of the last use */
	char at[GRAPH_TIME_LEN + 1]; /* the seq's at when known, for points */
	size_t bytes;		     /* graph_bytes() once built */
	/* Building: the rows still to read are (lo, hi]; undo reads them newest first. */
	bool undo;
	long long lo, hi;
	long long rows;
	struct timespec t0;
	struct hwaiter *waiters;
	struct entry *next;
};

static struct entry *entries;
static unsigned long lru_clock;
static int nbuilding;

/* Resolved points (see "points" below). */
#define TIME_POINTS 32
#define TIME_KEY_MAX 64

struct time_point {
	char key[TIME_KEY_MAX];	    /* the TIME as asked ("" = free slot) */
	char t[GRAPH_TIME_LEN + 1]; /* it in the one fixed format, for comparisons */
	struct history_point pt;
	unsigned long used;
};

static struct time_point times[TIME_POINTS];
static struct history_point last_applied; /* seq 0 = not known yet */

/* The request being re-run for as_of (history_graph), its graph and point. */
static struct http_req *cur_req;
static graph *cur_g;
static struct history_point cur_pt;

/* ------------------------------------------------------------ the cache */

static void
entry_unlink(struct entry *e)
{
	for (struct entry **p = &entries; *p; p = &(*p)->next)
		if (*p == e) {
			*p = e->next;
			return;
		}
}

/* Fires and frees every waiter of e (the list is taken first: callbacks may add). */
static void
entry_fire(struct entry *e, graph *g, const char *why)
{
	struct hwaiter *w = e->waiters;

	e->waiters = NULL;
	while (w != NULL) {
		struct hwaiter *next = w->next;

		w->cb(w->arg, g, why);
		free(w);
		w = next;
	}
}

/* Drops least recently used built graphs beyond HISTORY_CACHE graphs or
 * HISTORY_CACHE_BYTES in all (the most recently used one always stays). */
static void
evict(void)
{
	for (;;) {
		struct entry *lru = NULL;
		size_t n = 0, bytes = 0;

		for (struct entry *e = entries; e; e = e->next) {
			if (!e->ready)
				continue;
			n++;
			bytes += e->bytes;
			if (lru == NULL || e->used < lru->used)
				lru = e;
		}
		if (n <= 1 || (n <= HISTORY_CACHE && bytes <= HISTORY_CACHE_BYTES))
			return;
		entry_unlink(lru);
		graph_free(lru->g);
		free(lru);
	}
}

static void
build_fail(struct entry *e, const char *why)
{
	log_warn("event=as_of_build_failed seq=%lld reason=\"%s\"", e->seq, why);
	nbuilding--;
	entry_unlink(e);
	entry_fire(e, NULL, why);
	graph_free(e->g);
	free(e);
}

static void
build_done(struct entry *e)
{
	nbuilding--;
	e->ready = true;
	e->used = ++lru_clock;
	e->bytes = graph_bytes(e->g);
	log_info("event=as_of_built seq=%lld how=%s rows=%lld nodes=%zu edges=%zu bytes=%zu "
		 "ms=%.1f",
		 e->seq, e->undo ? "undo" : "replay", e->rows, graph_node_count(e->g),
		 graph_edge_count(e->g), e->bytes, clock_ms_since(&e->t0));
	entry_fire(e, e->g, NULL);
	evict();
}

/* Applies one row of SQL_HISTORY_REDO (its after image) or SQL_HISTORY_UNDO (its
 * before image): column 8 says whether that image is null (then the node or edge
 * did not exist). */
static int
apply_row(graph *g, PGresult *res, int row)
{
	const char *op = PQgetvalue(res, row, 1);
	bool gone = PQgetvalue(res, row, 8)[0] == 't';

	if (strncmp(op, "node.", 5) == 0) {
		const char *ref = PQgetvalue(res, row, 2);
		int health = graph_health_parse(PQgetvalue(res, row, 6));

		if (gone)
			return graph_node_remove(g, ref);
		return graph_node_put(g, ref, health < 0 ? GRAPH_UNKNOWN : health,
				      PQgetisnull(res, row, 7) ? NULL : PQgetvalue(res, row, 7));
	} else {
		int type = graph_edge_type_parse(PQgetvalue(res, row, 4));

		if (type < 0) {
			errno = EINVAL;
			return -1;
		}
		if (gone)
			return graph_edge_remove(g, PQgetvalue(res, row, 3), type,
						 PQgetvalue(res, row, 5));
		return graph_edge_put(g, PQgetvalue(res, row, 3), type, PQgetvalue(res, row, 5));
	}
}

static void build_read(struct entry *e);

static void
build_rows(void *arg, const struct db_result *r)
{
	struct entry *e = arg;
	int rows;

	if (r->status != DB_OK) {
		build_fail(e, r->message);
		return;
	}
	rows = PQntuples(r->res);
	for (int i = 0; i < rows; i++) {
		long long seq = strtoll(PQgetvalue(r->res, i, 0), NULL, 10);

		if (apply_row(e->g, r->res, i) != 0) {
			if (errno == ENOMEM) {
				build_fail(e, "out of memory");
				return;
			}
			log_error("event=as_of_apply_failed seq=%lld op=%s", seq,
				  PQgetvalue(r->res, i, 1));
		}
		if (e->undo)
			e->hi = seq - 1;
		else
			e->lo = seq;
	}
	e->rows += rows;
	if (rows < PAGE_ROWS || e->lo >= e->hi)
		build_done(e);
	else
		build_read(e);
}

static void
build_read(struct entry *e)
{
	char lo[32], hi[32];
	const char *params[2] = {lo, hi};

	snprintf(lo, sizeof(lo), "%lld", e->lo);
	snprintf(hi, sizeof(hi), "%lld", e->hi);
	if (db_query(bound->db, e->undo ? SQL_HISTORY_UNDO : SQL_HISTORY_REDO, params, build_rows,
		     e) != 0)
		build_fail(e, "out of memory");
}

static struct entry *
build_start(long long seq, long long applied)
{
	struct entry *e = calloc(1, sizeof(*e));

	if (e == NULL)
		return NULL;
	e->seq = seq;
	clock_gettime(CLOCK_MONOTONIC, &e->t0);
	/* Whichever direction reads fewer rows: undo (applied - seq rows, plus a copy
	 * of the live structure) or replay from nothing (seq rows). */
	e->undo = applied - seq <= seq;
	e->g = e->undo ? graph_copy(bound->g) : graph_new();
	if (e->g == NULL) {
		free(e);
		return NULL;
	}
	e->lo = e->undo ? seq : 0;
	e->hi = e->undo ? applied : seq;
	e->next = entries;
	entries = e;
	nbuilding++;
	if (e->lo >= e->hi)
		build_done(e);
	else
		build_read(e);
	return e;
}

/* history_graph_at() that also remembers the seq's at (NULL: unknown) with its graph. */
static void
graph_at(long long seq, const char *at, history_cb cb, void *arg)
{
	struct tailer *t = bound->tailer;
	long long applied = t ? tailer_applied(t) : 0;
	struct entry *e;
	struct hwaiter *w;

	if (seq >= applied) {
		cb(arg, bound->g, NULL);
		return;
	}
	for (e = entries; e; e = e->next)
		if (e->seq == seq)
			break;
	if (e != NULL && at != NULL && strlen(at) == GRAPH_TIME_LEN)
		memcpy(e->at, at, GRAPH_TIME_LEN + 1);
	if (e != NULL && e->ready) {
		e->used = ++lru_clock;
		cb(arg, e->g, NULL);
		return;
	}
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		cb(arg, NULL, "out of memory");
		return;
	}
	w->cb = cb;
	w->arg = arg;
	if (e == NULL) {
		if (nbuilding >= HISTORY_BUILDS) {
			free(w);
			cb(arg, NULL, "too many as_of graphs being built; try again");
			return;
		}
		/* Park the waiter before starting: a build with nothing to read is done
		 * (and fires) at once. */
		e = build_start(seq, applied);
		if (e == NULL) {
			free(w);
			cb(arg, NULL, "out of memory");
			return;
		}
		if (at != NULL && strlen(at) == GRAPH_TIME_LEN)
			memcpy(e->at, at, GRAPH_TIME_LEN + 1);
		if (e->ready) {
			free(w);
			e->used = ++lru_clock;
			cb(arg, e->g, NULL);
			return;
		}
	}
	w->next = e->waiters;
	e->waiters = w;
}

void
history_graph_at(long long seq, history_cb cb, void *arg)
{
	graph_at(seq, NULL, cb, arg);
}

size_t
history_cached(void)
{
	size_t n = 0;

	for (struct entry *e = entries; e; e = e->next)
		n += e->ready;
	return n;
}

void
history_free_all(void)
{
	memset(times, 0, sizeof(times));
	memset(&last_applied, 0, sizeof(last_applied));
	while (entries != NULL) {
		struct entry *e = entries;

		entries = e->next;
		entry_fire(e, NULL, "shutting down");
		graph_free(e->g);
		free(e);
	}
	nbuilding = 0;
}

/* ------------------------------------------------------------- as_of */

/* ------------------------------------------------------------ points */

/*
 * Points already resolved, so that most as_of requests need no database work:
 * the at of the latest applied row (from the tailer), the at of every cached
 * graph's seq, and TIME answers. A TIME answer (the greatest seq whose at <= T)
 * stays right until a row with at <= T is applied later — a transaction that
 * started before T and committed since; the tailer reports every row
 * (history_note_applied) and such a row becomes the entry's answer.
 */

void
history_note_applied(long long seq, const char *at)
{
	if (at == NULL || strlen(at) != GRAPH_TIME_LEN)
		return;
	last_applied.seq = seq;
	memcpy(last_applied.at, at, GRAPH_TIME_LEN + 1);
	for (int i = 0; i < TIME_POINTS; i++)
		if (times[i].key[0] && strcmp(at, times[i].t) <= 0 && seq > times[i].pt.seq)
			times[i].pt = last_applied;
}

static struct time_point *
time_find(const char *key)
{
	for (int i = 0; i < TIME_POINTS; i++)
		if (times[i].key[0] && strcmp(times[i].key, key) == 0)
			return &times[i];
	return NULL;
}

static void
time_store(const char *key, const char *t, const struct history_point *pt)
{
	struct time_point *slot = &times[0];

	if (strlen(key) >= TIME_KEY_MAX || strlen(t) != GRAPH_TIME_LEN)
		return;
	for (int i = 0; i < TIME_POINTS; i++)
		if (!times[i].key[0] || times[i].used < slot->used)
			slot = &times[i];
	snprintf(slot->key, sizeof(slot->key), "%s", key);
	memcpy(slot->t, t, GRAPH_TIME_LEN + 1);
	slot->pt = *pt;
	slot->used = ++lru_clock;
}

/* The at of seq when it is known here without asking the database. */
static bool
seq_at_known(long long seq, char at[GRAPH_TIME_LEN + 1])
{
	if (seq == 0) {
		at[0] = '\0';
		return true;
	}
	if (seq == last_applied.seq) {
		memcpy(at, last_applied.at, GRAPH_TIME_LEN + 1);
		return true;
	}
	for (struct entry *e = entries; e; e = e->next)
		if (e->seq == seq && e->at[0]) {
			memcpy(at, e->at, GRAPH_TIME_LEN + 1);
			return true;
		}
	return false;
}

struct asof_req {
	struct http_req *r;
	void (*handler)(struct http_req *);
	struct history_point pt;
	long long applied; /* what the resolution was asked against */
	char key[TIME_KEY_MAX];
};

static void
asof_graph(void *arg, graph *g, const char *why)
{
	struct asof_req *a = arg;
	struct http_req *r = a->r;

	if (g == NULL) {
		http_reply_error(r, 503, "unavailable", NULL, "as_of: %s", why);
	} else {
		cur_req = r;
		cur_g = g;
		cur_pt = a->pt;
		a->handler(r); /* replies (and frees r), or goes on asynchronously */
		cur_req = NULL;
		cur_g = NULL;
	}
	free(a);
}

static void
asof_point(void *arg, const struct db_result *res)
{
	struct asof_req *a = arg;

	if (res->status != DB_OK || PQntuples(res->res) != 1) {
		if (res->status == DB_OK)
			http_reply_error(a->r, 500, "internal", NULL, "as_of: no point");
		else
			api_reply_db_error(a->r, res);
		free(a);
		return;
	}
	a->pt.seq = strtoll(PQgetvalue(res->res, 0, 0), NULL, 10);
	snprintf(a->pt.at, sizeof(a->pt.at), "%s", PQgetvalue(res->res, 0, 1));
	/* Kept for the next request about this TIME — unless rows were applied while we
	 * asked: one of them might be a late row at or before it. */
	if (a->key[0] && tailer_applied(bound->tailer) == a->applied)
		time_store(a->key, PQgetvalue(res->res, 0, 2), &a->pt);
	graph_at(a->pt.seq, a->pt.at, asof_graph, a);
}

graph *
history_graph(struct http_req *r, void (*handler)(struct http_req *))
{
	const char *s = NULL;
	char seqbuf[32], applied[32];
	const char *params[3] = {NULL, NULL, applied};
	struct asof_req *a;

	if (r == cur_req)
		return cur_g;
	if (r->method == EVHTTP_REQ_POST) {
		json_t *v = json_object_get(r->json, "as_of");

		if (json_is_integer(v) && json_integer_value(v) >= 0) {
			snprintf(seqbuf, sizeof(seqbuf), "%lld", (long long)json_integer_value(v));
			s = seqbuf;
		} else if (json_is_string(v)) {
			s = json_string_value(v);
		} else if (v != NULL) {
			http_reply_bad(r, "as_of",
				       "must be a seq (an integer >= 0) or an RFC 3339 time");
			return NULL;
		}
	} else {
		s = http_query(r, "as_of");
	}
	if (s == NULL)
		return bound->g;
	if (*s != '\0' && strspn(s, "0123456789") == strlen(s) && strlen(s) <= 18)
		params[0] = s;
	else if (manifest_time_valid(s))
		params[1] = s;
	else {
		http_reply_bad(r, "as_of",
			       "must be a seq (an integer >= 0) or an RFC 3339 time "
			       "(2026-11-21T10:00:00Z; got \"%.40s\")",
			       s);
		return NULL;
	}
	if (!api_require_map(r))
		return NULL;
	a = calloc(1, sizeof(*a));
	if (a == NULL) {
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return NULL;
	}
	a->r = r;
	a->handler = handler;
	a->applied = tailer_applied(bound->tailer);
	if (params[0] != NULL) { /* a SEQ: its at is often known here */
		a->pt.seq = strtoll(s, NULL, 10);
		if (a->pt.seq > a->applied)
			a->pt.seq = a->applied;
		if (seq_at_known(a->pt.seq, a->pt.at)) {
			graph_at(a->pt.seq, a->pt.at, asof_graph, a);
			return NULL;
		}
	} else {
		struct time_point *tp = time_find(s);

		if (tp != NULL) {
			tp->used = ++lru_clock;
			a->pt = tp->pt;
			graph_at(a->pt.seq, a->pt.at, asof_graph, a);
			return NULL;
		}
		snprintf(a->key, sizeof(a->key), "%s", strlen(s) < TIME_KEY_MAX ? s : "");
	}
	snprintf(applied, sizeof(applied), "%lld", a->applied);
	if (db_query(bound->db, SQL_HISTORY_POINT, params, asof_point, a) != 0) {
		free(a);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
	}
	return NULL;
}

const struct history_point *
history_point(const struct http_req *r)
{
	return r != NULL && r == cur_req ? &cur_pt : NULL;
}

json_t *
history_point_json(const struct history_point *p)
{
	return json_pack("{s:I,s:o}", "seq", (json_int_t)p->seq, "at",
			 p->at[0] ? json_string(p->at) : json_null());
}

void
history_reply_json(struct http_req *r, json_t *body)
{
	const struct history_point *p = history_point(r);

	if (body == NULL) {
		http_reply_error(r, 500, "internal", NULL, "graph query failed: %s",
				 strerror(errno));
		return;
	}
	if (p != NULL)
		json_object_set_new(body, "as_of", history_point_json(p));
	http_reply_json(r, 200, body);
}

void
history_reply_raw(struct http_req *r, const char *text, size_t len)
{
	const struct history_point *p = history_point(r);
	char *pt, *out;
	size_t plen, n;

	if (p == NULL || len < 2 || text[len - 1] != '}') {
		http_reply_raw(r, 200, text, len);
		return;
	}
	{
		json_t *o = history_point_json(p);

		pt = o ? json_dumps(o, JSON_COMPACT) : NULL;
		json_decref(o);
	}
	plen = pt ? strlen(pt) : 0;
	out = pt ? malloc(len + plen + 16) : NULL;
	if (out == NULL) {
		free(pt);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return;
	}
	memcpy(out, text, len - 1);
	n = len - 1;
	n += (size_t)sprintf(out + n, "%s\"as_of\":%s}", len > 2 ? "," : "", pt);
	http_reply_raw(r, 200, out, n);
	free(out);
	free(pt);
}

void
history_reply_dot(struct http_req *r, const char *dot)
{
	const struct history_point *p = history_point(r);
	size_t dlen = strlen(dot);
	char *out;
	int n;

	if (p == NULL) {
		http_reply_text(r, 200, "text/vnd.graphviz; charset=utf-8", dot, dlen);
		return;
	}
	out = malloc(dlen + 96);
	if (out == NULL) {
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return;
	}
	n = snprintf(out, 96, "// as_of seq=%lld at=%s\n", p->seq, p->at[0] ? p->at : "null");
	memcpy(out + n, dot, dlen + 1);
	http_reply_text(r, 200, "text/vnd.graphviz; charset=utf-8", out, (size_t)n + dlen);
	free(out);
}
