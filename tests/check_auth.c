/*
 * check_auth.c — the token check on its own, without HTTP: the pure verdict
 * (auth_decide), header parsing, and the cache with its database look-ups against
 * a real PostgreSQL (a scratch database holding a table in the shape the server's
 * statements return: name, hash, scope, source_glob, expires, revoked).
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <event2/event.h>

#include "auth.h"
#include "db.h"
#include "log.h"
#include "pgtest.h"
#include "token.h"

/* ------------------------------------------------------------ auth_decide */

START_TEST(test_decide)
{
	struct auth_token rd = {"r", AUTH_READ, ""}, wr = {"w", AUTH_WRITE, ""},
			  ad = {"a", AUTH_ADMIN, ""}, none = {"n", AUTH_NONE, ""};
	long long now = 1000000;

	ck_assert_int_eq(auth_decide(&rd, false, 0, AUTH_READ, now), AUTH_OK);
	ck_assert_int_eq(auth_decide(&rd, false, 0, AUTH_WRITE, now), AUTH_FORBIDDEN);
	ck_assert_int_eq(auth_decide(&wr, false, 0, AUTH_READ, now), AUTH_OK);
	ck_assert_int_eq(auth_decide(&wr, false, 0, AUTH_ADMIN, now), AUTH_FORBIDDEN);
	ck_assert_int_eq(auth_decide(&ad, false, 0, AUTH_ADMIN, now), AUTH_OK);
	/* A scope the table spells in a way we do not know never passes. */
	ck_assert_int_eq(auth_decide(&none, false, 0, AUTH_READ, now), AUTH_FORBIDDEN);
	/* Revoked and expired win over scope; expiry is at the second, inclusive. */
	ck_assert_int_eq(auth_decide(&ad, true, 0, AUTH_READ, now), AUTH_REVOKED);
	ck_assert_int_eq(auth_decide(&ad, false, now, AUTH_READ, now), AUTH_EXPIRED);
	ck_assert_int_eq(auth_decide(&ad, false, now + 1, AUTH_READ, now), AUTH_OK);
	ck_assert_int_eq(auth_decide(&rd, true, now, AUTH_ADMIN, now), AUTH_REVOKED);
	ck_assert_str_eq(auth_verdict_name(AUTH_FORBIDDEN), "forbidden");
}
END_TEST

START_TEST(test_source_allowed)
{
	struct auth_token any = {"w", AUTH_WRITE, ""}, glob = {"g", AUTH_WRITE, "capistrano:*"},
			  ad = {"a", AUTH_ADMIN, "capistrano:*"};

	ck_assert(auth_source_allowed(&any, "fabric:x"));
	ck_assert(auth_source_allowed(&glob, "capistrano:billing"));
	ck_assert(!auth_source_allowed(&glob, "fabric:billing"));
	ck_assert(auth_source_allowed(&ad, "fabric:billing")); /* admin: any source */
}
END_TEST

/* ------------------------------------------------- the cache and the database */

enum { S_ALL, S_ONE, S_COUNT };

static const struct db_stmt stmts[S_COUNT] = {
    [S_ALL] = {"t_all", "SELECT name, hash, scope, glob, expires, revoked FROM t_tokens", 0, false},
    [S_ONE] = {"t_one",
	       "SELECT name, hash, scope, glob, expires, revoked FROM t_tokens WHERE hash = $1", 1,
	       false},
};

static const char *admin_url;
static char dbname[64];
static char *conninfo;
static PGconn *side;
static struct event_base *base;

struct verdicts {
	int calls;
	struct auth_result last;
};

static void
record(void *arg, const struct auth_result *res)
{
	struct verdicts *v = arg;

