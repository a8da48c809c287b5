/*
 * auth.c — the token cache and the per-request check (see auth.h).
 */
#include "auth.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/event.h>

#include "db.h"
#include "log.h"
#include "token.h"

#define AUTH_RELOAD_S 60
#define AUTH_LOOKUPS_PER_S 50

struct auth_entry {
	char hash[TOKEN_HASH_HEX_LEN + 1];
	struct auth_token tok;
	long long expires_at; /* unix seconds; 0 = never */
	bool revoked;
};

struct auth {
	struct db *db;
	int stmt_all, stmt_one;
	struct auth_entry *entries;
	size_t n;
	bool loaded;
	bool loading;
	bool reload_again;
	struct event *timer;
	time_t bucket_second; /* look-ups of unknown tokens in this second */
	int bucket_used;
	unsigned long reloads_started;
	struct auth_wait *waiters; /* parked until a reload that started after them ends */
};

/* A request waiting for a database look-up of its token. */
struct auth_wait {
	struct auth *a;
	enum auth_scope need;
	auth_done_fn done;
	void *arg;
	char hash[TOKEN_HASH_HEX_LEN + 1];
	unsigned long after; /* reloads_started when it parked */
	struct auth_wait *next_wait;
};

const char *
auth_scope_name(enum auth_scope s)
{
	switch (s) {
	case AUTH_READ:
		return "read";
	case AUTH_WRITE:
		return "write";
	case AUTH_ADMIN:
		return "admin";
	case AUTH_NONE:
		break;
	}
	return "none";
}

static enum auth_scope
scope_parse(const char *s)
{
	if (strcmp(s, "admin") == 0)
		return AUTH_ADMIN;
	if (strcmp(s, "write") == 0)
		return AUTH_WRITE;
	if (strcmp(s, "read") == 0)
		return AUTH_READ;
	return AUTH_NONE;
}

/* Columns: name, hash, scope, source_glob, expires (epoch, 0), revoked (t/f). */
static void
entry_from_row(struct auth_entry *e, PGresult *res, int row)
{
	memset(e, 0, sizeof(*e));
	snprintf(e->tok.name, sizeof(e->tok.name), "%s", PQgetvalue(res, row, 0));
	snprintf(e->hash, sizeof(e->hash), "%s", PQgetvalue(res, row, 1));
	e->tok.scope = scope_parse(PQgetvalue(res, row, 2));
	snprintf(e->tok.source_glob, sizeof(e->tok.source_glob), "%s", PQgetvalue(res, row, 3));
	e->expires_at = strtoll(PQgetvalue(res, row, 4), NULL, 10);
	e->revoked = PQgetvalue(res, row, 5)[0] == 't';
}

static void start_reload(struct auth *a);
static const struct auth_entry *find(const struct auth *a, const char *hash);
static void decide(const struct auth_entry *e, enum auth_scope need, auth_done_fn done, void *arg);
static void refuse(enum auth_verdict v, enum auth_scope need, auth_done_fn done, void *arg);

/*
 * Answers the parked requests that the reload numbered done covers (it started
 * after they parked): from the fresh cache, or 503 when the reload failed.
 */
static void
answer_waiters(struct auth *a, unsigned long done, bool ok)
{
	struct auth_wait *list = a->waiters, *keep = NULL;

	a->waiters = NULL;
	while (list != NULL) {
		struct auth_wait *w = list;

		list = w->next_wait;
		if (w->after >= done) {
			w->next_wait = keep;
			keep = w;
			continue;
		}
		if (ok)
			decide(find(a, w->hash), w->need, w->done, w->arg);
		else
			refuse(AUTH_UNAVAILABLE, w->need, w->done, w->arg);
		free(w);
	}
	/* Handlers run above may have parked more; keep both. */
	while (keep != NULL) {
		struct auth_wait *w = keep;

		keep = w->next_wait;
		w->next_wait = a->waiters;
		a->waiters = w;
	}
}

