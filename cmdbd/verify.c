/*
 * verify.c — the comparison of the in-memory graph with PostgreSQL (see
 * verify.h): the statement, holding the tailer at its seq, the sliced
 * comparison and the report.
 */
#include "verify.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "graph.h"
#include "log.h"
#include "sha256.h"

#define HEX_LEN (2 * GRAPH_DIGEST_LEN)

enum { NODES, EDGES, SIDES }; /* the two comparisons: nodes, and outgoing edges */

/* One row of the database's answer. */
struct vrow {
	const char *ref; /* in the arena */
	char digest[HEX_LEN + 1];
	long long count; /* EDGES: how many outgoing edges */
};

/* What differs on one side: how many, and the first max_differ refs the
 * database named (in its order, which is byte order). */
struct differ {
	size_t count;
	const char **refs;
	size_t nrefs;
};

struct verify {
	struct event_base *base;
	struct db *db;
	int stmt;
	struct tailer *t;
	size_t max_differ;
	verify_done_cb cb;
	void *arg;
	unsigned gen; /* tailer_generation() at the start */
	bool done;    /* cb was called: only freeing is left */
	bool pending; /* the statement or the tailer wait will still call back */
	struct event *step;
	struct timespec t0;
	long long seq;
	struct vrow *rows[SIDES];
	size_t nrows[SIDES], pos[SIDES];
	char *arena;
	long long db_edges;
	uint8_t *seen[SIDES]; /* bit per node index: named by the database */
	size_t seen_bits;
	struct differ differ[SIDES];
};

static void
verify_free(struct verify *v)
{
	if (v->step != NULL)
		event_free(v->step);
	for (int s = 0; s < SIDES; s++) {
		free(v->rows[s]);
		free(v->seen[s]);
		free(v->differ[s].refs);
	}
	free(v->arena);
	free(v);
}

/* Ends with an error (once); frees unless a callback is still to come. */
static void
fail(struct verify *v, const char *why)
{
	if (!v->done) {
		v->done = true;
		tailer_set_limit(v->t, TAILER_NO_LIMIT);
		log_warn("event=verify_failed reason=\"%s\"", why);
		v->cb(v->arg, NULL, why);
	}
	if (!v->pending)
		verify_free(v);
}

void
verify_cancel(struct verify *v, const char *why)
{
	if (v != NULL)
		fail(v, why);
}

static void
differ_add(struct verify *v, int side, const char *ref)
{
	struct differ *d = &v->differ[side];

	if (d->nrefs < v->max_differ)
		d->refs[d->nrefs++] = ref;
	d->count++;
}

static bool
bit_test_set(uint8_t *bits, size_t nbits, long i)
{
	bool was;

	if (i < 0 || (size_t)i >= nbits)
		return true;
	was = bits[i / 8] & (1u << (i % 8));
	bits[i / 8] |= (uint8_t)(1u << (i % 8));
	return was;
}

static bool
bit_test(const uint8_t *bits, size_t nbits, long i)
{
	return i >= 0 && (size_t)i < nbits && (bits[i / 8] & (1u << (i % 8)));
}

/* ---------------------------------------------------------------- report */

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * The differ list of one side: the database's differing refs merged with the
 * refs only memory holds (mem, sorted here), the first max_differ of them.
 */
static json_t *
differ_json(struct verify *v, int side, const char **mem, size_t nmem)
{
	const struct differ *d = &v->differ[side];
	json_t *list = json_array();
	size_t i = 0, j = 0;

	if (nmem > 1)
		qsort(mem, nmem, sizeof(*mem), cmp_str);
	while (list != NULL && json_array_size(list) < v->max_differ &&
	       (i < d->nrefs || j < nmem)) {
		const char *ref;

		if (j == nmem || (i < d->nrefs && strcmp(d->refs[i], mem[j]) < 0))
			ref = d->refs[i++];
		else
			ref = mem[j++];
		json_array_append_new(list, json_string(ref));
	}
	return list;
}

/* The nodes only memory holds (and those whose edges the database did not name),
 * then the report. */