	v->calls++;
	v->last = *res;
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

/* Runs the loop until *flag is set or ms pass; returns whether it was set. */
static bool
run_until(const int *flag, int ms)
{
	struct timeval tick = {0, 5000};
	struct event *t = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	struct timespec t0, t1;

	ck_assert_ptr_nonnull(t);
	event_add(t, &tick);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (*flag)
			break;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		if ((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 > ms)
			break;
		event_base_dispatch(base);
	}
	event_free(t);
	return *flag != 0;
}

static void
add_token(const char *tok, const char *name, const char *scope, long long expires, bool revoked)
{
	char hash[TOKEN_HASH_HEX_LEN + 1], sql[512];

	token_hash_hex(tok, strlen(tok), hash);
	snprintf(sql, sizeof(sql), "INSERT INTO t_tokens VALUES ('%s', '%s', '%s', '', %lld, %s)",
		 name, hash, scope, expires, revoked ? "true" : "false");
	pgtest_exec(side, sql);
}

/* Checks header against need and waits for the one verdict. */
static struct auth_result
check(struct auth *a, const char *header, enum auth_scope need)
{
	struct verdicts v = {0};

	auth_check(a, header, need, record, &v);
	ck_assert_msg(run_until(&v.calls, 10000), "no verdict within 10 s");
	/* Exactly once: nothing more arrives. */
	{
		int never = 0;

		run_until(&never, 30);
	}
	ck_assert_int_eq(v.calls, 1);
	return v.last;
}

static int
is_loaded(struct auth *a)
{
	return auth_loaded(a);
}

static void
cache_setup(void)
{
	log_set_level(getenv("CMDB_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	side = pgtest_create_db(admin_url, "cmdb_check_auth", false, dbname);
	pgtest_exec(side, "CREATE TABLE t_tokens (name text, hash text, scope text, glob text, "
			  "expires bigint, revoked boolean)");
	conninfo = pgtest_conninfo(admin_url, dbname);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
}

static void
cache_teardown(void)
{
	event_base_free(base);
	base = NULL;
	free(conninfo);
	conninfo = NULL;
	PQfinish(side);
	pgtest_drop_db(admin_url, dbname);
	side = NULL;
	log_set_level(LOG_INFO);
}

/* A pool and an auth cache over t_tokens, the cache loaded once. */
static struct auth *
new_auth(struct db **db)
{
	struct auth *a;
	int loaded = 0;

	*db = db_new(base, conninfo, 1, stmts, S_COUNT, NULL);
	ck_assert_ptr_nonnull(*db);
	a = auth_new(base, *db, S_ALL, S_ONE);
	ck_assert_ptr_nonnull(a);
	for (int i = 0; i < 400 && !(loaded = is_loaded(a)); i++) {
		int never = 0;

		run_until(&never, 25);
	}
	ck_assert_msg(loaded, "token cache not loaded within 10 s");
	return a;
}

START_TEST(test_header_forms)
{
	struct db *db;
	struct auth *a;

	add_token("s3cret-read", "reader", "read", 0, false);
	a = new_auth(&db);
	ck_assert_int_eq(check(a, NULL, AUTH_READ).verdict, AUTH_MISSING);
	ck_assert_int_eq(check(a, "Basic czNjcmV0", AUTH_READ).verdict, AUTH_BAD_SCHEME);
	ck_assert_int_eq(check(a, "Bearer ", AUTH_READ).verdict, AUTH_INVALID);
	ck_assert_int_eq(check(a, "Bearer    ", AUTH_READ).verdict, AUTH_INVALID);
	ck_assert_int_eq(check(a, "bearer s3cret-read", AUTH_READ).verdict, AUTH_OK);
	ck_assert_int_eq(check(a, "Bearer   s3cret-read", AUTH_READ).verdict, AUTH_OK);
	{
		char big[600];

		memset(big, 'x', sizeof(big));
		memcpy(big, "Bearer ", 7);
		big[sizeof(big) - 1] = '\0';
		ck_assert_int_eq(check(a, big, AUTH_READ).verdict, AUTH_INVALID);
	}
	auth_free(a);
	db_free(db);
}
END_TEST

START_TEST(test_verdicts_from_cache)
{
	struct db *db;
	struct auth *a;
	struct auth_result r;

	add_token("tok-admin", "ops", "admin", 0, false);
	add_token("tok-read", "dash", "read", 0, false);
	add_token("tok-revoked", "old", "admin", 0, true);
	add_token("tok-expired", "temp", "write", (long long)time(NULL) - 10, false);
	add_token("tok-later", "soon", "write", (long long)time(NULL) + 3600, false);
	a = new_auth(&db);

	r = check(a, "Bearer tok-admin", AUTH_ADMIN);
	ck_assert_int_eq(r.verdict, AUTH_OK);
	ck_assert_str_eq(r.tok.name, "ops");
	ck_assert_int_eq(r.tok.scope, AUTH_ADMIN);
	r = check(a, "Bearer tok-read", AUTH_WRITE);
	ck_assert_int_eq(r.verdict, AUTH_FORBIDDEN);
	ck_assert_str_eq(r.tok.name, "dash");
	ck_assert_int_eq(r.need, AUTH_WRITE);
	r = check(a, "Bearer tok-revoked", AUTH_READ);
	ck_assert_int_eq(r.verdict, AUTH_REVOKED);
	ck_assert_str_eq(r.tok.name, "old");
	ck_assert_int_eq(check(a, "Bearer tok-expired", AUTH_READ).verdict, AUTH_EXPIRED);
	ck_assert_int_eq(check(a, "Bearer tok-later", AUTH_WRITE).verdict, AUTH_OK);
	/* Unknown: asked of the database, then refused; nothing about it is returned. */
	r = check(a, "Bearer nope", AUTH_READ);
	ck_assert_int_eq(r.verdict, AUTH_INVALID);
	ck_assert_str_eq(r.tok.name, "");
	auth_free(a);
	db_free(db);
}
END_TEST

/* A token made after the cache was loaded is found by the one-token look-up. */
START_TEST(test_new_token_looked_up)
{
	struct db *db;
	struct auth *a = new_auth(&db);
	struct auth_result r;

	ck_assert_int_eq(check(a, "Bearer fresh", AUTH_READ).verdict, AUTH_INVALID);
	add_token("fresh", "newbie", "write", 0, false);
	r = check(a, "Bearer fresh", AUTH_WRITE);
	ck_assert_int_eq(r.verdict, AUTH_OK);
	ck_assert_str_eq(r.tok.name, "newbie");
	/* Now cached: answered at once, without the loop. */
	{
		struct verdicts v = {0};

		auth_check(a, "Bearer fresh", AUTH_READ, record, &v);
		ck_assert_int_eq(v.calls, 1);
		ck_assert_int_eq(v.last.verdict, AUTH_OK);
	}
	auth_free(a);
	db_free(db);
}
END_TEST

/* No database to ask: an unknown token is refused as unavailable, never let in. */
START_TEST(test_database_down_fails_closed)
{
	struct db *db;
	struct auth *a;

	add_token("known", "k", "read", 0, false);
	a = new_auth(&db);
	db_close(db);
	ck_assert_int_eq(check(a, "Bearer unknown", AUTH_READ).verdict, AUTH_UNAVAILABLE);
	/* What the cache holds still answers. */
	ck_assert_int_eq(check(a, "Bearer known", AUTH_READ).verdict, AUTH_OK);
	auth_free(a);
	db_free(db);
}
END_TEST

/* Past the look-up budget, unknown tokens share one reload and are all refused. */
START_TEST(test_flood_of_bogus_tokens)
{
	enum { N = 120 };
	struct db *db;
	struct auth *a;
	static struct verdicts v[N];
	int all = 0;

	add_token("good", "g", "read", 0, false);
	a = new_auth(&db);
	memset(v, 0, sizeof(v));
	for (int i = 0; i < N; i++) {
		char h[64];

		snprintf(h, sizeof(h), "Bearer bogus-%d", i);
		auth_check(a, h, AUTH_READ, record, &v[i]);
	}
	for (int spins = 0; spins < 400 && !all; spins++) {
		int never = 0;

		run_until(&never, 25);
		all = 1;
		for (int i = 0; i < N; i++)
			all &= v[i].calls == 1;
	}
	ck_assert_msg(all, "not every bogus token got its verdict");
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(v[i].last.verdict, AUTH_INVALID);
	ck_assert_int_eq(check(a, "Bearer good", AUTH_READ).verdict, AUTH_OK);
	auth_free(a);
	db_free(db);
}
END_TEST

Suite *suite_auth(void);

Suite *
suite_auth(void)
{
	Suite *s = suite_create("auth");
	TCase *unit = tcase_create("unit"), *cache = tcase_create("cache");

	tcase_add_test(unit, test_decide);
	tcase_add_test(unit, test_source_allowed);
	suite_add_tcase(s, unit);
	admin_url = getenv("CMDB_TEST_ADMIN_URL");
	if (admin_url != NULL && *admin_url != '\0') {
		tcase_add_checked_fixture(cache, cache_setup, cache_teardown);
		tcase_set_timeout(cache, 60);
		tcase_add_test(cache, test_header_forms);
		tcase_add_test(cache, test_verdicts_from_cache);
		tcase_add_test(cache, test_new_token_looked_up);
		tcase_add_test(cache, test_database_down_fails_closed);
		tcase_add_test(cache, test_flood_of_bogus_tokens);
		suite_add_tcase(s, cache);
	}
	return s;
}
