/*
 * noop.c — the per-source fingerprint memory and the no-op batcher (see noop.h).
 *
 * The memory is an open-addressing table of sources (a source is never removed: the
 * table holds at most the sources the database knows), each with at most one body,
 * found by its hash through a chained index. The batcher keeps a FIFO of
 * batches; the last one fills until NOOP_BATCH_MAX, and a batch goes out when fewer
 * than NOOP_INFLIGHT_MAX are out — at the end of the loop turn that queued its first
 * item, or as soon as a batch out comes back.
 */
#include "noop.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/sha.h>

#include "graph.h"
#include "log.h"
#include "manifest.h"
#include "strbuf.h"

struct entry {
	char *source;
	char fp[MANIFEST_FINGERPRINT_HEX + 1]; /* "": not known */
	char at[GRAPH_TIME_LEN + 1];	       /* when it was learned ("": no time) */
	/* The last body seen applied for the source (noop_remember_body), or none. */
	bool has_body;
	unsigned char body[NOOP_BODY_HASH];
	struct noop_item item; /* its fields: strings owned here (item.actor unused) */
	char body_fp[MANIFEST_FINGERPRINT_HEX + 1], gen[24], ttl[24];
	struct entry *body_next; /* in its bucket of the body index */
};

struct waiter {
	noop_cb cb;
	void *arg;
};

struct batch {
	struct noop *n;
	struct batch *next;
	struct strbuf json; /* "[item,item,…" until sent */
	int count;
	struct waiter who[NOOP_BATCH_MAX];
};

struct noop {
	struct db *db;
	int stmt;
	struct event *send_ev;
	struct batch *head, *tail; /* waiting to go; the tail fills */
	int inflight;
	struct entry **tab;	     /* sources (open addressing; entries never move) */
	size_t cap, used;	     /* slots, and slots taken */
	struct entry **bodies;	     /* body hash → entry (chained by body_next) */
	size_t body_cap, body_count; /* buckets, and entries with a body */
	struct noop_stats st;
};

/* ---------------------------------------------------------------- memory */

