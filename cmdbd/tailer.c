/*
 * tailer.c — the change-log follower, the poll of source sightings and the
 * start-up graph loader (see tailer.h).
 */
#include "tailer.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uuid/uuid.h>

#include "history.h"
#include "log.h"
#include "strbuf.h"

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
		history_note_applied(seq, PQgetvalue(r->res, i, 9));
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

/*
 * Splits a COPY line into at most n tab-separated fields, unescaped in place;
 * a NULL (\N) field becomes a NULL pointer.
 */
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
	for (int i = 0; i < k; i++) {
		if (strcmp(fields[i], "\\N") == 0)
			fields[i] = NULL;
		else
			copy_unescape(fields[i]);
	}
	return k;
}

/* ------------------------------------------------------------ load state */

/* A node id (uuid) -> graph index table, only for the load: the edges COPY
 * names its endpoints by id, which saves PostgreSQL two joins over the whole
 * edges table. */
struct id_slot {
	uint8_t id[16];
	uint32_t idx1; /* index + 1; 0 = empty */
};

struct load {
	graph *g;
	struct id_slot *ids;
	uint32_t ids_cap; /* power of two, >= 2 * nodes */
	uint32_t ids_n;
	struct strbuf img; /* scratch for one node image */
	bool binary_header_done;
	long no_image; /* nodes whose row could not be turned into an image */
};

static uint32_t
id_hash(const uint8_t id[16])
{
	uint32_t h;

	memcpy(&h, id + 12, sizeof h); /* random bits of a v4 uuid */
	return h * 2654435761u;
}

static int
ids_add(struct load *l, const uint8_t id[16], uint32_t idx)
{
	if ((l->ids_n + 1) * 2 > l->ids_cap) {
		uint32_t ncap = l->ids_cap ? l->ids_cap * 2 : 1024;
		struct id_slot *nt = calloc(ncap, sizeof *nt);

		if (nt == NULL)
			return -1;
		for (uint32_t i = 0; i < l->ids_cap; i++) {
			uint32_t j;

			if (l->ids[i].idx1 == 0)
				continue;
			for (j = id_hash(l->ids[i].id) & (ncap - 1); nt[j].idx1 != 0;
			     j = (j + 1) & (ncap - 1))
				;
			nt[j] = l->ids[i];
		}
		free(l->ids);
		l->ids = nt;
		l->ids_cap = ncap;
	}
	for (uint32_t j = id_hash(id) & (l->ids_cap - 1);; j = (j + 1) & (l->ids_cap - 1)) {
		if (l->ids[j].idx1 == 0) {
			memcpy(l->ids[j].id, id, 16);
			l->ids[j].idx1 = idx + 1;
			l->ids_n++;
			return 0;
		}
		if (memcmp(l->ids[j].id, id, 16) == 0) {
			l->ids[j].idx1 = idx + 1;
			return 0;
		}
	}
}

static long
ids_find(const struct load *l, const uint8_t id[16])
{
	if (l->ids_cap == 0)
		return -1;
	for (uint32_t j = id_hash(id) & (l->ids_cap - 1);; j = (j + 1) & (l->ids_cap - 1)) {
		if (l->ids[j].idx1 == 0)
			return -1;
		if (memcmp(l->ids[j].id, id, 16) == 0)
			return (long)l->ids[j].idx1 - 1;
	}
}

/* ---------------------------------------------------- node image building */

/*
 * A timestamptz as COPY prints it with TimeZone UTC and DateStyle ISO
 * ("2026-11-21 10:00:00.12+00", fraction trimmed or absent) in cmdb_ts()'s
 * format ("2026-11-21T10:00:00.120000Z"); NULL gives null. False when the
 * text is not of that form (a year past 9999, say).
 */
static bool
img_time(struct strbuf *b, const char *t)
{
	char out[GRAPH_TIME_LEN + 3];
	size_t n, frac = 0;

	if (t == NULL) {
		strbuf_lit(b, "null");
		return true;
	}
	n = strlen(t);
	if (n < 22 || t[4] != '-' || t[10] != ' ' || t[13] != ':' || t[19] == '\0' ||
	    strcmp(t + n - 3, "+00") != 0)
		return false;
	out[0] = '"';
	memcpy(out + 1, t, 19);
	out[11] = 'T';
	out[20] = '.';
	if (t[19] == '.') {
		frac = n - 3 - 20;
		if (frac > 6)
			return false;
		memcpy(out + 21, t + 20, frac);
	} else if (n != 22) {
		return false;
	}
	memset(out + 21 + frac, '0', 6 - frac);
	out[27] = 'Z';
	out[28] = '"';
	strbuf_add(b, out, 29);
	return true;
}

