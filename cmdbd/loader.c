/*
 * loader.c — the map loader (see loader.h): the COPY-based load of the whole
 * graph at one snapshot, and the thread that runs it in the background.
 */
#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <uuid/uuid.h>

#include "clock.h"
#include "log.h"
#include "strbuf.h"

/* ------------------------------------------------------- COPY text format */
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

/* The load failed on conn: its error's first line (libpq's messages span lines). */
static void
log_load_failed(PGconn *conn)
{
	const char *m = PQerrorMessage(conn);
	char line[300], q[320];

	snprintf(line, sizeof(line), "%.*s", (int)strcspn(m, "\n"), m);
	log_error("event=graph_load_failed reason=%s", log_q(line, q, sizeof(q)));
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
		log_load_failed(conn);
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
		log_load_failed(conn);
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
		log_load_failed(conn);
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
		if (graph_source_seen(g, PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)) ==
		    GRAPH_ENOMEM)
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
loader_load(PGconn *conn, graph *g)
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
	if (l.no_image > 0)
		log_warn("event=graph_load_images_missing nodes=%ld hint=\"GET of these nodes "
			 "reads the database\"",
			 l.no_image);
	/* The walk index here, in the loader's thread, so that the first query
	 * does not build it on the loop (graph.h; without it walks are slower). */
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (graph_index_refresh(g) != 0)
		log_warn("event=graph_index_failed error=\"out of memory\"");
	log_info("event=graph_loaded nodes=%ld edges=%zu seq=%lld ms=%.0f index_ms=%.0f", nodes,
		 graph_edge_count(g), seq, clock_ms_since(&t0), clock_ms_since(&t1));
	free(l.ids);
	strbuf_release(&l.img);
	return seq;
fail:
	log_load_failed(conn);
	seq = -1;
out:
	PQclear(res);
	res = PQexec(conn, "ROLLBACK");
	PQclear(res);
	free(l.ids);
	strbuf_release(&l.img);
	return seq;
}

/* ------------------------------------------------------- background loads */

struct loader {
	struct event_base *base;
	char *conninfo;
	int connect_timeout_s;
	loader_done_cb cb;
	void *arg;
	pthread_t thread;
	int pipe[2];	    /* the worker writes one byte to [1] when it is done */
	struct event *done; /* on pipe[0], on the loop */
	/* Written by the worker, read by the loop after pthread_join(). */
	graph *g;
	long long seq;
	char error[256];
	/* Shared: the loop may cancel the worker's statement. */
	pthread_mutex_t mu;
	PGcancel *cancel; /* while the worker's connection is open */
	bool cancelled;
};

/* The first line of libpq's message (its messages end in "\n"). */
static void
first_line(char *out, size_t size, const char *msg)
{
	snprintf(out, size, "%.*s", (int)strcspn(msg, "\n"), msg);
}

static void
quiet_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

static void *
worker(void *arg)
{
	struct loader *l = arg;
	char timeout[16];
	const char *keys[3], *values[3];
	PGconn *conn;
	bool cancelled;
	int n = 0;

	/* connect_timeout first: one in the conninfo (expanded from dbname) wins. */
	snprintf(timeout, sizeof(timeout), "%d", l->connect_timeout_s);
	if (l->connect_timeout_s > 0) {
		keys[n] = "connect_timeout";
		values[n++] = timeout;
	}
	keys[n] = "dbname";
	values[n++] = l->conninfo;
	keys[n] = values[n] = NULL;
	conn = PQconnectdbParams(keys, values, 1);
	l->seq = -1;
	pthread_mutex_lock(&l->mu);
	cancelled = l->cancelled;
	if (!cancelled && PQstatus(conn) == CONNECTION_OK)
		l->cancel = PQgetCancel(conn);
	pthread_mutex_unlock(&l->mu);
	if (cancelled) {
		snprintf(l->error, sizeof(l->error), "cancelled");
	} else if (PQstatus(conn) != CONNECTION_OK) {
		first_line(l->error, sizeof(l->error), PQerrorMessage(conn));
	} else if ((l->g = graph_new()) == NULL) {
		snprintf(l->error, sizeof(l->error), "out of memory");
	} else {
		PQsetNoticeProcessor(conn, quiet_notice, NULL);
		l->seq = loader_load(conn, l->g);
		if (l->seq < 0) {
			graph_free(l->g);
			l->g = NULL;
			snprintf(l->error, sizeof(l->error),
				 "the load failed (see graph_load_failed)");
		}
	}
	pthread_mutex_lock(&l->mu);
	PQfreeCancel(l->cancel);
	l->cancel = NULL;
	pthread_mutex_unlock(&l->mu);
	PQfinish(conn);
	/* Wake the loop: one byte into our own empty pipe, which cannot fill up. */
	while (write(l->pipe[1], "x", 1) < 0 && errno == EINTR)
		;
	return NULL;
}

static void
loader_destroy(struct loader *l)
{
	if (l->done != NULL)
		event_free(l->done);
	close(l->pipe[0]);
	close(l->pipe[1]);
	pthread_mutex_destroy(&l->mu);
	graph_free(l->g);
	free(l->conninfo);
	free(l);
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loader *l = arg;
	char byte;
	graph *g;

	(void)what;
	/* The worker's byte: it has finished (or is about to: the join waits). */
	while (read(fd, &byte, 1) < 0 && errno == EINTR)
		;
	pthread_join(l->thread, NULL);
	g = l->g;
	l->g = NULL;
	l->cb(l->arg, g, g != NULL ? l->seq : -1, g != NULL ? NULL : l->error);
	loader_destroy(l);
}

struct loader *
loader_start(struct event_base *base, const char *conninfo, int connect_timeout_s,
	     loader_done_cb cb, void *arg)
{
	struct loader *l = calloc(1, sizeof(*l));
	sigset_t all, old;
	int err;

	if (l == NULL)
		return NULL;
	l->pipe[0] = l->pipe[1] = -1;
	if (pthread_mutex_init(&l->mu, NULL) != 0) {
		free(l);
		errno = ENOMEM;
		return NULL;
	}
	l->base = base;
	l->connect_timeout_s = connect_timeout_s;
	l->cb = cb;
	l->arg = arg;
	if ((l->conninfo = strdup(conninfo)) == NULL || pipe2(l->pipe, O_CLOEXEC) != 0 ||
	    (l->done = event_new(base, l->pipe[0], EV_READ, done_cb, l)) == NULL ||
	    event_add(l->done, NULL) != 0) {
		err = errno ? errno : ENOMEM;
		loader_destroy(l);
		errno = err;
		return NULL;
	}
	/* The worker takes no signals: they stay with the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&l->thread, NULL, worker, l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err != 0) {
		loader_destroy(l);
		errno = err;
		return NULL;
	}
	return l;
}

void
loader_cancel(struct loader *l)
{
	char errbuf[256];

	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->cancelled = true;
	if (l->cancel != NULL)
		(void)PQcancel(l->cancel, errbuf, sizeof(errbuf));
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->thread, NULL);
	loader_destroy(l);
}