static void
reload_done(void *arg, const struct db_result *r)
{
	struct auth *a = arg;
	unsigned long done = a->reloads_started;
	struct auth_entry *entries = NULL;
	int rows = 0;
	bool ok = r->status == DB_OK;

	a->loading = false;
	if (!ok) {
		log_warn("event=tokens_reload_failed reason=\"%s\"", r->message);
	} else {
		rows = PQntuples(r->res);
		entries = calloc((size_t)(rows > 0 ? rows : 1), sizeof(*entries));
		ok = entries != NULL;
	}
	if (ok) {
		for (int i = 0; i < rows; i++)
			entry_from_row(&entries[i], r->res, i);
		free(a->entries);
		a->entries = entries;
		a->n = (size_t)rows;
		if (!a->loaded)
			log_info("event=tokens_loaded count=%d", rows);
		a->loaded = true;
	}
	answer_waiters(a, done, ok);
	if (a->reload_again || a->waiters != NULL) {
		a->reload_again = false;
		start_reload(a);
	}
}

static void
start_reload(struct auth *a)
{
	if (a->loading) {
		a->reload_again = true;
		return;
	}
	if (db_query(a->db, a->stmt_all, NULL, reload_done, a) == 0) {
		a->loading = true;
		a->reloads_started++;
	}
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	start_reload(arg);
}

struct auth *
auth_new(struct event_base *base, struct db *db, int stmt_all, int stmt_one)
{
	struct auth *a = calloc(1, sizeof(*a));
	struct timeval tv = {AUTH_RELOAD_S, 0};

	if (a == NULL)
		return NULL;
	a->db = db;
	a->stmt_all = stmt_all;
	a->stmt_one = stmt_one;
	a->timer = event_new(base, -1, EV_PERSIST, timer_cb, a);
	if (a->timer == NULL) {
		free(a);
		return NULL;
	}
	event_add(a->timer, &tv);
	start_reload(a);
	return a;
}

void
auth_free(struct auth *a)
{
	if (a == NULL)
		return;
	if (a->timer != NULL)
		event_free(a->timer);
	/* Parked requests were answered when the pool failed their reload (db_free runs
	 * first); any left have no server to answer through any more. */
	while (a->waiters != NULL) {
		struct auth_wait *w = a->waiters;

		a->waiters = w->next_wait;
		free(w);
	}
	free(a->entries);
	free(a);
}

void
auth_reload(struct auth *a)
{
	start_reload(a);
}

bool
auth_loaded(const struct auth *a)
{
	return a->loaded;
}

bool
auth_source_allowed(const struct auth_token *tok, const char *source)
{
	if (tok->scope == AUTH_ADMIN || tok->source_glob[0] == '\0')
		return true;
	return token_glob_match(tok->source_glob, source);
}

/* Scans every entry, comparing in constant time; returns the match or NULL. */
static const struct auth_entry *
find(const struct auth *a, const char *hash)
{
	const struct auth_entry *hit = NULL;

	for (size_t i = 0; i < a->n; i++)
		if (token_ct_equal(a->entries[i].hash, hash, TOKEN_HASH_HEX_LEN))
			hit = &a->entries[i];
	return hit;
}

const char *
auth_verdict_name(enum auth_verdict v)
{
	switch (v) {
	case AUTH_OK:
		return "ok";
	case AUTH_MISSING:
		return "missing";
	case AUTH_BAD_SCHEME:
		return "bad_scheme";
	case AUTH_INVALID:
		return "invalid";
	case AUTH_REVOKED:
		return "revoked";
	case AUTH_EXPIRED:
		return "expired";
	case AUTH_FORBIDDEN:
		return "forbidden";
	case AUTH_UNAVAILABLE:
		return "unavailable";
	case AUTH_NO_MEMORY:
		return "no_memory";
	}
	return "invalid";
}

enum auth_verdict
auth_decide(const struct auth_token *tok, bool revoked, long long expires_at, enum auth_scope need,
	    long long now)
{
	if (revoked)
		return AUTH_REVOKED;
	if (expires_at != 0 && now >= expires_at)
		return AUTH_EXPIRED;
	/* AUTH_NONE (an unknown scope in the table) never passes a check. */
	if (tok->scope == AUTH_NONE || tok->scope < need)
		return AUTH_FORBIDDEN;
	return AUTH_OK;
}

