/*
 * sweeper.c — the staleness sweeper's timer (see sweeper.h). The decisions are in
 * SQL (cmdb_sweep); this file schedules the calls and logs what they did.
 */
#include "sweeper.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <jansson.h>

#include "log.h"
#include "metrics.h"

struct sweeper {
	struct db *db;
	int stmt;
	struct event *timer;
	char ttl[24], purge[24]; /* parameters; "" = off */
	bool busy;		 /* a statement is in flight */
	bool stopped;
	bool failing; /* the last call failed: log the next failure at debug only */
};

static void tick(evutil_socket_t fd, short what, void *arg);

static void
schedule(struct sweeper *s, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	if (!s->stopped)
		evtimer_add(s->timer, &tv);
}

/* Logs one unit of work; returns whether to call again at once. */
static bool
report(const struct db_result *r)
{
	json_t *reply, *body, *seq;
	const char *expired, *purged;
	char q[300];
	bool more;

	if (PQntuples(r->res) != 1 ||
	    (reply = json_loads(PQgetvalue(r->res, 0, 0), 0, NULL)) == NULL)
		return false;
	body = json_object_get(reply, "body");
	seq = json_object_get(reply, "seq");
	expired = json_string_value(json_object_get(body, "expired"));
	purged = json_string_value(json_object_get(body, "purged"));
	if (expired != NULL) {
		json_t *rep = json_object_get(body, "report");

		log_info("event=source_expired source=%s seq=%lld edges_removed=%lld orphaned=%zu",
			 log_q(expired, q, sizeof(q)), (long long)json_integer_value(seq),
			 (long long)json_integer_value(
			     json_object_get(json_object_get(rep, "edges"), "removed")),
			 json_array_size(json_object_get(rep, "orphaned")));
		metrics_count_sweep("source_expired");
	}
	if (purged != NULL) {
		log_info("event=orphan_purged ref=%s seq=%lld", log_q(purged, q, sizeof(q)),
			 (long long)json_integer_value(seq));
		metrics_count_sweep("orphan_purged");
	}
	more = json_is_true(json_object_get(body, "more"));
	json_decref(reply);
	return more;
}

static void
on_reply(void *arg, const struct db_result *r)
{
	struct sweeper *s = arg;
	bool more = false;

	s->busy = false;
	if (r->status == DB_OK) {
		s->failing = false;
		more = report(r);
	} else if (r->status == DB_ERROR) {
		log_msg(s->failing ? LOG_DEBUG : LOG_WARN,
			"event=sweep_failed sqlstate=%s message=\"%s\"", r->sqlstate, r->message);
		s->failing = true;
	}
	/* DB_UNAVAILABLE: the pool reconnects by itself; the next tick tries again. */
	schedule(s, more ? 0 : SWEEPER_INTERVAL_MS);
}

static void
tick(evutil_socket_t fd, short what, void *arg)
{
	struct sweeper *s = arg;
	const char *params[2] = {s->ttl[0] ? s->ttl : NULL, s->purge[0] ? s->purge : NULL};

	(void)fd;
	(void)what;
	if (s->stopped || s->busy)
		return;
	if (!db_ready(s->db) || db_query(s->db, s->stmt, params, on_reply, s) != 0) {
		schedule(s, SWEEPER_INTERVAL_MS);
		return;
	}
	s->busy = true;
}

struct sweeper *
sweeper_new(struct event_base *base, struct db *db, int stmt, long source_ttl, long purge_after)
{
	struct sweeper *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	s->db = db;
	s->stmt = stmt;
	if (source_ttl > 0)
		snprintf(s->ttl, sizeof(s->ttl), "%ld", source_ttl);
	if (purge_after > 0)
		snprintf(s->purge, sizeof(s->purge), "%ld", purge_after);
	s->timer = evtimer_new(base, tick, s);
	if (s->timer == NULL) {
		free(s);
		return NULL;
	}
	schedule(s, SWEEPER_INTERVAL_MS);
	return s;
}

void
sweeper_stop(struct sweeper *s)
{
	if (s == NULL)
		return;
	s->stopped = true;
	evtimer_del(s->timer);
}

void
sweeper_free(struct sweeper *s)
{
	if (s == NULL)
		return;
	event_free(s->timer);
	free(s);
}