static uint64_t
hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot of source, or the free slot where it would go (cap > used always). */
static struct entry **
slot(struct entry **tab, size_t cap, const char *source)
{
	size_t i = (size_t)hash_str(source) & (cap - 1);

	while (tab[i] != NULL && strcmp(tab[i]->source, source) != 0)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static int
grow(struct noop *n)
{
	size_t cap = n->cap ? n->cap * 2 : 256;
	struct entry **tab = calloc(cap, sizeof(*tab));

	if (tab == NULL)
		return -1;
	for (size_t i = 0; i < n->cap; i++)
		if (n->tab[i] != NULL)
			*slot(tab, cap, n->tab[i]->source) = n->tab[i];
	free(n->tab);
	n->tab = tab;
	n->cap = cap;
	return 0;
}

static struct entry *
find(const struct noop *n, const char *source)
{
	return n->cap > 0 ? *slot(n->tab, n->cap, source) : NULL;
}

/* The source's entry, made when it has none; NULL on ENOMEM. */
static struct entry *
find_or_add(struct noop *n, const char *source)
{
	struct entry *e = find(n, source);

	if (e != NULL)
		return e;
	if ((n->used + 1) * 4 > n->cap * 3 && grow(n) != 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (e == NULL || (e->source = strdup(source)) == NULL) {
		free(e);
		return NULL;
	}
	*slot(n->tab, n->cap, source) = e;
	n->used++;
	return e;
}

static bool
time_ok(const char *at)
{
	return at != NULL && strlen(at) == GRAPH_TIME_LEN;
}

static void
set_fp(struct noop *n, struct entry *e, const char *fp)
{
	if (fp == NULL) {
		if (e->fp[0] != '\0')
			n->st.sources--;
		e->fp[0] = '\0';
		return;
	}
	if (e->fp[0] == '\0')
		n->st.sources++;
	memcpy(e->fp, fp, MANIFEST_FINGERPRINT_HEX + 1);
}

void
noop_learn(struct noop *n, const char *source, const char *fp, const char *at)
{
	struct entry *e;

	if (n == NULL || source == NULL || (fp != NULL && strlen(fp) != MANIFEST_FINGERPRINT_HEX))
		return;
	e = fp != NULL ? find_or_add(n, source) : find(n, source);
	if (e == NULL)
		return; /* nothing to forget, or out of memory: a hint lost, nothing else */
	if (time_ok(at) && e->at[0] != '\0' && strcmp(at, e->at) < 0)
		return; /* older news than what we hold */
	if (time_ok(at))
		memcpy(e->at, at, GRAPH_TIME_LEN + 1);
	set_fp(n, e, fp);
}

void
noop_forget(struct noop *n, const char *source, const char *fp)
{
	struct entry *e = n != NULL && source != NULL ? find(n, source) : NULL;

	if (e != NULL && fp != NULL && e->fp[0] != '\0' && strcmp(e->fp, fp) == 0)
		set_fp(n, e, NULL);
}

bool
noop_known(const struct noop *n, const char *source, const char *fp)
{
	const struct entry *e = n != NULL && source != NULL ? find(n, source) : NULL;

	return e != NULL && fp != NULL && e->fp[0] != '\0' && strcmp(e->fp, fp) == 0;
}

/* ---------------------------------------------------------------- bodies */

void
noop_body_hash(const char *body, size_t len, unsigned char out[NOOP_BODY_HASH])
{
	SHA256((const unsigned char *)body, len, out);
}

static size_t
body_bucket(const struct noop *n, const unsigned char *h)
{
	uint64_t v;

	memcpy(&v, h, sizeof(v)); /* a SHA-256 is uniform already */
	return (size_t)v & (n->body_cap - 1);
}

static void
body_unlink(struct noop *n, struct entry *e)
{
	struct entry **p = &n->bodies[body_bucket(n, e->body)];

	while (*p != NULL && *p != e)
		p = &(*p)->body_next;
	if (*p == e)
		*p = e->body_next;
	e->body_next = NULL;
	e->has_body = false;
	free((char *)e->item.deployment);
	free((char *)e->item.extensions);
	memset(&e->item, 0, sizeof(e->item));
	n->body_count--;
}

static int
bodies_grow(struct noop *n)
{
	size_t cap = n->body_cap ? n->body_cap * 2 : 256;
	struct entry **b = calloc(cap, sizeof(*b)), **old = n->bodies;
	size_t old_cap = n->body_cap;

	if (b == NULL)
		return -1;
	n->bodies = b;
	n->body_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		for (struct entry *e = old[i], *next; e != NULL; e = next) {
			size_t k = body_bucket(n, e->body);

			next = e->body_next;
			e->body_next = b[k];
			b[k] = e;
		}
	free(old);
	return 0;
}

static char *
dup_or_null(const char *s, bool *failed)
{
	char *d = s != NULL ? strdup(s) : NULL;

	if (s != NULL && d == NULL)
		*failed = true;
	return d;
}

void
noop_remember_body(struct noop *n, const unsigned char hash[NOOP_BODY_HASH],
		   const struct noop_item *it)
{
	struct entry *e;
	bool failed = false;
	size_t k;

	if (n == NULL || it->source == NULL || it->fp == NULL ||
	    strlen(it->fp) != MANIFEST_FINGERPRINT_HEX ||
	    (it->generation != NULL && strlen(it->generation) >= sizeof(e->gen)) ||
	    (it->ttl != NULL && strlen(it->ttl) >= sizeof(e->ttl)))
		return;
	e = find_or_add(n, it->source);
	if (e == NULL || (e->has_body && memcmp(e->body, hash, NOOP_BODY_HASH) == 0 &&
			  strcmp(e->body_fp, it->fp) == 0))
		return; /* out of memory, or known already */
	if (e->has_body)
		body_unlink(n, e);
	if (n->body_count + 1 > n->body_cap && bodies_grow(n) != 0)
		return;
	e->item.deployment = dup_or_null(it->deployment, &failed);
	e->item.extensions = dup_or_null(it->extensions, &failed);
	if (failed) {
		free((char *)e->item.deployment);
		free((char *)e->item.extensions);
		memset(&e->item, 0, sizeof(e->item));
		return;
	}
	memcpy(e->body, hash, NOOP_BODY_HASH);
	memcpy(e->body_fp, it->fp, MANIFEST_FINGERPRINT_HEX + 1);
	snprintf(e->gen, sizeof(e->gen), "%s", it->generation ? it->generation : "");
	snprintf(e->ttl, sizeof(e->ttl), "%s", it->ttl ? it->ttl : "");
	e->item.source = e->source;
	e->item.fp = e->body_fp;
	e->item.generation = it->generation ? e->gen : NULL;
	e->item.ttl = it->ttl ? e->ttl : NULL;
	k = body_bucket(n, hash);
	e->body_next = n->bodies[k];
	n->bodies[k] = e;
	e->has_body = true;
	n->body_count++;
}

const struct noop_item *
noop_body_item(const struct noop *n, const unsigned char hash[NOOP_BODY_HASH])
{
	if (n == NULL || n->body_cap == 0)
		return NULL;
	for (const struct entry *e = n->bodies[body_bucket(n, hash)]; e != NULL; e = e->body_next) {
		if (memcmp(e->body, hash, NOOP_BODY_HASH) != 0)
			continue;
		if (e->fp[0] == '\0' || strcmp(e->fp, e->body_fp) != 0)
			return NULL; /* the source has moved on (or is stale) */
		return &e->item;
	}
	return NULL;
}

/* ---------------------------------------------------------------- batcher */

static void send_batches(struct noop *n);

static void
batch_free(struct batch *b)
{
	strbuf_release(&b->json);
	free(b);
}

/* Answers every item of b with a failure and frees it. */
static void
batch_fail(struct batch *b, const struct db_result *res)
{
	b->n->st.failed += (unsigned long)b->count;
	for (int i = 0; i < b->count; i++)
		b->who[i].cb(b->who[i].arg, NULL, res);
	batch_free(b);
}

static void
batch_done(void *arg, const struct db_result *res)
{
	struct batch *b = arg;
	struct noop *n = b->n;
	const char *reply[NOOP_BATCH_MAX] = {0};

	n->inflight--;
	/* The next batch goes to the database before this one's replies are made. */
	send_batches(n);
	if (res->status != DB_OK) {
		char q[300];

		log_warn("event=noop_batch_failed items=%d sqlstate=%s reason=%s", b->count,
			 res->sqlstate, log_q(res->message, q, sizeof(q)));
		batch_fail(b, res);
		return;
	}
	for (int row = 0; row < PQntuples(res->res) && PQnfields(res->res) == 2; row++) {
		long i = strtol(PQgetvalue(res->res, row, 0), NULL, 10);

		if (i >= 0 && i < b->count && !PQgetisnull(res->res, row, 1))
			reply[i] = PQgetvalue(res->res, row, 1);
	}
	for (int i = 0; i < b->count; i++) {
		if (reply[i] == NULL)
			n->st.refused++;
		b->who[i].cb(b->who[i].arg, reply[i], NULL);
	}
	batch_free(b);
}

static void
send_batches(struct noop *n)
{
	while (n->head != NULL && n->inflight < NOOP_INFLIGHT_MAX) {
		struct batch *b = n->head;
		const char *params[1];

		n->head = b->next;
		if (n->head == NULL)
			n->tail = NULL;
		if (b->count == 0) { /* its only item could not be added */
			batch_free(b);
			continue;
		}
		strbuf_lit(&b->json, "]");
		params[0] = b->json.s;
		if (b->json.failed || db_query(n->db, n->stmt, params, batch_done, b) != 0) {
			struct db_result oom = {DB_UNAVAILABLE, NULL, "", "out of memory"};

			batch_fail(b, &oom);
			continue;
		}
		strbuf_release(&b->json); /* db_query copied it */
		n->inflight++;
		n->st.batches++;
		n->st.items += (unsigned long)b->count;
	}
}

static void
send_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	send_batches(arg);
}

/* Appends it to b's JSON: [source, fp, generation, deployment, extensions, actor, ttl]. */
static void
add_item(struct strbuf *j, const struct noop_item *it)
{
	if (j->len == 0)
		strbuf_lit(j, "[[");
	else
		strbuf_lit(j, ",[");
	strbuf_json_str(j, it->source);
	strbuf_lit(j, ",");
	strbuf_json_str(j, it->fp);
	strbuf_lit(j, ",");
	strbuf_puts(j, it->generation ? it->generation : "null");
	strbuf_lit(j, ",");
	strbuf_puts(j, it->deployment ? it->deployment : "null");
	strbuf_lit(j, ",");
	strbuf_puts(j, it->extensions ? it->extensions : "null");
	strbuf_lit(j, ",");
	strbuf_json_str(j, it->actor);
	strbuf_lit(j, ",");
	strbuf_puts(j, it->ttl ? it->ttl : "null");
	strbuf_lit(j, "]");
}

int
noop_submit(struct noop *n, const struct noop_item *it, noop_cb cb, void *arg)
{
	struct batch *b = n->tail;
	size_t len;

	if (b == NULL || b->count == NOOP_BATCH_MAX) {
		b = calloc(1, sizeof(*b));
		if (b == NULL)
			return -1;
		b->n = n;
		if (n->tail != NULL)
			n->tail->next = b;
		else
			n->head = b;
		n->tail = b;
	}
	len = b->json.len;
	add_item(&b->json, it);
	if (b->json.failed) {
		/* Undo the partial item; keep what the batch held. */
		b->json.failed = false;
		b->json.len = len;
		if (b->json.s != NULL)
			b->json.s[len] = '\0';
		return -1;
	}
	b->who[b->count].cb = cb;
	b->who[b->count].arg = arg;
	b->count++;
	if (it->by_bytes)
		n->st.bodies++;
	/* At the end of this turn of the loop, with whatever else it queues. */
	if (n->inflight < NOOP_INFLIGHT_MAX)
		event_active(n->send_ev, EV_TIMEOUT, 0);
	return 0;
}

/* ---------------------------------------------------------------- life */

struct noop *
noop_new(struct event_base *base, struct db *db, int stmt)
{
	struct noop *n = calloc(1, sizeof(*n));

	if (n == NULL)
		return NULL;
	n->db = db;
	n->stmt = stmt;
	n->send_ev = event_new(base, -1, 0, send_cb, n);
	if (n->send_ev == NULL || grow(n) != 0) {
		noop_free(n);
		return NULL;
	}
	return n;
}

void
noop_free(struct noop *n)
{
	struct db_result gone = {DB_UNAVAILABLE, NULL, "", "the server is shutting down"};

	if (n == NULL)
		return;
	while (n->head != NULL) {
		struct batch *b = n->head;

		n->head = b->next;
		batch_fail(b, &gone);
	}
	if (n->send_ev != NULL)
		event_free(n->send_ev);
	for (size_t i = 0; i < n->cap; i++) {
		struct entry *e = n->tab[i];

		if (e == NULL)
			continue;
		free((char *)e->item.deployment);
		free((char *)e->item.extensions);
		free(e->source);
		free(e);
	}
	free(n->tab);
	free(n->bodies);
	free(n);
}

void
noop_get_stats(const struct noop *n, struct noop_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (n != NULL)
		*out = n->st;
}
