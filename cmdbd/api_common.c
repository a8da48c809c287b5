/*
 * api_common.c — plumbing shared by the handlers: one database call turned into
 * one reply, SQLSTATE → HTTP in one place, read-your-writes, and the parsing of
 * path and query parameters.
 */
#include "api.h"

#include <sys/queue.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"
#include "log.h"
#include "model.h"
#include "app.h"
#include "router.h"
#include "sql.h"
#include "tailer.h"

/* Read-your-writes: how long a write may wait for the graph to catch up. */
#define API_RYW_TIMEOUT_MS 5000

/* SPEC §7: how long a read with X-Cmdb-Min-Seq / min_seq waits for that seq. */
#define API_MIN_SEQ_TIMEOUT_MS 5000

struct pending_reply {
	struct http_req *r;
	int status;
	json_t *body;
	api_decorate_fn after; /* NULL, or run once the graph has the write */
};

/* The two hooks of api_call_db_hooks() ride in r->state. */
static void db_reply_with(struct http_req *r, const struct db_result *res, api_decorate_fn decorate,
			  api_decorate_fn after);

/* Replies status/body, through the after hook when there is one. */
static void
reply_after(struct http_req *r, int status, json_t *body, api_decorate_fn after)
{
	if (after != NULL && body != NULL)
		body = after(r, body, &status);
	http_reply_json(r, status, body);
}

/*
 * What a client is told about a database error it could not have caused: short
 * and factual, never PostgreSQL's text (which can quote SQL, table and constraint
 * names). That text goes to the log with the request id instead.
 */
static const char *
data_error_message(const char *st)
{
	if (strcmp(st, "22001") == 0)
		return "a value is too long";
	if (strcmp(st, "22003") == 0)
		return "a number is out of range";
	if (strcmp(st, "22007") == 0 || strcmp(st, "22008") == 0)
		return "a date or time is invalid";
	if (strcmp(st, "23502") == 0)
		return "a required value is missing";
	if (strcmp(st, "23503") == 0)
		return "the change refers to something that does not exist (any more)";
	if (strcmp(st, "23505") == 0)
		return "the change conflicts with one made at the same time; try again";
	if (strncmp(st, "23", 2) == 0)
		return "the change breaks a rule of the map";
	return "a value is invalid";
}

void
api_reply_db_error(struct http_req *r, const struct db_result *res)
{
	const char *st = res->sqlstate ? res->sqlstate : "";
	char qmsg[600];
	const char *msg = log_q(res->message, qmsg, sizeof(qmsg));

	if (res->status == DB_UNAVAILABLE) {
		log_warn("event=db_unavailable id=%s reason=%s", r->id, msg);
		http_set_header(r, "Retry-After", "1");
		http_reply_error(r, 503, "unavailable", NULL, "database unavailable; try again");
		return;
	}
	if (strcmp(st, "42883") == 0 || strcmp(st, "42P01") == 0 || strcmp(st, "42703") == 0) {
		log_error("event=db_error id=%s sqlstate=%s message=%s", r->id, st, msg);
		http_reply_error(r, 503, "schema_not_current", NULL,
				 "the database schema is not current; run cmdbd migrate");
		return;
	}
	/* Transient: serialization/deadlock, timeouts, connection trouble, resources
	 * (out of memory or disk included), shutdown, a read-only standby (failover), a
	 * lock not available. */
	if (strncmp(st, "40", 2) == 0 || strcmp(st, "57014") == 0 || strncmp(st, "08", 2) == 0 ||
	    strncmp(st, "53", 2) == 0 || strncmp(st, "57P", 3) == 0 || strcmp(st, "25006") == 0 ||
	    strcmp(st, "55P03") == 0) {
		log_warn("event=db_busy id=%s sqlstate=%s message=%s", r->id, st, msg);
		http_set_header(r, "Retry-After", "1");
		http_reply_error(r, 503, "unavailable", json_pack("{s:s}", "sqlstate", st),
				 "database busy; try again");
		return;
	}
	if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0) {
		log_info("event=db_refused id=%s sqlstate=%s message=%s", r->id, st, msg);
		http_reply_error(r, strcmp(st, "23505") == 0 ? 409 : 400,
				 strcmp(st, "23505") == 0 ? "conflict" : "bad_request",
				 json_pack("{s:s}", "sqlstate", st), "%s", data_error_message(st));
		return;
	}
	log_error("event=db_error id=%s sqlstate=%s message=%s", r->id, st, msg);
	http_reply_error(r, 500, "internal", NULL, "internal error (request %s)", r->id);
}

