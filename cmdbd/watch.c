/*
 * watch.c — watchers: graph answers that reply when they change (see watch.h and
 * DESIGN.md, "Watching an answer").
 *
 * A request's life:
 *
 *   watch_answer ─► answer now (no index, wait=0, shutting down, 404, index too old)
 *        │
 *        ├─ index > applied: tailer_wait(index) first (another server was ahead)
 *        ▼
 *     parked ──► a batch touches its read set ─► re-run: hash differs? ─► reply
 *        │                                                same: keep parked
 *        ├─ wait runs out, or shutdown ─► reply (the same answer, current index)
 *        └─ the client closes ─► freed (the reply goes nowhere)
 *
 * Ownership: the registry owns each watcher; a watcher owns its read set, timer
 * and nothing of its request, which it answers exactly once (the reply frees it).
 * per_node[i] counts the parked read sets that hold node i, so a batch that
 * touches none is dismissed in O(nodes touched). touched[i] is the seq of the
 * last change that touched node i since `since` (the seq the registry started
 * at): it tells whether the answer at a client's older index is the answer now.
 */
#include "watch.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "log.h"
#include "sha256.h"
#include "tailer.h"

struct watcher {
	struct watch *w;
	struct http_req *r;
	struct watch_query q;
	long long index;	  /* what the client sent */
	struct timespec deadline; /* when its wait runs out */
	uint8_t hash[SHA256_DIGEST_LEN];
	uint32_t *reads; /* owned; NULL when broad */
	size_t nreads;
	bool broad;
	bool parked; /* in the list (else waiting for the tailer to reach index) */
	struct event *timer;
	struct watcher *prev, *next;
};

struct watch {
	struct event_base *base;
	graph *g;
	struct tailer *t;
	long max;
	size_t n; /* parked */
	size_t nbroad;
	struct watcher *head;
	uint32_t *per_node; /* parked read sets holding node i */
	size_t per_node_cap;
	long long *touched; /* seq of the last change touching node i, 0 = none since `since` */
	size_t touched_cap;
	long long since;
	bool closing;
};

/* One evaluated answer. */
struct answer {
	int status; /* 200; 404 node gone; 500 */
	char *text; /* owned */
	size_t len;
	bool dot;
	uint8_t hash[SHA256_DIGEST_LEN];
	uint32_t *reads; /* owned, when asked for */
	size_t nreads;
};

static void
answer_clear(struct answer *a)
{
	free(a->text);
	free(a->reads);
	memset(a, 0, sizeof(*a));
}

/* ------------------------------------------------------------- evaluation */

static char *
dumps(json_t *j, size_t *len)
{
	char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	if (text != NULL)
		*len = strlen(text);
	return text;
}

/*
 * Computes q's answer on g now; with want_reads (a watcher), also its hash and read set
 * (WATCH_READS_MAX exceeded: none, nreads = SIZE_MAX).
 */
