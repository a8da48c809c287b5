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

#include <stdbool.h>
#include <time.h>

struct db;
struct http_req;
struct event_base;

enum auth_scope { AUTH_NONE, AUTH_READ, AUTH_WRITE, AUTH_ADMIN };

/* Who is calling, copied into each request after a successful check. */
struct auth_token {
	char name[72];
	enum auth_scope scope;
	char source_glob[256]; /* "" when the token may write any source */
};

struct auth;

/* stmt_all loads every token; stmt_one looks one up by hash ($1). */
struct auth *auth_new(struct event_base *base, struct db *db, int stmt_all, int stmt_one);
void auth_free(struct auth *a); /* NULL-safe */

/* Schedules a reload of the whole cache (after NOTIFY cmdb_tokens). */
void auth_reload(struct auth *a);

/* True once the cache has been loaded at least once. */
bool auth_loaded(const struct auth *a);

/*
 * Checks r's bearer token against need. On success fills r->tok and calls
 * next(r) (now, or later after a database look-up). On failure replies 401
 * (with WWW-Authenticate: Bearer) or 403 itself and does not call next.
 */
void auth_check(struct auth *a, struct http_req *r, enum auth_scope need,
		void (*next)(struct http_req *r));

/* Whether tok may write as source (its glob, if any, matches). */
bool auth_source_allowed(const struct auth_token *tok, const char *source);

const char *auth_scope_name(enum auth_scope s);

#endif