static void
ryw_done(void *arg, bool reached)
{
	struct pending_reply *p = arg;

	if (!reached && !p->r->app->stopping)
		log_warn("event=ryw_timeout id=%s", p->r->id);
	reply_after(p->r, p->status, p->body, p->after);
	free(p);
}

static void
db_reply(void *arg, const struct db_result *res)
{
	struct http_req *r = arg;
	api_decorate_fn decorate = (api_decorate_fn)r->state;

	r->state = NULL;
	db_reply_with(r, res, decorate, NULL);
}

static void
db_reply_hooks(void *arg, const struct db_result *res)
{
	struct http_req *r = arg;
	const struct api_db_hooks *hooks = r->state;

	r->state = NULL;
	db_reply_with(r, res, hooks->decorate, hooks->after);
}

static void reply_with_text(struct http_req *r, const char *text, api_decorate_fn decorate,
			    api_decorate_fn after);

static void
db_reply_with(struct http_req *r, const struct db_result *res, api_decorate_fn decorate,
	      api_decorate_fn after)
{
	if (res->status != DB_OK) {
		api_reply_db_error(r, res);
		return;
	}
	if (PQntuples(res->res) != 1 || PQgetisnull(res->res, 0, 0)) {
		http_reply_error(r, 500, "internal", NULL, "empty database reply");
		return;
	}
	reply_with_text(r, PQgetvalue(res->res, 0, 0), decorate, after);
}

void
api_reply_db(struct http_req *r, const struct db_result *res, api_decorate_fn decorate)
{
	db_reply_with(r, res, decorate, NULL);
}

void
api_reply_db_text(struct http_req *r, const char *text, api_decorate_fn decorate)
{
	reply_with_text(r, text, decorate, NULL);
}

static void
reply_with_text(struct http_req *r, const char *text, api_decorate_fn decorate,
		api_decorate_fn after)
{
	json_t *reply, *err, *body, *etag, *seqv, *sighting;
	json_error_t jerr;
	long long seq;
	int status;

	reply = json_loads(text, 0, &jerr);
	if (reply == NULL) {
		http_reply_error(r, 500, "internal", NULL, "unreadable database reply");
		return;
	}
	status = (int)json_integer_value(json_object_get(reply, "status"));
	if (status < 200 || status > 599)
		status = 500;
	err = json_object_get(reply, "error");
	if (err != NULL) {
		const char *code = json_string_value(json_object_get(err, "code"));
		const char *msg = json_string_value(json_object_get(err, "message"));
		const char *internal = json_string_value(json_object_get(err, "log"));
		json_t *details = json_object_get(err, "details");

		/* The error policy: what PostgreSQL said (a constraint's name, its own
		 * message) is for the log, beside the request id, never for the client. */
		if (internal != NULL) {
			char q[600];

			log_info("event=db_refused id=%s status=%d detail=%s", r->id, status,
				 log_q(internal, q, sizeof(q)));
		}

		http_reply_error(r, status, code ? code : "error",
				 details ? json_incref(details) : NULL, "%s", msg ? msg : "");
		json_decref(reply);
		return;
	}
	/* A manifest apply (no-op included) says when its source was seen: feed the
	 * derived last_seen_at of the in-memory nodes (graph.h) before replying. */
	sighting = json_object_get(reply, "sighting");
	if (json_is_object(sighting) &&
	    graph_source_seen(r->app->g, json_string_value(json_object_get(sighting, "source")),
			      json_string_value(json_object_get(sighting, "at"))) == GRAPH_ENOMEM)
		log_error("event=sighting_lost id=%s reason=\"out of memory\"", r->id);
	etag = json_object_get(reply, "etag");
	if (json_is_string(etag))
		http_set_header(r, "ETag", json_string_value(etag));
	body = json_incref(json_object_get(reply, "body"));
	seqv = json_object_get(reply, "seq");
	seq = json_is_integer(seqv) ? (long long)json_integer_value(seqv) : 0;
	json_decref(reply);
	if (seq > 0) {
		/* SPEC §7: what a read elsewhere passes back as X-Cmdb-Min-Seq. */
		char num[24];

		snprintf(num, sizeof(num), "%lld", seq);
		http_set_header(r, "X-Cmdb-Seq", num);
	}
	if (body != NULL && decorate != NULL)
		body = decorate(r, body, &status);
	if (status == 204) {
		json_decref(body);
		body = NULL;
	}
	/* Before the map is loaded there is nothing to wait for: the load will see it. */
	if (r->app->tailer != NULL && seq > tailer_applied(r->app->tailer)) {
		struct pending_reply *p = malloc(sizeof(*p));

		if (p != NULL) {
			p->r = r;
			p->status = status;
			p->body = body;
			p->after = after;
			tailer_poke(r->app->tailer);
			if (tailer_wait(r->app->tailer, seq, API_RYW_TIMEOUT_MS, ryw_done, p) == 0)
				return;
			free(p);
		}
	}
	reply_after(r, status, body, after);
}