static void
evaluate(graph *g, const struct watch_query *q, bool want_reads, struct answer *a)
{
	long root = graph_find(g, q->ref);
	int rc = 0;

	memset(a, 0, sizeof(*a));
	if (root < 0) {
		a->status = 404;
		return;
	}
	switch (q->kind) {
	case WATCH_DEPENDENTS:
	case WATCH_DEPENDENCIES: {
		int dir =
		    q->kind == WATCH_DEPENDENTS ? GRAPH_DIR_DEPENDENTS : GRAPH_DIR_DEPENDENCIES;

		a->text = graph_walk_text(g, root, dir, q->depth, q->mask, q->limit, &a->len);
		if (want_reads)
			rc = graph_reads_walk(g, root, dir, q->depth, q->mask, &a->reads,
					      &a->nreads);
		break;
	}
	case WATCH_OWNERS:
		a->text = graph_owners_text(g, root, false, &a->len);
		if (want_reads)
			rc = graph_reads_owners(g, root, &a->reads, &a->nreads);
		break;
	case WATCH_GRAPH:
		a->dot = q->dot;
		if (q->dot) {
			a->text = graph_subgraph_dot(g, root, q->depth, q->direction);
			a->len = a->text ? strlen(a->text) : 0;
		} else {
			a->text = dumps(graph_subgraph(g, root, q->depth, q->direction), &a->len);
		}
		if (want_reads)
			rc = graph_reads_walk(g, root, q->direction, q->depth, GRAPH_IMPACT_MASK,
					      &a->reads, &a->nreads);
		break;
	}
	if (a->text == NULL || rc != 0) {
		answer_clear(a);
		a->status = 500;
		return;
	}
	a->status = 200;
	/* Only a watcher compares hashes: an answer given at once needs none (a
	 * 1000-node walk is ~100 KB of text to hash). */
	if (want_reads)
		sha256(a->text, a->len, a->hash);
	if (want_reads && a->nreads > WATCH_READS_MAX) {
		free(a->reads);
		a->reads = NULL;
		a->nreads = SIZE_MAX;
	}
}

static long long
applied(const struct watch *w)
{
	return tailer_applied(w->t);
}

void
watch_set_index(struct http_req *r, long long seq)
{
	char num[24];

	snprintf(num, sizeof(num), "%lld", seq);
	http_set_header(r, "X-Cmdb-Index", num);
}

/* Sends an evaluated answer (computed at the current seq) and frees r. */
static void
reply(struct watch *w, struct http_req *r, const struct watch_query *q, struct answer *a)
{
	watch_set_index(r, applied(w));
	if (a->status == 404)
		http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", q->ref),
				 "node %s not found", q->ref);
	else if (a->status != 200)
		http_reply_error(r, 500, "internal", NULL, "graph query failed: %s",
				 strerror(ENOMEM));
	else if (a->dot)
		http_reply_text(r, 200, "text/vnd.graphviz; charset=utf-8", a->text, a->len);
	else
		http_reply_raw(r, 200, a->text, a->len);
}

static void
answer_now(struct watch *w, struct http_req *r, const struct watch_query *q)
{
	struct answer a;

	evaluate(w->g, q, false, &a);
	reply(w, r, q, &a);
	answer_clear(&a);
}

/* ------------------------------------------------------ per-node counters */

static int
grow_u32(uint32_t **v, size_t *cap, size_t need)
{
	size_t ncap = *cap ? *cap : 1024;
	uint32_t *nv;

	while (ncap < need)
		ncap *= 2;
	nv = realloc(*v, ncap * sizeof(*nv));
	if (nv == NULL)
		return -1;
	memset(nv + *cap, 0, (ncap - *cap) * sizeof(*nv));
	*v = nv;
	*cap = ncap;
	return 0;
}

/* Counts the read set into per_node; -1 (ENOMEM) leaves the counters as they were. */
static int
reads_hold(struct watch *w, const uint32_t *reads, size_t n)
{
	if (n > 0 && reads[n - 1] >= w->per_node_cap &&
	    grow_u32(&w->per_node, &w->per_node_cap, (size_t)reads[n - 1] + 1) != 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		w->per_node[reads[i]]++;
	return 0;
}

static void
reads_release(struct watch *w, const uint32_t *reads, size_t n)
{
	for (size_t i = 0; i < n; i++)
		w->per_node[reads[i]]--;
}

/* The latest seq that touched a node of the set (0 = none since w->since). */
static long long
last_touched(const struct watch *w, const uint32_t *reads, size_t n)
{
	long long m = 0;

	for (size_t i = 0; i < n && reads[i] < w->touched_cap; i++)
		if (w->touched[reads[i]] > m)
			m = w->touched[reads[i]];
	return m;
}

/* ---------------------------------------------------------------- watchers */

static void
watcher_unpark(struct watcher *x)
{
	struct watch *w = x->w;

	if (!x->parked)
		return;
	if (x->broad)
		w->nbroad--;
	else
		reads_release(w, x->reads, x->nreads);
	*(x->prev ? &x->prev->next : &w->head) = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	x->parked = false;
	w->n--;
}

/* Frees a watcher whose request has been answered (or is being answered). */
static void
watcher_free(struct watcher *x)
{
	watcher_unpark(x);
	if (x->timer != NULL)
		event_free(x->timer);
	free(x->reads);
	free(x);
}

/* Replies with a (or, when NULL, the answer now) and frees x. */
static void
watcher_finish(struct watcher *x, struct answer *a)
{
	struct http_req *r = x->r;
	struct watch *w = x->w;
	struct watch_query q = x->q;

	watcher_free(x);
	if (a != NULL)
		reply(w, r, &q, a);
	else
		answer_now(w, r, &q);
}

static void
watcher_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	watcher_finish(arg, NULL);
}