/*
 * One row of the nodes COPY (columns in LOAD_NODES order): the node into the
 * graph with its image built as cmdb_node_json() shapes it (last_seen_at is
 * the stored column; GET derives the rest, graph.h). A row whose image cannot
 * be built still loads, without an image (GET then asks the database).
 */
static int
load_node(struct load *l, char **f)
{
	const char *id = f[0], *ref = f[1], *attrs = f[5], *sources = f[10];
	uint8_t uid[16];
	bool ok;
	long idx;

	if (id == NULL || ref == NULL || attrs == NULL || sources == NULL || f[6] == NULL ||
	    f[9] == NULL || f[11] == NULL || uuid_parse(id, uid) != 0)
		return -1;
	struct strbuf *b = &l->img;
	strbuf_reset(b);
	strbuf_lit(b, "{\"id\":");
	strbuf_json_str(b, id);
	strbuf_lit(b, ",\"ref\":");
	strbuf_json_str(b, ref);
	strbuf_lit(b, ",\"kind\":");
	strbuf_json_str(b, f[2]);
	strbuf_lit(b, ",\"name\":");
	strbuf_json_str(b, f[3]);
	strbuf_lit(b, ",\"attributes\":");
	strbuf_puts(b, attrs);
	strbuf_lit(b, ",\"labels\":");
	strbuf_puts(b, f[6]);
	strbuf_lit(b, ",\"health\":");
	strbuf_json_str(b, f[4]);
	strbuf_lit(b, ",\"health_reason\":");
	strbuf_json_str(b, f[7]);
	strbuf_lit(b, ",\"health_at\":");
	ok = img_time(b, f[8]);
	strbuf_lit(b, ",\"orphan\":");
	strbuf_puts(b, strcmp(f[9], "t") == 0 ? "true" : "false");
	strbuf_lit(b, ",\"sources\":");
	strbuf_puts(b, sources);
	strbuf_lit(b, ",\"version\":");
	strbuf_puts(b, f[11]);
	strbuf_lit(b, ",\"created_at\":");
	ok = img_time(b, f[12]) && ok;
	strbuf_lit(b, ",\"updated_at\":");
	ok = img_time(b, f[13]) && ok;
	strbuf_lit(b, ",\"last_seen_at\":");
	ok = img_time(b, f[14]) && ok;
	strbuf_lit(b, "}");
	ok = ok && !b->failed;
	if (!ok)
		l->no_image++;
	if (graph_node_put_image(l->g, ref, graph_health_parse(f[4]),
				 strcmp(attrs, "{}") == 0 ? NULL : attrs, ok ? b->s : NULL,
				 ok ? b->len : 0) != 0)
		return -1;
	idx = graph_find(l->g, ref);
	return idx >= 0 && ids_add(l, uid, (uint32_t)idx) == 0 ? 0 : -1;
}

/*
 * The nodes COPY: what cmdb_node_json() reads, as plain columns (building the
 * JSON here is several times cheaper than jsonb_build_object per row in
 * PostgreSQL). Timestamps print as ISO in UTC (the load transaction sets both).
 */
#define LOAD_NODES                                                                                 \
	"COPY (SELECT n.id, n.kind || '/' || n.name, n.kind, n.name, n.health, n.attributes,"      \
	" n.labels, n.health_reason, n.health_at, n.orphan, n.sources, n.version, n.created_at,"   \
	" n.updated_at, n.last_seen_at FROM nodes n) TO STDOUT"
#define LOAD_NODE_FIELDS 15

/* The edges COPY, binary: (from_id uuid, type text, to_id uuid) per row. */
#define LOAD_EDGES "COPY (SELECT from_id, type, to_id FROM edges) TO STDOUT (FORMAT binary)"

static uint32_t
be32(const char *p)
{
	const unsigned char *u = (const unsigned char *)p;

	return (uint32_t)u[0] << 24 | (uint32_t)u[1] << 16 | (uint32_t)u[2] << 8 | u[3];
}

static int
edge_type_parse_n(const char *s, size_t n)
{
	for (int t = 0; t < GRAPH_EDGE_TYPES; t++) {
		const char *name = graph_edge_type_name(t);

		if (strlen(name) == n && memcmp(name, s, n) == 0)
			return t;
	}
	return -1;
}

/*
 * One CopyData message of the binary edges COPY: the file header (first
 * message only), then whole tuples, or the trailer (field count -1).
 */