void
api_call_db(struct http_req *r, int stmt, const char *const *params, api_decorate_fn decorate)
{
	/* Reads that only look go to the read database (SPEC §7; the primary when
	 * none is configured): it is at least as far as the map, which follows it. */
	struct db *db = sql_reads_only(stmt) ? r->app->read_db : r->app->db;

	/* The decorator rides in r->state (no state_free: it is a function pointer). */
	r->state = (void *)decorate;
	if (db_query(db, stmt, params, db_reply, r) != 0) {
		r->state = NULL;
		http_reply_nomem(r);
	}
}

void
api_call_db_hooks(struct http_req *r, int stmt, const char *const *params,
		  const struct api_db_hooks *hooks)
{
	struct db *db = sql_reads_only(stmt) ? r->app->read_db : r->app->db;

	r->state = (void *)hooks; /* static const: no state_free */
	if (db_query(db, stmt, params, db_reply_hooks, r) != 0) {
		r->state = NULL;
		http_reply_nomem(r);
	}
}

/* ------------------------------------------------------------ min_seq */

static void
min_seq_done(void *arg, bool reached)
{
	struct http_req *r = arg;
	long long want = *(long long *)r->state;
	long long have = r->app->tailer != NULL ? tailer_applied(r->app->tailer) : 0;

	/* The handler owns r->state from here. */
	free(r->state);
	r->state = NULL;
	r->state_free = NULL;
	if (reached) {
		router_handler(r->route)(r);
		return;
	}
	http_set_header(r, "Retry-After", "1");
	if (r->app->stopping) {
		http_reply_error(r, 503, "shutting_down", NULL, "server is shutting down");
		return;
	}
	log_info("event=min_seq_timeout id=%s min_seq=%lld applied=%lld", r->id, want, have);
	http_reply_error(
	    r, 503, "behind",
	    json_pack("{s:I,s:I}", "min_seq", (json_int_t)want, "applied", (json_int_t)have),
	    "this instance has applied changes up to %lld, not yet %lld; try again", have, want);
}