static void
finish(struct verify *v)
{
	graph *g = tailer_graph(v->t);
	long end = graph_index_end(g);
	const char **mem[SIDES] = {NULL, NULL};
	size_t nmem[SIDES] = {0, 0};
	json_t *report, *sides[SIDES];
	bool ok;

	for (int s = 0; s < SIDES; s++)
		if ((mem[s] = malloc((size_t)(end > 0 ? end : 1) * sizeof(char *))) == NULL)
			goto oom;
	for (long i = 0; i < end; i++) {
		const char *ref = graph_node_ref(g, i);
		size_t in, out;

		if (ref == NULL)
			continue;
		if (!bit_test(v->seen[NODES], v->seen_bits, i))
			mem[NODES][nmem[NODES]++] = ref;
		graph_degree(g, i, &in, &out);
		if (out > 0 && !bit_test(v->seen[EDGES], v->seen_bits, i))
			mem[EDGES][nmem[EDGES]++] = ref;
	}
	for (int s = 0; s < SIDES; s++) {
		json_t *list = differ_json(v, s, mem[s], nmem[s]);

		v->differ[s].count += nmem[s];
		sides[s] = json_pack(
		    "{s:I,s:I,s:o*,s:I}", "memory",
		    (json_int_t)(s == NODES ? graph_node_count(g) : graph_edge_count(g)),
		    "database", (json_int_t)(s == NODES ? (long long)v->nrows[NODES] : v->db_edges),
		    "differ", list, "differ_count", (json_int_t)v->differ[s].count);
	}
	ok = v->differ[NODES].count == 0 && v->differ[EDGES].count == 0;
	report = json_pack("{s:I,s:b,s:I,s:o*,s:o*}", "seq", (json_int_t)v->seq, "ok", ok, "ms",
			   (json_int_t)(clock_ms_since(&v->t0) + 0.5), "nodes", sides[NODES],
			   "edges", sides[EDGES]);
	free(mem[NODES]);
	free(mem[EDGES]);
	if (report == NULL) {
		fail(v, "out of memory");
		return;
	}
	log_msg(ok ? LOG_INFO : LOG_WARN,
		"event=verify_done seq=%lld ok=%d nodes_differ=%zu edges_differ=%zu ms=%.0f",
		v->seq, ok, v->differ[NODES].count, v->differ[EDGES].count, clock_ms_since(&v->t0));
	v->done = true;
	tailer_set_limit(v->t, TAILER_NO_LIMIT);
	v->cb(v->arg, report, NULL);
	verify_free(v);
	return;
oom:
	free(mem[NODES]);
	free(mem[EDGES]);
	fail(v, "out of memory");
}

/* ------------------------------------------------------------ comparing */

/* Compares one row; false on ENOMEM. */
static bool
compare_row(struct verify *v, graph *g, int side, const struct vrow *row)
{
	unsigned char d[GRAPH_DIGEST_LEN];
	char hex[HEX_LEN + 1];
	long idx = graph_find(g, row->ref);
	size_t count = 0;
	int rc;

	if (idx < 0) {
		differ_add(v, side, row->ref); /* only the database has it */
		return true;
	}
	bit_test_set(v->seen[side], v->seen_bits, idx);
	rc = side == NODES ? graph_node_digest(g, idx, d) : graph_out_digest(g, idx, d, &count);
	if (rc == GRAPH_ENOMEM)
		return false;
	if (rc == 0)
		sha256_hex(d, GRAPH_DIGEST_LEN, hex);
	if (rc != 0 || strcmp(hex, row->digest) != 0 ||
	    (side == EDGES && (long long)count != row->count))
		differ_add(v, side, row->ref);
	return true;
}

static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct verify *v = arg;
	graph *g = tailer_graph(v->t);
	size_t budget = VERIFY_SLICE;

	(void)fd;
	(void)what;
	if (tailer_generation(v->t) != v->gen) {
		fail(v, "the map was reloaded during the verification");
		return;
	}
	for (int s = 0; s < SIDES; s++)
		while (v->pos[s] < v->nrows[s] && budget > 0) {
			if (!compare_row(v, g, s, &v->rows[s][v->pos[s]++])) {
				fail(v, "out of memory");
				return;
			}
			budget--;
		}
	if (v->pos[NODES] < v->nrows[NODES] || v->pos[EDGES] < v->nrows[EDGES])
		event_active(v->step, EV_TIMEOUT, 0);
	else
		finish(v);
}

