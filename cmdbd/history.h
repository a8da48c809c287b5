/*
 * history.h — the map as of a past seq (SPEC §5 "As of"), for the graph
 * handlers and the reach of a diff.
 *
 * An as-of graph is an ordinary graph (graph.h) built on the loop, in steps, from
 * change rows read through the pool (never a blocking call):
 *   - near the present (seq >= applied / 2): a copy of the live graph's structure
 *     (graph_copy), then the rows (seq, applied] UNDONE newest first from their
 *     `before` images, 20000 rows per read;
 *   - far back: an empty graph and the rows (0, seq] replayed from their `after`
 *     images.
 * Whichever touches fewer rows. As-of graphs hold no node images: a node GET or
 * the edges of a node as of a seq read the images of that moment from the change
 * log (cmdb_history_images, migrations/0008).
 *
 * Built graphs are kept in a small LRU cache (at most HISTORY_CACHE graphs and
 * HISTORY_CACHE_BYTES of them, by graph_bytes(); the last one used always
 * stays): an investigation asks many questions of one moment. At most
 * HISTORY_BUILDS builds run at once; more → 503.
 *
 * Points: as_of=TIME answers (the greatest seq whose at <= TIME, from
 * cmdb_history_point) are kept for 32 TIMEs and moved by the tailer's rows
 * (history_note_applied); the at of the latest applied seq and of cached graphs
 * are kept too. So a question about a moment already asked needs no query.
 *
 * The seq equal to what the tailer has applied is answered by the live graph.
 * Single-threaded like the graph; state is module-global (one per process).
 */
#ifndef CMDB_HISTORY_H
#define CMDB_HISTORY_H

#include "graph.h"
#include "http.h"

#define HISTORY_CACHE 4
#define HISTORY_CACHE_BYTES ((size_t)192 << 20)
#define HISTORY_BUILDS 2

struct app;

/* Binds the module to the server's application context (app.h) before any use:
 * its pool, live map and tailer. server.c calls it at start. */
void history_bind(struct app *a);

/* A resolved point of history: what a reply's "as_of" says. */
struct history_point {
	long long seq;
	char at[GRAPH_TIME_LEN + 1]; /* "" = null (seq 0: the empty map) */
};

/*
 * cb(arg, g, NULL) with the graph as of seq (valid during the call only), or
 * cb(arg, NULL, why) when it cannot be built (database unavailable, out of
 * memory, too many builds). seq must not exceed the tailer's applied seq. The
 * callback may run before this returns (cached or live graph).
 */
typedef void (*history_cb)(void *arg, graph *g, const char *why);
void history_graph_at(long long seq, history_cb cb, void *arg);

/*
 * For a graph handler: the graph to answer from. Without as_of (query
 * parameter, or the "as_of" field of a POST body) it is the live graph. With
 * one, the first call validates it (400 naming as_of), resolves it to a seq
 * (cmdb_history_point) and returns NULL: the handler must return, and is called
 * again later with the same request, when this returns the as-of graph (or the
 * request has been answered with an error meanwhile).
 */
graph *history_graph(struct http_req *r, void (*handler)(struct http_req *));

/* The point being answered while a handler is re-run for as_of, else NULL. */
const struct history_point *history_point(const struct http_req *r);

/* {"seq":N,"at":T} of a point, a NEW jansson object. */
json_t *history_point_json(const struct history_point *p);

/* Replies 200 with body (stolen), plus "as_of" when the handler answers as of. */
void history_reply_json(struct http_req *r, json_t *body);
/* The same for a serialised JSON object (spliced before its closing brace). */
void history_reply_raw(struct http_req *r, const char *text, size_t len);
/* A Graphviz reply, with a "// as_of seq=N at=T" first line when as of. */
void history_reply_dot(struct http_req *r, const char *dot);

/*
 * The tailer reports every change row it applies (seq order) with its at
 * (GRAPH_TIME_LEN format): the at of the latest seq is then known, and a
 * remembered TIME answer that the row changes (its at <= that TIME) is updated.
 */
void history_note_applied(long long seq, const char *at);

/* Cache figures (for logs and tests) and the shutdown. */
size_t history_cached(void);
void history_free_all(void);

#endif