static void
refuse(enum auth_verdict v, enum auth_scope need, auth_done_fn done, void *arg)
{
	struct auth_result res;

	memset(&res, 0, sizeof(res));
	res.verdict = v;
	res.need = need;
	done(arg, &res);
}

/* e NULL: no such token. */
static void
decide(const struct auth_entry *e, enum auth_scope need, auth_done_fn done, void *arg)
{
	struct auth_result res;

	if (e == NULL) {
		refuse(AUTH_INVALID, need, done, arg);
		return;
	}
	res.need = need;
	res.tok = e->tok;
	res.verdict = auth_decide(&e->tok, e->revoked, e->expires_at, need, (long long)time(NULL));
	done(arg, &res);
}

static void
lookup_done(void *arg, const struct db_result *res)
{
	struct auth_wait *w = arg;
	struct auth *a = w->a;
	struct auth_entry e;

	if (res->status != DB_OK) {
		refuse(AUTH_UNAVAILABLE, w->need, w->done, w->arg);
		free(w);
		return;
	}
	if (PQntuples(res->res) == 0) {
		decide(NULL, w->need, w->done, w->arg);
		free(w);
		return;
	}
	entry_from_row(&e, res->res, 0);
	/* Cache it so the next request is answered from memory. */
	if (find(a, e.hash) == NULL) {
		struct auth_entry *grown = realloc(a->entries, (a->n + 1) * sizeof(*grown));

		if (grown != NULL) {
			a->entries = grown;
			a->entries[a->n++] = e;
		}
	}
	decide(&e, w->need, w->done, w->arg);
	free(w);
}

/* At most AUTH_LOOKUPS_PER_S database look-ups of unknown tokens in any one second. */
static bool
lookup_budget(struct auth *a)
{
	time_t now = time(NULL);

	if (now != a->bucket_second) {
		a->bucket_second = now;
		a->bucket_used = 0;
	}
	return a->bucket_used++ < AUTH_LOOKUPS_PER_S;
}

void
auth_check(struct auth *a, const char *authorization, enum auth_scope need, auth_done_fn done,
	   void *arg)
{
	const char *tok;
	char hash[TOKEN_HASH_HEX_LEN + 1];
	const struct auth_entry *e;
	struct auth_wait *w;

	if (authorization == NULL) {
		refuse(AUTH_MISSING, need, done, arg);
		return;
	}
	if (strncasecmp(authorization, "Bearer ", 7) != 0) {
		refuse(AUTH_BAD_SCHEME, need, done, arg);
		return;
	}
	tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	if (*tok == '\0' || strlen(tok) > 512) {
		refuse(AUTH_INVALID, need, done, arg);
		return;
	}
	token_hash_hex(tok, strlen(tok), hash);
	e = find(a, hash);
	if (e != NULL) {
		decide(e, need, done, arg);
		return;
	}
	/*
	 * Not cached: a token made a moment ago (before its NOTIFY reached us), or a
	 * wrong one. Ask the database, one look-up per token up to a budget a second;
	 * past it, requests park on one shared reload of the token table, so a flood
	 * of bogus tokens costs about one query per round trip, not one per request.
	 */
	w = calloc(1, sizeof(*w));
	if (w == NULL) {
		refuse(AUTH_NO_MEMORY, need, done, arg);
		return;
	}
	w->a = a;
	w->need = need;
	w->done = done;
	w->arg = arg;
	memcpy(w->hash, hash, sizeof(hash));
	if (!lookup_budget(a)) {
		/*
		 * Over budget: wait for one reload of the whole (small) table that starts
		 * after this request arrived, shared by every request parked meanwhile. A
		 * token made a moment ago is then found; a bogus one is refused.
		 */
		w->after = a->reloads_started;
		w->next_wait = a->waiters;
		a->waiters = w;
		start_reload(a);
		return;
	}
	{
		const char *params[1] = {w->hash};

		if (db_query(a->db, a->stmt_one, params, lookup_done, w) != 0) {
			free(w);
			refuse(AUTH_NO_MEMORY, need, done, arg);
		}
	}
}