/* A seq in decimal, 0 or more; -1 when it is not one. */
static long long
parse_seq(const char *v)
{
	char *end;
	long long n;

	if (v == NULL || *v < '0' || *v > '9')
		return -1;
	errno = 0;
	n = strtoll(v, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : n;
}

void
api_dispatch(struct http_req *r)
{
	const char *h = http_header(r, "X-Cmdb-Min-Seq"), *q = http_query(r, "min_seq");
	long long hv = 0, qv = 0, *want;
	struct tailer *t = r->app->tailer;

	/* Reads only: a write's answer does not depend on what this map has applied. */
	if (router_scope(r->route) != AUTH_READ || (h == NULL && q == NULL)) {
		router_handler(r->route)(r);
		return;
	}
	if (h != NULL && (hv = parse_seq(h)) < 0) {
		http_reply_bad(r, "X-Cmdb-Min-Seq", "must be a change seq, an integer 0 or more");
		return;
	}
	if (q != NULL) {
		if ((qv = parse_seq(q)) < 0) {
			http_reply_bad(r, "min_seq", "must be a change seq, an integer 0 or more");
			return;
		}
		/* The handler's own parameter checks need not know it. */
		evhttp_remove_header(&r->query, "min_seq");
		if (http_query(r, "min_seq") != NULL) {
			http_reply_bad(r, "min_seq", "given more than once");
			return;
		}
	}
	if (t == NULL) {
		/* Before the first load the map cannot say what it holds. */
		http_set_header(r, "Retry-After", "1");
		http_reply_error(r, 503, "starting", NULL,
				 "the map is still being loaded from the database; try again "
				 "shortly");
		return;
	}
	/* The seq waited for rides in r->state until the handler runs. */
	want = malloc(sizeof(*want));
	if (want == NULL) {
		http_reply_nomem(r);
		return;
	}
	*want = hv > qv ? hv : qv;
	r->state = want;
	r->state_free = free;
	if (*want > tailer_applied(t))
		tailer_poke(t); /* it may not have heard of it yet */
	if (tailer_wait(t, *want, API_MIN_SEQ_TIMEOUT_MS, min_seq_done, r) != 0)
		http_reply_nomem(r);
}

bool
api_path_ref(struct http_req *r, char *kind, char *name, char *ref)
{
	const char *k = http_param(r, 0), *n = http_param(r, 1);

	if (!model_kind_valid(k)) {
		http_reply_bad(r, "kind", "must match " MODEL_KIND_PATTERN " (got \"%.40s\")", k);
		return false;
	}
	if (!model_name_valid(n, strlen(n))) {
		http_reply_bad(r, "name", "must be " MODEL_NAME_RULE);
		return false;
	}
	strcpy(kind, k);
	strcpy(name, n);
	if (ref != NULL)
		snprintf(ref, MODEL_REF_MAX + 1, "%s/%s", k, n);
	return true;
}

bool
api_query_long(struct http_req *r, const char *name, long min, long max, long def, long *out)
{
	const char *v = http_query(r, name);

	if (v == NULL) {
		*out = def;
		return true;
	}
	switch (model_parse_long(v, min, max, out)) {
	case MODEL_LONG_OK:
		return true;
	case MODEL_LONG_SYNTAX:
		http_reply_bad(r, name, "must be an integer (got \"%.40s\")", v);
		return false;
	case MODEL_LONG_RANGE:
		break;
	}
	http_reply_bad(r, name, "must be an integer from %ld to %ld", min, max);
	return false;
}

static bool
listed(const char *const *list, const char *name)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return true;
	return false;
}

bool
api_query_only(struct http_req *r, const char *const *allowed, const char *const *repeatable)
{
	struct evkeyval *kv, *other;

	TAILQ_FOREACH(kv, &r->query, next)
	{
		if (!listed(allowed, kv->key)) {
			http_reply_bad(r, kv->key, "unknown query parameter");
			return false;
		}
		if (listed(repeatable, kv->key))
			continue;
		for (other = TAILQ_NEXT(kv, next); other != NULL; other = TAILQ_NEXT(other, next))
			if (strcmp(other->key, kv->key) == 0) {
				http_reply_bad(r, kv->key, "given more than once");
				return false;
			}
	}
	return true;
}