/* The tailer reached the database's seq (or gave up). */
static void
reached_cb(void *arg, bool reached)
{
	struct verify *v = arg;
	long end;

	v->pending = false;
	if (v->done) {
		verify_free(v);
		return;
	}
	if (!reached) {
		fail(v, "the map did not reach the database's seq in time");
		return;
	}
	if (tailer_generation(v->t) != v->gen) {
		fail(v, "the map was reloaded during the verification");
		return;
	}
	end = graph_index_end(tailer_graph(v->t));
	v->seen_bits = (size_t)end;
	for (int s = 0; s < SIDES; s++)
		if ((v->seen[s] = calloc((size_t)end / 8 + 1, 1)) == NULL) {
			fail(v, "out of memory");
			return;
		}
	event_active(v->step, EV_TIMEOUT, 0);
}

/* Copies the database's rows (the result is freed after this callback). */
static bool
take_rows(struct verify *v, const PGresult *res)
{
	int n = PQntuples(res);
	size_t bytes = 0, nrows[SIDES] = {0, 0};
	char *a;

	v->seq = -1;
	for (int i = 0; i < n; i++) {
		const char *tag = PQgetvalue(res, i, 0);

		if (tag[0] == 's') {
			v->seq = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		} else if (PQgetlength(res, i, 2) == HEX_LEN) {
			nrows[tag[0] == 'n' ? NODES : EDGES]++;
			bytes += (size_t)PQgetlength(res, i, 1) + 1;
		}
	}
	for (int s = 0; s < SIDES; s++)
		if ((v->rows[s] = calloc(nrows[s] + 1, sizeof(struct vrow))) == NULL ||
		    (v->differ[s].refs = calloc(v->max_differ + 1, sizeof(char *))) == NULL)
			return false;
	if ((v->arena = a = malloc(bytes + 1)) == NULL)
		return false;
	for (int i = 0; i < n; i++) {
		const char *tag = PQgetvalue(res, i, 0);
		struct vrow *row;
		int s;

		if (tag[0] == 's' || PQgetlength(res, i, 2) != HEX_LEN)
			continue;
		s = tag[0] == 'n' ? NODES : EDGES;
		row = &v->rows[s][v->nrows[s]++];
		memcpy(a, PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1) + 1);
		row->ref = a;
		a += PQgetlength(res, i, 1) + 1;
		memcpy(row->digest, PQgetvalue(res, i, 2), HEX_LEN + 1);
		if (s == EDGES) {
			row->count = strtoll(PQgetvalue(res, i, 3), NULL, 10);
			v->db_edges += row->count;
		}
	}
	return true;
}

static void
rows_cb(void *arg, const struct db_result *r)
{
	struct verify *v = arg;

	v->pending = false;
	if (v->done) {
		verify_free(v);
		return;
	}
	if (r->status != DB_OK) {
		char why[300];

		snprintf(why, sizeof(why), "the database could not be read: %s", r->message);
		fail(v, why);
		return;
	}
	if (!take_rows(v, r->res)) {
		fail(v, "out of memory");
		return;
	}
	if (v->seq < tailer_applied(v->t) || tailer_generation(v->t) != v->gen) {
		fail(v, "the map was reloaded during the verification");
		return;
	}
	/* Let the tailer apply exactly up to the snapshot's seq, then compare. */
	tailer_set_limit(v->t, v->seq);
	if (tailer_applied(v->t) < v->seq)
		tailer_poke(v->t); /* its NOTIFY may still be on the way */
	v->pending = true;
	if (tailer_wait(v->t, v->seq, VERIFY_CATCH_UP_MS, reached_cb, v) != 0) {
		v->pending = false;
		fail(v, "out of memory");
	}
	/* v may be gone: reached_cb can run from tailer_wait itself. */
}

struct verify *
verify_start(struct event_base *base, struct db *db, int stmt, struct tailer *t, size_t max_differ,
	     verify_done_cb cb, void *arg)
{
	struct verify *v = calloc(1, sizeof(*v));

	if (v == NULL)
		return NULL;
	v->base = base;
	v->db = db;
	v->stmt = stmt;
	v->t = t;
	v->max_differ = max_differ;
	v->cb = cb;
	v->arg = arg;
	v->gen = tailer_generation(t);
	clock_gettime(CLOCK_MONOTONIC, &v->t0);
	if ((v->step = event_new(base, -1, 0, step_cb, v)) == NULL) {
		free(v);
		return NULL;
	}
	/* Hold the graph where it is: the snapshot will be at this seq or later. */
	tailer_set_limit(t, tailer_applied(t));
	v->pending = true;
	if (db_query(db, stmt, NULL, rows_cb, v) != 0) {
		tailer_set_limit(t, TAILER_NO_LIMIT);
		event_free(v->step);
		free(v);
		return NULL;
	}
	return v;
}
