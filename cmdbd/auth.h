/*
 * auth.h — bearer tokens: an in-memory cache of the tokens table, and the check
 * every /v1 request passes through.
 *
 * Tokens are stored only as SHA-256 hashes. The presented token is hashed and
 * compared against every cached hash in constant time. The cache is filled at
 * start, reloaded on NOTIFY cmdb_tokens and every minute; a token missing from the
 * cache is looked up in the database once before the request is refused, so a
 * token created a moment ago works at once. Past 50 such look-ups a second,
 * requests with unknown tokens wait instead for one reload of the table that
 * started after they arrived, shared by all of them, so concurrent bogus tokens
 * share queries. Checks never block the loop.
 * Failures are closed: any doubt (no header, unknown, revoked, expired, database
 * down during a look-up) refuses the request.
 */
#ifndef CMDB_AUTH_H
#define CMDB_AUTH_H

#include "attrs.h"

#include <stdbool.h>
#include <time.h>

struct db;
struct event_base;

enum auth_scope { AUTH_NONE, AUTH_READ, AUTH_WRITE, AUTH_ADMIN };

/* Who is calling, copied into each request after a successful check. */
struct auth_token {
	char name[72];
	enum auth_scope scope;
	char source_glob[256]; /* "" when the token may write any source */
};

struct auth;

/*
 * What a check concluded. The HTTP layer turns a verdict into the reply (401 with
 * WWW-Authenticate, 403, 503) in one place; auth itself never answers a request.
 */
enum auth_verdict {
	AUTH_OK,	  /* tok is filled and its scope covers need */
	AUTH_MISSING,	  /* no Authorization header */
	AUTH_BAD_SCHEME,  /* not "Bearer <token>" */
	AUTH_INVALID,	  /* unknown, empty or absurdly long token */
	AUTH_REVOKED,	  /* tok.name is filled */
	AUTH_EXPIRED,	  /* tok.name is filled */
	AUTH_FORBIDDEN,	  /* tok is filled; its scope is below need */
	AUTH_UNAVAILABLE, /* the database could not be asked */
	AUTH_NO_MEMORY,
};

struct auth_result {
	enum auth_verdict verdict;
	enum auth_scope need;
	struct auth_token tok; /* zeroed unless the verdict names a token */
};

/*
 * Called exactly once per auth_check(), now or later from the loop. res is valid
 * only during the call.
 */
typedef void (*auth_done_fn)(void *arg, const struct auth_result *res);

/* stmt_all loads every token; stmt_one looks one up by hash ($1). */
CMDB_MUST_USE struct auth *auth_new(struct event_base *base, struct db *db, int stmt_all,
				    int stmt_one);
void auth_free(struct auth *a); /* NULL-safe */

/* Schedules a reload of the whole cache (after NOTIFY cmdb_tokens). */
void auth_reload(struct auth *a);

/* True once the cache has been loaded at least once. */
bool auth_loaded(const struct auth *a);

/*
 * Checks the Authorization header value (NULL when absent) against need and
 * calls done(arg, result): now when the token is cached or malformed, later after
 * a database look-up otherwise. Fails closed: any doubt is a refusal.
 */
void auth_check(struct auth *a, const char *authorization, enum auth_scope need, auth_done_fn done,
		void *arg);

/*
 * The verdict for a known token record: revoked, expired at now (unix seconds;
 * expires_at 0 = never), scope below need, or OK. Pure; exposed for tests.
 */
enum auth_verdict auth_decide(const struct auth_token *tok, bool revoked, long long expires_at,
			      enum auth_scope need, long long now);

/* Short text of a verdict, for logs and messages ("revoked"). */
const char *auth_verdict_name(enum auth_verdict v);

/* Whether tok may write as source (its glob, if any, matches). */
bool auth_source_allowed(const struct auth_token *tok, const char *source);

const char *auth_scope_name(enum auth_scope s);

#endif