bool
api_query_bool(struct http_req *r, const char *name, int def, int *out)
{
	const char *v = http_query(r, name);
	int b = model_parse_bool(v);

	if (v == NULL)
		*out = def;
	else if (b >= 0)
		*out = b;
	else {
		http_reply_bad(r, name, "must be true or false");
		return false;
	}
	return true;
}

void
api_actor_source(const struct http_req *r, char out[80])
{
	size_t o = (size_t)snprintf(out, 80, "api:");

	for (const char *p = r->tok.name; *p && o < 79; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
		      c == ':' || c == '-'))
			c = '_';
		out[o++] = c;
	}
	out[o] = '\0';
}

bool
api_hand_source(struct http_req *r, char out[80])
{
	api_actor_source(r, out);
	if (!auth_source_allowed(&r->tok, out)) {
		http_reply_error(
		    r, 403, "forbidden",
		    json_pack("{s:s,s:s}", "source", out, "allowed", r->tok.source_glob),
		    "token %s may only write sources matching %s; a hand edit is "
		    "recorded under %s",
		    r->tok.name, r->tok.source_glob, out);
		return false;
	}
	return true;
}

bool
api_etag_listed(const char *header, const char *etag)
{
	const char *p = header;
	size_t elen = strlen(etag);

	if (strcmp(header, "*") == 0)
		return true;
	while (*p) {
		while (*p == ' ' || *p == ',')
			p++;
		if (strncmp(p, "W/", 2) == 0)
			p += 2;
		if (strncmp(p, etag, elen) == 0 &&
		    (p[elen] == '\0' || p[elen] == ',' || p[elen] == ' '))
			return true;
		while (*p && *p != ',')
			p++;
	}
	return false;
}

bool
api_if_match(struct http_req *r, char out[32], const char **param)
{
	const char *h = http_header(r, "If-Match");
	size_t n;

	*param = NULL;
	if (h == NULL)
		return true;
	while (*h == ' ')
		h++;
	if (strcmp(h, "*") == 0) {
		strcpy(out, "*");
		*param = out;
		return true;
	}
	n = strlen(h);
	if (n >= 3 && n < 30 && h[0] == '"' && h[n - 1] == '"' &&
	    strspn(h + 1, "0123456789") == n - 2) {
		memcpy(out, h + 1, n - 2);
		out[n - 2] = '\0';
		*param = out;
		return true;
	}
	http_reply_error(r, 412, "precondition_failed", NULL,
			 "If-Match %.60s does not match the current version", h);
	return false;
}

bool
api_require_map(struct http_req *r)
{
	const char *detail, *code = app_map_unready(r->app, &detail);

	if (code == NULL)
		return true;
	http_set_header(r, "Retry-After", "1");
	http_reply_error(r, 503, code, NULL, "%s; try again shortly", detail);
	return false;
}

bool
api_body_fields(struct http_req *r, const struct jv_field *fields)
{
	struct jv_err err = {0};

	if (jv_check_object(r->json, "", fields, &err))
		return true;
	http_reply_bad(r, err.path, "%s", err.msg);
	return false;
}

void
api_reply_not_allowed(struct http_req *r, const char *field, const char *const *names, int n,
		      const char *how)
{
	json_t *allowed = json_array();

	for (int i = 0; allowed != NULL && i < n; i++)
		if (json_array_append_new(allowed, json_string(names[i]))) {
			json_decref(allowed);
			allowed = NULL;
		}
	http_reply_error(r, 400, "bad_request",
			 json_pack("{s:s,s:o*}", "field", field, "allowed", allowed), "%s: %s",
			 field, how);
}

bool
api_check_attributes(struct http_req *r, json_t *attrs, const char *field)
{
	size_t size;

	if (!json_is_object(attrs)) {
		http_reply_bad(r, field, "must be an object");
		return false;
	}
	size = jv_serialized_size(attrs);
	if (size > MODEL_ATTRIBUTES_MAX) {
		http_reply_bad(r, field, "is %zu bytes serialised; the limit is %d", size,
			       MODEL_ATTRIBUTES_MAX);
		return false;
	}
	return true;
}