static int
load_edges_msg(struct load *l, char *buf, int len)
{
	const char *p = buf, *end = buf + len;

	if (!l->binary_header_done) {
		if (len < 19 || memcmp(p, "PGCOPY\n\377\r\n\0", 11) != 0)
			return -1;
		p += 19 + be32(p + 15); /* signature, flags, extension length + extension */
		l->binary_header_done = true;
	}
	while (p + 2 <= end) {
		int nf = (int16_t)(((unsigned char)p[0] << 8) | (unsigned char)p[1]);
		const char *fld[3];
		uint32_t flen[3];
		long f, t;
		int type;

		p += 2;
		if (nf == -1)
			return 0;
		if (nf != 3)
			return -1;
		for (int k = 0; k < 3; k++) {
			if (p + 4 > end)
				return -1;
			flen[k] = be32(p);
			p += 4;
			if (flen[k] == UINT32_MAX || flen[k] > (size_t)(end - p))
				return -1;
			fld[k] = p;
			p += flen[k];
		}
		if (flen[0] != 16 || flen[2] != 16)
			return -1;
		f = ids_find(l, (const uint8_t *)fld[0]);
		t = ids_find(l, (const uint8_t *)fld[2]);
		type = edge_type_parse_n(fld[1], flen[1]);
		if (f < 0 || t < 0 || type < 0 || graph_edge_put_idx(l->g, f, type, t) != 0)
			return -1;
	}
	return p == end ? 0 : -1;
}

/* Streams one COPY ... TO STDOUT and calls row() per text line, or msg() per
 * binary message. Returns rows (messages) or -1. */
static long
copy_stream(PGconn *conn, const char *sql, struct load *l, int (*row)(struct load *l, char **f),
	    int (*msg)(struct load *l, char *buf, int len))
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
		char *f[LOAD_NODE_FIELDS];
		int rc = 0;

		if (msg != NULL) {
			rc = msg(l, buf, len);
		} else {
			if (buf[len - 1] == '\n')
				buf[len - 1] = '\0';
			if (copy_fields(buf, f, LOAD_NODE_FIELDS) != LOAD_NODE_FIELDS)
				rc = -1;
			else
				rc = row(l, f);
		}
		PQfreemem(buf);
		if (rc != 0) {
			log_error("event=graph_load_failed reason=\"cannot apply a row\" row=%ld",
				  n);
			/* Drain the rest so the connection stays usable for ROLLBACK. */
			while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
				PQfreemem(buf);
			while ((res = PQgetResult(conn)) != NULL)
				PQclear(res);
			return -1;
		}
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

/* The sightings of every source (seen[], graph.h), in the load's snapshot. */
static int
load_seen(PGconn *conn, graph *g)
{
	PGresult *res = PQexec(conn, "SELECT source, cmdb_ts(last_applied_at) FROM source_state");
	int rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		log_error("event=graph_load_failed reason=\"%s\"", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		if (graph_source_seen(g, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)) != 0 &&
		    errno == ENOMEM)
			rc = -1;
	PQclear(res);
	return rc;
}

static bool
exec_ok(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	bool ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	return ok;
}

long long
tailer_load(PGconn *conn, graph *g)
{
	PGresult *res = NULL;
	struct load l = {.g = g};
	long long seq = -1;
	long nodes = -1, edges = -1;
	struct timespec t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (!exec_ok(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY") ||
	    !exec_ok(conn, "SET LOCAL TimeZone = 'UTC'") ||
	    !exec_ok(conn, "SET LOCAL DateStyle = 'ISO'"))
		goto fail;
	res = PQexec(conn, "SELECT last FROM change_seq");
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		goto fail;
	seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	res = NULL;
	if (load_seen(conn, g) == 0 &&
	    (nodes = copy_stream(conn, LOAD_NODES, &l, load_node, NULL)) >= 0)
		edges = copy_stream(conn, LOAD_EDGES, &l, NULL, load_edges_msg);
	if (nodes < 0 || edges < 0) {
		seq = -1;
		goto out;
	}
	if (!exec_ok(conn, "COMMIT"))
		goto fail;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (l.no_image > 0)
		log_warn("event=graph_load_images_missing nodes=%ld hint=\"GET of these nodes "
			 "reads the database\"",
			 l.no_image);
	log_info("event=graph_loaded nodes=%ld edges=%zu seq=%lld ms=%.0f", nodes,
		 graph_edge_count(g), seq,
		 (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	free(l.ids);
	strbuf_release(&l.img);
	return seq;
fail:
	log_error("event=graph_load_failed reason=\"%s\"", PQerrorMessage(conn));
	seq = -1;
out:
	PQclear(res);
	res = PQexec(conn, "ROLLBACK");
	PQclear(res);
	free(l.ids);
	strbuf_release(&l.img);
	return seq;
}