/* The client went away: the reply goes nowhere, but frees the request. */
static void
watcher_closed(struct http_req *r, void *arg)
{
	watcher_free(arg);
	http_reply_error(r, 499, "client_closed", NULL, "the client closed the connection");
}

/* Takes a's read set as x's (the counters follow). false on ENOMEM. */
static bool
watcher_take_reads(struct watcher *x, struct answer *a)
{
	struct watch *w = x->w;
	bool broad = a->nreads == SIZE_MAX;

	if (!broad && reads_hold(w, a->reads, a->nreads) != 0)
		return false;
	if (x->parked) {
		if (x->broad)
			w->nbroad--;
		else
			reads_release(w, x->reads, x->nreads);
	}
	free(x->reads);
	x->broad = broad;
	x->reads = a->reads;
	x->nreads = broad ? 0 : a->nreads;
	a->reads = NULL;
	if (broad)
		w->nbroad++;
	return true;
}

static struct timeval
remaining(const struct timespec *deadline)
{
	struct timespec now;
	long long us;

	clock_gettime(CLOCK_MONOTONIC, &now);
	us = (long long)(deadline->tv_sec - now.tv_sec) * 1000000 +
	     (deadline->tv_nsec - now.tv_nsec) / 1000;
	if (us < 0)
		us = 0;
	return (struct timeval){(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
}

/*
 * The applied seq has reached x->index (or the wait for it ended): answer now,
 * or park x when the answer now is the answer at the client's index.
 */
static void
watcher_decide(struct watcher *x)
{
	struct watch *w = x->w;
	struct answer a;
	struct timeval tv = remaining(&x->deadline);
	long long now = applied(w);
	bool same;

	if (w->closing || (tv.tv_sec == 0 && tv.tv_usec == 0)) {
		watcher_finish(x, NULL);
		return;
	}
	evaluate(w->g, &x->q, true, &a);
	/*
	 * The answer at index N is the answer now when N is now, or when no change
	 * after N touched the read set (DESIGN.md). Changes before `since` are not
	 * tracked: an older index is answered at once, as one that may differ.
	 */
	same = a.status == 200 &&
	       (x->index >= now || (x->index >= w->since && a.nreads != SIZE_MAX &&
				    last_touched(w, a.reads, a.nreads) <= x->index));
	if (!same) {
		watcher_finish(x, &a);
		answer_clear(&a);
		return;
	}
	if ((long)w->n >= w->max) {
		struct http_req *r = x->r;

		watcher_free(x);
		answer_clear(&a);
		http_set_header(r, "Retry-After", "1");
		watch_set_index(r, now);
		http_reply_error(r, 503, "too_many_watchers",
				 json_pack("{s:I}", "limit", (json_int_t)w->max),
				 "more than %ld watchers are parked (--max-watchers)", w->max);
		return;
	}
	x->timer = evtimer_new(w->base, watcher_timeout, x);
	if (x->timer == NULL || !watcher_take_reads(x, &a)) {
		watcher_finish(x, &a); /* out of memory: the answer, at once */
		answer_clear(&a);
		return;
	}
	memcpy(x->hash, a.hash, sizeof(x->hash));
	answer_clear(&a);
	/* Parked from here: watcher_unpark() gives back what take_reads counted. */
	x->parked = true;
	x->prev = NULL;
	x->next = w->head;
	if (w->head != NULL)
		w->head->prev = x;
	w->head = x;
	w->n++;
	if (evtimer_add(x->timer, &tv) != 0 || !http_on_close(x->r, watcher_closed, x))
		watcher_finish(x, NULL); /* cannot time it, or gone while we waited */
}

static void
caught_up(void *arg, bool reached)
{
	(void)reached; /* not reached: the wait ran out or shutdown; decide answers */
	watcher_decide(arg);
}

void
watch_answer(struct watch *w, struct http_req *r, const struct watch_query *q, long long index,
	     long wait_s)
{
	struct watcher *x;

	if (index < 0 || wait_s <= 0 || w->closing) {
		answer_now(w, r, q);
		return;
	}
	x = calloc(1, sizeof(*x));
	if (x == NULL) {
		answer_now(w, r, q);
		return;
	}
	x->w = w;
	x->r = r;
	x->q = *q;
	x->index = index;
	clock_gettime(CLOCK_MONOTONIC, &x->deadline);
	x->deadline.tv_sec += wait_s;
	if (index > applied(w) && tailer_wait(w->t, index, (int)wait_s * 1000, caught_up, x) == 0)
		return; /* caught_up runs (maybe already has) */
	watcher_decide(x);
}

/* ------------------------------------------------------------ the batches */

static int
cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool
intersects(const uint32_t *sorted, size_t n, const uint32_t *hits, size_t nhits)
{
	for (size_t i = 0; i < nhits; i++)
		if (bsearch(&hits[i], sorted, n, sizeof(*sorted), cmp_u32) != NULL)
			return true;
	return false;
}

/* The last answer evaluated in a batch: watchers of the same query (a dashboard
 * open in many places) share one evaluation. */
struct memo {
	bool set;
	struct watch_query q;
	struct answer a;
};

static bool
same_query(const struct watch_query *a, const struct watch_query *b)
{
	return a->kind == b->kind && strcmp(a->ref, b->ref) == 0 && a->depth == b->depth &&
	       a->mask == b->mask && a->limit == b->limit && a->direction == b->direction &&
	       a->dot == b->dot;
}

/* Re-runs a parked watcher's query; replies if its answer changed. */
static void
recheck(struct watcher *x, struct memo *m)
{
	struct answer mine = {0};

	if (!m->set || !same_query(&m->q, &x->q)) {
		answer_clear(&m->a);
		evaluate(x->w->g, &x->q, true, &m->a);
		m->q = x->q;
		m->set = true;
	}
	if (m->a.status != 200 || memcmp(m->a.hash, x->hash, sizeof(x->hash)) != 0) {
		watcher_finish(x, &m->a);
		return;
	}
	/* The same answer: keep parked, with the read set as it is now (a copy: the
	 * memo's may serve the next watcher). */
	mine.nreads = m->a.nreads;
	if (mine.nreads != SIZE_MAX && mine.nreads > 0) {
		mine.reads = malloc(mine.nreads * sizeof(*mine.reads));
		if (mine.reads != NULL)
			memcpy(mine.reads, m->a.reads, mine.nreads * sizeof(*mine.reads));
	}
	if ((mine.nreads != SIZE_MAX && mine.nreads > 0 && mine.reads == NULL) ||
	    !watcher_take_reads(x, &mine))
		watcher_finish(x, &m->a); /* out of memory: the answer, at once */
	free(mine.reads);
}

/* Records the batch's touches; the nodes that parked read sets hold go to hits
 * (when not NULL), and their number is returned. */
static size_t
record(struct watch *w, const struct tailer_touch *touched, size_t n, uint32_t *hits)
{
	size_t nhits = 0;

	for (size_t i = 0; i < n; i++) {
		uint32_t v = touched[i].node;

		if (v >= w->touched_cap) {
			size_t ncap = w->touched_cap ? w->touched_cap : 1024;
			long long *nt;

			while (ncap <= v)
				ncap *= 2;
			nt = realloc(w->touched, ncap * sizeof(*nt));
			if (nt == NULL) {
				/* Cannot remember this touch: forget everything older. */
				w->since = touched[n - 1].seq;
				continue;
			}
			memset(nt + w->touched_cap, 0, (ncap - w->touched_cap) * sizeof(*nt));
			w->touched = nt;
			w->touched_cap = ncap;
		}
		w->touched[v] = touched[i].seq;
		if (hits != NULL && v < w->per_node_cap && w->per_node[v] > 0)
			hits[nhits++] = v;
	}
	return nhits;
}

/* The tailer's observer: after each applied batch. */
static void
on_batch(void *arg, const struct tailer_touch *touched, size_t n)
{
	struct watch *w = arg;
	struct memo memo = {0};
	uint32_t *hits = NULL;
	size_t nhits = 0;
	bool all = touched == NULL;

	if (all) {
		w->since = applied(w); /* what was touched is unknown */
	} else if (w->n == 0) {
		record(w, touched, n, NULL);
		return;
	} else {
		hits = malloc(n * sizeof(*hits));
		nhits = record(w, touched, n, hits);
		if (hits == NULL) {
			w->since = applied(w);
			all = true;
		}
	}
	if (!all && nhits == 0 && w->nbroad == 0) {
		free(hits);
		return; /* nothing any parked answer was computed from */
	}
	if (nhits > 1) {
		size_t m = 1;

		qsort(hits, nhits, sizeof(*hits), cmp_u32);
		for (size_t i = 1; i < nhits; i++)
			if (hits[i] != hits[m - 1])
				hits[m++] = hits[i];
		nhits = m;
	}
	/* A reply parks nothing new (parking needs a request), so the list only
	 * shrinks while we walk it: keep the next one before rechecking. */
	for (struct watcher *x = w->head, *next; x != NULL; x = next) {
		next = x->next;
		if (all || x->broad || intersects(x->reads, x->nreads, hits, nhits))
			recheck(x, &memo);
	}
	answer_clear(&memo.a);
	free(hits);
}

/* --------------------------------------------------------------- registry */

struct watch *
watch_new(struct event_base *base, graph *g, struct tailer *t, long max_watchers)
{
	struct watch *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->base = base;
	w->g = g;
	w->t = t;
	w->max = max_watchers;
	w->since = tailer_applied(t);
	tailer_set_observer(t, on_batch, w);
	return w;
}

void
watch_release_all(struct watch *w)
{
	if (w == NULL)
		return;
	w->closing = true;
	while (w->head != NULL)
		watcher_finish(w->head, NULL);
}

void
watch_free(struct watch *w)
{
	if (w == NULL)
		return;
	watch_release_all(w);
	tailer_set_observer(w->t, NULL, NULL);
	free(w->per_node);
	free(w->touched);
	free(w);
}

void
watch_graph_replaced(struct watch *w, graph *g)
{
	if (w == NULL)
		return;
	w->g = g;
	/* What touched which node is unknown across a reload: forget it all. The
	 * per-node hold counts stay consistent (each recheck releases the watcher's
	 * old read set before taking its new one). */
	if (w->touched != NULL)
		memset(w->touched, 0, w->touched_cap * sizeof(*w->touched));
	on_batch(w, NULL, 0); /* touched unknown: every parked watcher re-runs */
}

size_t
watch_count(const struct watch *w)
{
	return w ? w->n : 0;
}
