/*
 * watch.h — watching an answer: `index`/`wait` on dependents, dependencies,
 * owners and graph (SPEC §5, Consul's blocking query for derived answers).
 *
 * Every answer of those four queries goes through watch_answer(), which computes
 * it from the in-memory graph and sends it with `X-Cmdb-Index: S`, the seq the
 * tailer had applied when it was computed. A request that carries index=N (the
 * X-Cmdb-Index of the answer the client holds) and wait>0 parks as a *watcher*
 * when its answer now is the answer at N; it is answered when the answer
 * changes, or with the same answer (and the current index) when its wait runs
 * out. Design and the proof that a parked watcher misses no change:
 * cmdbd/DESIGN.md, "Watching an answer".
 *
 * Cost: a watcher holds its query, the SHA-256 of its answer and its read set
 * (graph.h, "Read sets"). The tailer reports the nodes each batch touched
 * (tailer_set_observer); a batch that touches no node of any parked read set
 * costs O(nodes touched) and evaluates nothing. A watcher whose read set is
 * touched re-runs its query and is answered only if the answer's hash changed.
 *
 * Single-threaded, on the loop; nothing blocks. One struct watch per server,
 * created with the tailer (it must not outlive the tailer or the graph).
 */
#ifndef CMDB_WATCH_H
#define CMDB_WATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "graph.h"
#include "http.h"
#include "model.h"

struct tailer;
struct watch;

/* Longest wait a request may ask for, in seconds (400 naming `wait` beyond). */
#define WATCH_WAIT_MAX 60
/* A watcher whose read set is larger than this many nodes is kept without one
 * and re-evaluated after every batch that touches anything ("broad"). */
#define WATCH_READS_MAX 65536

enum watch_kind { WATCH_DEPENDENTS, WATCH_DEPENDENCIES, WATCH_OWNERS, WATCH_GRAPH };

/* A watchable query, validated by the handler (api_graph.c). */
struct watch_query {
	enum watch_kind kind;
	char ref[MODEL_REF_MAX + 1]; /* the node (owners) or root */
	int depth;		     /* < 0 = unlimited; walks and graph */
	unsigned mask;		     /* walks: impact types followed */
	size_t limit;		     /* walks */
	int direction;		     /* graph: enum graph_direction */
	bool dot;		     /* graph: Graphviz instead of JSON */
};

/*
 * A watch registry following tailer t over graph g; at most max_watchers parked
 * at once (beyond: 503). NULL on ENOMEM. Registers itself as t's observer.
 */
struct watch *watch_new(struct event_base *base, graph *g, struct tailer *t, long max_watchers);

/* Answers every parked watcher (its current answer) and frees; NULL-safe. */
void watch_free(struct watch *w);

/* Answers every parked watcher now with its current answer; from then on no
 * request parks (shutdown). */
void watch_release_all(struct watch *w);

/*
 * The map was reloaded (the server swapped in graph g and reset the tailer): the
 * parked read sets name nodes of the old graph, so every watcher re-runs its
 * query on g now and is answered if its answer changed; any index older than the
 * reload answers at once from then on.
 */
void watch_graph_replaced(struct watch *w, graph *g);

/* Watchers parked now (the cmdb_watchers gauge). */
size_t watch_count(const struct watch *w);

/*
 * Answers q for r, now or later, exactly once. index < 0: no index (answer now);
 * wait_s in [0, WATCH_WAIT_MAX] (0: answer now). The reply is 200 with the
 * answer, 404 when the node is gone (it may have been deleted while parked),
 * 503 when max_watchers are parked; each carries X-Cmdb-Index.
 */
void watch_answer(struct watch *w, struct http_req *r, const struct watch_query *q, long long index,
		  long wait_s);

/* Sets X-Cmdb-Index: seq on r (graph answers that are not watchable: path, rootcause). */
void watch_set_index(struct http_req *r, long long seq);

#endif
