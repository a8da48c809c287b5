/*
 * check_db.c — the asynchronous libpq pool (cmdbd/db.c) on a real libevent loop
 * against a real PostgreSQL.
 *
 * Needs CMDB_TEST_ADMIN_URL (superuser conninfo of a throwaway cluster; `make test`
 * sets it). Without it the suite holds one test that says it was skipped. Each test
 * gets its own scratch database (created by the checked fixture, dropped after) with
 * a few helper functions, and its own event_base; the pool runs a statement table of
 * its own (below), not the server's.
 *
 * What is checked: every callback runs exactly once, never from inside db_query(),
 * with the right status, SQLSTATE and message; parameters (NULL too) are copied;
 * queueing beyond the pool size; lazy, per-connection preparation; statement errors;
 * the 40P01/40001 retry of retryable statements (and only those); fail-fast
 * DB_UNAVAILABLE without a server; LISTEN/NOTIFY through struct db_listen, also after
 * the listener is killed; pg_terminate_backend() of pool connections (in flight and
 * idle) and the pool reconnecting by itself; db_free() answering what is pending.
 */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "db.h"
#include "log.h"
#include "pgtest.h"

/* ------------------------------------------------------------------ statements */

enum {
	S_ADD,
	S_RAISE,
	S_SLEEP,
	S_FLAKY,
	S_FLAKY_NORETRY,
	S_FLAKY_SERIAL,
	S_ALWAYS_DEADLOCK,
	S_LATE,
	S_NOTIFY,
	S_PREPARED,
	S_COALESCE,
	S_SYNTAX,
	S_COUNT
};

static const struct db_stmt stmts[S_COUNT] = {
    [S_ADD] = {"t_add", "SELECT $1::int + 1", 1, false},
    [S_RAISE] = {"t_raise", "SELECT t_raise($1)", 1, false},
    /* "tag:pid" after sleeping: which connection ran it. */
    [S_SLEEP] = {"t_sleep", "SELECT $2::text || ':' || pg_backend_pid() FROM pg_sleep($1::float8)",
		 2, false},
    /* Raise $2 (40P01 or 40001) the first time sequence $1 is used, then succeed. */
    [S_FLAKY] = {"t_flaky", "SELECT t_flaky($1, $2)", 2, true},
    [S_FLAKY_NORETRY] = {"t_flaky_nr", "SELECT t_flaky($1, $2)", 2, false},
    [S_FLAKY_SERIAL] = {"t_flaky_ser", "SELECT t_flaky($1, $2)", 2, true},
    /* Counts its calls in sequence $1 and always deadlocks. */
    [S_ALWAYS_DEADLOCK] = {"t_deadlock", "SELECT t_always($1)", 1, true},
    /* Its table does not exist until the test makes it. */
    [S_LATE] = {"t_late", "SELECT count(*)::text FROM t_late", 0, false},
    [S_NOTIFY] = {"t_notify", "SELECT pg_notify($1, $2)", 2, false},
    /* The statements this connection has prepared so far. */
    [S_PREPARED] = {"t_prepared",
		    "SELECT string_agg(name, ',' ORDER BY name) FROM pg_prepared_statements", 0,
		    false},
    [S_COALESCE] = {"t_coalesce", "SELECT coalesce($1, 'was null')", 1, false},
    [S_SYNTAX] = {"t_syntax", "SELEC 1", 0, false},
};

static const char setup_sql[] =
    "SET client_min_messages = warning;"
    "CREATE FUNCTION t_raise(code text) RETURNS int LANGUAGE plpgsql AS $$"
    " BEGIN RAISE EXCEPTION 'raised %', code USING ERRCODE = code; END $$;"
    "CREATE FUNCTION t_flaky(seq text, code text) RETURNS bigint LANGUAGE plpgsql AS $$"
    " DECLARE n bigint := nextval(seq::regclass);"
    " BEGIN IF n = 1 THEN RAISE EXCEPTION 'simulated %', code USING ERRCODE = code; END IF;"
    " RETURN n; END $$;"
    "CREATE FUNCTION t_always(seq text) RETURNS bigint LANGUAGE plpgsql AS $$"
    " BEGIN PERFORM nextval(seq::regclass);"
    " RAISE EXCEPTION 'deadlock detected (simulated)' USING ERRCODE = '40P01'; END $$;"
    "CREATE SEQUENCE seq_a; CREATE SEQUENCE seq_b; CREATE SEQUENCE seq_c;"
    "CREATE SEQUENCE seq_d;";

/* ------------------------------------------------------------ fixture state */

static const char *admin_url;
static char dbname[64];
static char *conninfo; /* the scratch database, for db_new (malloc'd) */
static PGconn *side;   /* a blocking connection to the scratch database */
static struct event_base *base;

/* One cell as a number (the query must return one row). */
static long
exec_long(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	long v;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
		      PQresultErrorMessage(res));
	v = atol(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

static void
db_setup(void)
{
	log_set_level(getenv("CMDB_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	side = pgtest_create_db(admin_url, "cmdb_check_db", false, dbname);
	pgtest_exec(side, setup_sql);
	conninfo = pgtest_conninfo(admin_url, dbname);
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
}

static void
db_teardown(void)
{
	event_base_free(base);
	base = NULL;
	free(conninfo);
	conninfo = NULL;
	PQfinish(side);
	side = NULL;
	pgtest_drop_db(admin_url, dbname);
	log_set_level(LOG_INFO);
}

/* ------------------------------------------------------------- loop helpers */

/* Runs the loop until cond(arg) holds (true) or ms pass (false). cond NULL: just run. */
static bool
run_until(bool (*cond)(void *), void *arg, int ms)
{
	return pgtest_run_until(base, cond, arg, ms);
}

static double
now_s(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* ---------------------------------------------------------------- callbacks */

struct call {
	int n;		   /* times the callback ran: must end at exactly 1 */
	int order;	   /* completion order (first run) */
	bool reentrant;	   /* ran inside db_query() */
	bool null_message; /* message was NULL (the header says never) */
	enum db_status status;
	bool had_res;
	char sqlstate[8];
	char message[256];
	char value[256]; /* first cell of a DB_OK tuples result, "(null)" for NULL */
	double at;
};

static int completions;
static bool in_db_query;

static void
record_cb(void *arg, const struct db_result *r)
{
	struct call *c = arg;

	if (c->n++ == 0)
		c->order = completions++;
	c->reentrant = c->reentrant || in_db_query;
	c->null_message = c->null_message || r->message == NULL;
	c->status = r->status;
	c->had_res = r->res != NULL;
	c->at = now_s();
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", r->sqlstate ? r->sqlstate : "(null)");
	snprintf(c->message, sizeof(c->message), "%s", r->message ? r->message : "(null)");
	c->value[0] = '\0';
	if (r->status == DB_OK && r->res != NULL && PQresultStatus(r->res) == PGRES_TUPLES_OK &&
	    PQntuples(r->res) > 0 && PQnfields(r->res) > 0)
		snprintf(c->value, sizeof(c->value), "%s",
			 PQgetisnull(r->res, 0, 0) ? "(null)" : PQgetvalue(r->res, 0, 0));
}

static void
query(struct db *db, int stmt, const char *const *params, struct call *c)
{
	int rc;

	in_db_query = true;
	rc = db_query(db, stmt, params, record_cb, c);
	in_db_query = false;
	ck_assert_int_eq(rc, 0);
}

struct calls {
	struct call *c;
	int n;
};

static bool
all_called(void *arg)
{
	struct calls *cs = arg;

	for (int i = 0; i < cs->n; i++)
		if (cs->c[i].n == 0)
			return false;
	return true;
}

/* Waits up to ms for the n calls, then a little more, and checks each ran once. */
static void
wait_calls(struct call *c, int n, int ms)
{
	struct calls cs = {c, n};

	ck_assert_msg(run_until(all_called, &cs, ms), "callbacks did not all run within %d ms", ms);
	run_until(NULL, NULL, 50); /* a second call would show up now */
	for (int i = 0; i < n; i++) {
		ck_assert_msg(c[i].n == 1, "callback %d ran %d times", i, c[i].n);
		ck_assert_msg(!c[i].reentrant, "callback %d ran inside db_query()", i);
		ck_assert_msg(!c[i].null_message, "callback %d got a NULL message", i);
	}
}

/* Runs one statement to completion; returns its call record. */
static struct call
run1(struct db *db, int stmt, const char *const *params)
{
	struct call c = {0};

	query(db, stmt, params, &c);
	wait_calls(&c, 1, 10000);
	return c;
}

static bool
ready(void *arg)
{
	return db_ready(arg);
}

static bool
all_up(void *arg)
{
	struct db_stats st;

	db_get_stats(arg, &st);
	return st.up == st.total;
}

/* A pool on the scratch database, every connection up. */
static struct db *
pool(int size, const struct db_listen *listen)
{
	struct db *db = db_new(base, conninfo, size, stmts, S_COUNT, listen);

	ck_assert_ptr_nonnull(db);
	ck_assert_msg(run_until(ready, db, 10000), "pool not ready within 10 s");
	ck_assert_msg(run_until(all_up, db, 10000), "pool not all up within 10 s");
	return db;
}

#define ASSERT_OK(c, want)                                                                         \
	do {                                                                                       \
		ck_assert_msg((c).status == DB_OK, "status %d sqlstate %s: %s", (c).status,        \
			      (c).sqlstate, (c).message);                                          \
		ck_assert_str_eq((c).value, (want));                                               \
	} while (0)

/* ------------------------------------------------------------------- tests */

START_TEST(test_simple)
{
	struct db *db = pool(2, NULL);
	const char *p[] = {"41"};
	struct call c = run1(db, S_ADD, p);
	struct db_stats st;

	ASSERT_OK(c, "42");
	ck_assert(c.had_res);
	ck_assert_str_eq(c.sqlstate, "");
	db_get_stats(db, &st);
	ck_assert_int_eq(st.total, 2);
	ck_assert_int_eq(st.up, 2);
	ck_assert_int_eq(st.busy, 0);
	ck_assert_int_eq(st.queued, 0);
	ck_assert_uint_eq(st.queries, 1);
	ck_assert_uint_eq(st.errors, 0);
	db_free(db);
}
END_TEST

/* Parameters are copied when queued; a NULL entry is SQL NULL. */
START_TEST(test_params)
{
	struct db *db = pool(1, NULL);
	char buf[16] = "copied";
	const char *p[] = {buf};
	const char *null_p[] = {NULL};
	const char *utf8_p[] = {"caf\xc3\xa9 '; DROP TABLE x; --"};
	struct call c[3] = {{0}};

	query(db, S_COALESCE, p, &c[0]);
	strcpy(buf, "CHANGED");
	query(db, S_COALESCE, null_p, &c[1]);
	query(db, S_COALESCE, utf8_p, &c[2]);
	wait_calls(c, 3, 5000);
	ASSERT_OK(c[0], "copied");
	ASSERT_OK(c[1], "was null");
	ASSERT_OK(c[2], "caf\xc3\xa9 '; DROP TABLE x; --");
	db_free(db);
}
END_TEST

/* A statement that raises: DB_ERROR with its SQLSTATE and primary message, and the
 * connection stays usable. */
START_TEST(test_statement_errors)
{
	struct db *db = pool(1, NULL);
	const char *code[] = {"22023"};
	const char *bad_int[] = {"forty-one"};
	const char *one[] = {"1"};
	struct db_stats st;
	struct call c;

	c = run1(db, S_RAISE, code);
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert(c.had_res);
	ck_assert_str_eq(c.sqlstate, "22023");
	ck_assert_str_eq(c.message, "raised 22023");

	c = run1(db, S_ADD, bad_int); /* a bad parameter: 22P02 */
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "22P02");
	ck_assert_msg(strstr(c.message, "forty-one") != NULL, "message: %s", c.message);

	c = run1(db, S_SYNTAX, NULL); /* fails at PREPARE */
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "42601");

	c = run1(db, S_ADD, one);
	ASSERT_OK(c, "2");
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.errors, 3);
	ck_assert_uint_eq(st.retries, 0);
	ck_assert_int_eq(st.up, 1);
	db_free(db);
}
END_TEST

/* Statements are prepared the first time a connection runs them, not before; and
 * one that failed to prepare (its table is missing) works once the table exists. */
START_TEST(test_lazy_prepare)
{
	struct db *db = pool(1, NULL);
	const char *one[] = {"1"};
	struct call c;

	c = run1(db, S_PREPARED, NULL);
	ASSERT_OK(c, "t_prepared");
	c = run1(db, S_ADD, one);
	ASSERT_OK(c, "2");
	c = run1(db, S_ADD, one);
	c = run1(db, S_PREPARED, NULL);
	ASSERT_OK(c, "t_add,t_prepared");

	c = run1(db, S_LATE, NULL);
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "42P01");
	pgtest_exec(side, "CREATE TABLE t_late (x int); INSERT INTO t_late VALUES (1), (2)");
	c = run1(db, S_LATE, NULL);
	ASSERT_OK(c, "2");
	c = run1(db, S_PREPARED, NULL);
	ASSERT_OK(c, "t_add,t_late,t_prepared");
	db_free(db);
}
END_TEST

static bool
busy_is(void *arg)
{
	struct db_stats st;

	db_get_stats(arg, &st);
	return st.busy == 2;
}

/* More queries than connections: the rest wait in order, all run, two at a time. */
START_TEST(test_queue_beyond_pool)
{
	enum { N = 6 };
	struct db *db = pool(2, NULL);
	struct call c[N] = {{0}};
	char tags[N][16];
	char pids[N][32];
	struct db_stats st;
	double t0 = now_s(), elapsed;
	int npids = 0;

	for (int i = 0; i < N; i++) {
		const char *p[] = {"0.3", tags[i]};

		snprintf(tags[i], sizeof(tags[i]), "q%d", i);
		query(db, S_SLEEP, p, &c[i]);
	}
	/* Both connections take one (a second may still be finishing its session set-up
	 * when the first takes its job); the others wait. */
	ck_assert(run_until(busy_is, db, 1000));
	db_get_stats(db, &st);
	ck_assert_int_eq(st.queued, N - 2);
	wait_calls(c, N, 10000);
	elapsed = now_s() - t0;
	/* Three waves of 0.3 s: not all at once, not one at a time. */
	ck_assert_msg(elapsed >= 0.85 && elapsed < 1.75, "took %.2f s", elapsed);
	for (int i = 0; i < N; i++) {
		char *colon;
		bool seen = false;

		ck_assert_msg(c[i].status == DB_OK, "q%d: %s", i, c[i].message);
		ck_assert_msg(strncmp(c[i].value, tags[i], strlen(tags[i])) == 0, "q%d got %s", i,
			      c[i].value);
		colon = strchr(c[i].value, ':');
		for (int k = 0; k < npids; k++)
			seen = seen || strcmp(pids[k], colon + 1) == 0;
		if (!seen)
			snprintf(pids[npids++], sizeof(pids[0]), "%s", colon + 1);
	}
	ck_assert_int_eq(npids, 2); /* never more backends than the pool size */
	/* FIFO: the last wave finished after the first. */
	ck_assert_int_gt(c[4].order, c[1].order);
	ck_assert_int_gt(c[5].order, c[0].order);
	db_get_stats(db, &st);
	ck_assert_int_eq(st.queued, 0);
	ck_assert_int_eq(st.busy, 0);
	ck_assert_uint_eq(st.queries, N);
	db_free(db);
}
END_TEST

/* 40P01 and 40001 on a retryable statement: run again, success, counted as a retry. */
START_TEST(test_retry_transient)
{
	struct db *db = pool(1, NULL);
	const char *deadlock[] = {"seq_a", "40P01"};
	const char *serial[] = {"seq_b", "40001"};
	struct db_stats st;
	struct call c;

	c = run1(db, S_FLAKY, deadlock);
	ASSERT_OK(c, "2"); /* the second call of the sequence */
	c = run1(db, S_FLAKY_SERIAL, serial);
	ASSERT_OK(c, "2");
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.retries, 2);
	ck_assert_uint_eq(st.errors, 0);
	db_free(db);
}
END_TEST

/* A statement not marked retryable is not run again; nor is another SQLSTATE. */
START_TEST(test_no_retry)
{
	struct db *db = pool(1, NULL);
	const char *deadlock[] = {"seq_a", "40P01"};
	const char *other[] = {"seq_b", "23505"};
	struct db_stats st;
	struct call c;

	c = run1(db, S_FLAKY_NORETRY, deadlock);
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "40P01");
	ck_assert_str_eq(c.message, "simulated 40P01");
	c = run1(db, S_FLAKY, other);
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "23505");
	ck_assert_int_eq(exec_long(side, "SELECT last_value FROM seq_a"), 1);
	ck_assert_int_eq(exec_long(side, "SELECT last_value FROM seq_b"), 1);
	db_get_stats(db, &st);
	ck_assert_uint_eq(st.retries, 0);
	db_free(db);
}
END_TEST

/* A statement that always deadlocks: bounded retries, then the error. */
START_TEST(test_retry_gives_up)
{
	struct db *db = pool(1, NULL);
	const char *p[] = {"seq_c"};
	const char *one[] = {"1"};
	struct db_stats st;
	long calls;
	struct call c;

	c = run1(db, S_ALWAYS_DEADLOCK, p);
	ck_assert_int_eq(c.status, DB_ERROR);
	ck_assert_str_eq(c.sqlstate, "40P01");
	calls = exec_long(side, "SELECT last_value FROM seq_c");
	db_get_stats(db, &st);
	ck_assert_msg(calls == DB_RETRY_MAX + 1, "ran %ld times", calls);
	ck_assert_uint_eq(st.retries, (unsigned long)calls - 1);
	c = run1(db, S_ADD, one);
	ASSERT_OK(c, "2");
	db_free(db);
}
END_TEST

/* No server: DB_UNAVAILABLE at once (not after a timeout), from the loop. */
START_TEST(test_unavailable_fast)
{
	const char *targets[] = {"host=/nonexistent-cmdb-test-dir port=1 dbname=x",
				 "host=127.0.0.1 port=1 dbname=x user=x"};

	for (size_t t = 0; t < sizeof(targets) / sizeof(targets[0]); t++) {
		struct db *db = db_new(base, targets[t], 2, stmts, S_COUNT, NULL);
		const char *one[] = {"1"};
		struct call c[2] = {{0}};
		struct db_stats st;
		double t0 = now_s();

		ck_assert_ptr_nonnull(db);
		query(db, S_ADD, one, &c[0]);
		query(db, S_ADD, one, &c[1]);
		wait_calls(c, 2, 5000);
		ck_assert_msg(c[0].at - t0 < 1.0, "%s: took %.2f s", targets[t], c[0].at - t0);
		for (int i = 0; i < 2; i++) {
			ck_assert_int_eq(c[i].status, DB_UNAVAILABLE);
			ck_assert(!c[i].had_res);
			ck_assert_str_eq(c[i].sqlstate, "");
		}
		ck_assert(!db_ready(db));
		db_get_stats(db, &st);
		ck_assert_int_eq(st.up, 0);
		ck_assert_uint_eq(st.unavailable, 2);
		db_free(db);
	}
}
END_TEST

/*
 * A server that accepts TCP but never answers (a hung or firewalled PostgreSQL):
 * queued queries must fail with DB_UNAVAILABLE once the connect timeout (10 s) has
 * passed, not wait forever while the pool keeps reconnecting.
 */
START_TEST(test_unavailable_hung_server)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t slen = sizeof(sa);
	char info[128];
	const char *one[] = {"1"};
	struct call c = {0};
	struct calls cs = {&c, 1};
	struct db *db;
	bool answered;

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(fd, 16), 0); /* never accept(): the kernel completes the
						handshake, nobody ever speaks */
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
	snprintf(info, sizeof(info), "host=127.0.0.1 port=%d dbname=x user=x sslmode=disable",
		 ntohs(sa.sin_port));
	db = db_new(base, info, 1, stmts, S_COUNT, NULL);
	ck_assert_ptr_nonnull(db);
	query(db, S_ADD, one, &c);
	answered = run_until(all_called, &cs, 14000);
	db_free(db);
	close(fd);
	ck_assert_msg(answered, "a query against a hung server was still waiting after 14 s");
	ck_assert_int_eq(c.status, DB_UNAVAILABLE);
}
END_TEST

/* db_free() answers everything pending — running, queued — with DB_UNAVAILABLE. */
START_TEST(test_free_pending)
{
	struct db *db = pool(1, NULL);
	const char *p[] = {"5", "x"};
	struct call c[3] = {{0}};

	for (int i = 0; i < 3; i++)
		query(db, S_SLEEP, p, &c[i]);
	run_until(NULL, NULL, 100);
	db_free(db);
	for (int i = 0; i < 3; i++) {
		ck_assert_msg(c[i].n == 1, "call %d ran %d times", i, c[i].n);
		ck_assert_int_eq(c[i].status, DB_UNAVAILABLE);
	}
	run_until(NULL, NULL, 50);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(c[i].n, 1);
}
END_TEST

/*
 * The same for a query that failed fast and whose DB_UNAVAILABLE is still deferred
 * to the loop: after db_free() the callback must already have run (the deferred
 * event would otherwise run later and use the freed pool, or never run).
 */
START_TEST(test_free_deferred)
{
	struct db *db =
	    db_new(base, "host=/nonexistent-cmdb-test-dir port=1", 1, stmts, S_COUNT, NULL);
	const char *one[] = {"1"};
	struct call c = {0};

	ck_assert_ptr_nonnull(db);
	query(db, S_ADD, one, &c);
	ck_assert_int_eq(c.n, 0);
	db_free(db);
	ck_assert_msg(c.n == 1, "db_free() returned with a callback still pending");
	run_until(NULL, NULL, 50);
	ck_assert_int_eq(c.n, 1);
}
END_TEST

/* Beyond the queue limit: DB_UNAVAILABLE for the extra query, the rest stay queued. */
START_TEST(test_queue_limit)
{
	enum { QMAX = 10000 };
	struct db *db = pool(1, NULL);
	const char *slow[] = {"5", "x"};
	const char *one[] = {"1"};
	struct call *c = calloc(QMAX + 2, sizeof(*c));
	struct calls last = {&c[QMAX + 1], 1};
	struct db_stats st;

	ck_assert_ptr_nonnull(c);
	query(db, S_SLEEP, slow, &c[0]); /* occupies the one connection */
	for (int i = 1; i <= QMAX + 1; i++)
		query(db, S_ADD, one, &c[i]);
	ck_assert(run_until(all_called, &last, 2000));
	ck_assert_int_eq(c[QMAX + 1].status, DB_UNAVAILABLE);
	db_get_stats(db, &st);
	ck_assert_int_eq(st.queued, QMAX);
	for (int i = 0; i <= QMAX; i++)
		ck_assert_int_eq(c[i].n, 0);
	db_free(db);
	for (int i = 0; i <= QMAX + 1; i++)
		ck_assert_int_eq(c[i].n, 1);
	free(c);
}
END_TEST

/* ----------------------------------------------------------- LISTEN / NOTIFY */

struct listen_rec {
	int connects;
	int notifies;
	char channel[64];
	char payload[256];
};

static void
on_notify(void *arg, const char *channel, const char *payload)
{
	struct listen_rec *l = arg;

	l->notifies++;
	snprintf(l->channel, sizeof(l->channel), "%s", channel);
	snprintf(l->payload, sizeof(l->payload), "%s", payload ? payload : "(null)");
}

static void
on_connect(void *arg)
{
	((struct listen_rec *)arg)->connects++;
}

struct count_at_least {
	int *counter;
	int want;
};

static bool
count_reached(void *arg)
{
	struct count_at_least *w = arg;

	return *w->counter >= w->want;
}

static void
wait_count(int *counter, int want, int ms, const char *what)
{
	struct count_at_least w = {counter, want};

	ck_assert_msg(run_until(count_reached, &w, ms), "%s: %d, want %d within %d ms", what,
		      *counter, want, ms);
}

/* Kills the other backends of the scratch database that match `where` (SQL over
 * pg_stat_activity); returns how many. */
static long
terminate(const char *where)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
		 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
		 " WHERE datname = current_database() AND pid <> pg_backend_pid() AND (%s)",
		 where);
	return exec_long(side, sql);
}

START_TEST(test_listen_notify)
{
	static const char *const channels[] = {"t_chan", "t_other", NULL};
	struct listen_rec l = {0};
	struct db_listen listen = {channels, on_notify, on_connect, &l};
	struct db *db = pool(1, &listen);
	const char *p1[] = {"t_chan", "hello"};
	const char *p2[] = {"t_chan", "again"};
	const char *unheard[] = {"t_nobody", "x"};
	struct db_stats st;
	struct call c;

	wait_count(&l.connects, 1, 5000, "on_connect");

	/* Through the pool itself. */
	c = run1(db, S_NOTIFY, p1);
	ck_assert_int_eq(c.status, DB_OK);
	wait_count(&l.notifies, 1, 5000, "notifications");
	ck_assert_str_eq(l.channel, "t_chan");
	ck_assert_str_eq(l.payload, "hello");

	/* From another session, the other channel, no payload. */
	pgtest_exec(side, "NOTIFY t_other");
	wait_count(&l.notifies, 2, 5000, "notifications");
	ck_assert_str_eq(l.channel, "t_other");
	ck_assert_str_eq(l.payload, "");

	/* A channel nobody listens on is not delivered. */
	c = run1(db, S_NOTIFY, unheard);
	run_until(NULL, NULL, 200);
	ck_assert_int_eq(l.notifies, 2);

	/* The listener is not a pool connection. */
	db_get_stats(db, &st);
	ck_assert_int_eq(st.total, 1);
	ck_assert_int_eq(st.up, 1);

	/* Kill the listener: it reconnects by itself, says so, and hears again. */
	ck_assert_int_eq(terminate("query LIKE '%LISTEN t_chan%'"), 1);
	wait_count(&l.connects, 2, 5000, "on_connect after the listener was killed");
	ck_assert_int_eq(l.connects, 2);
	c = run1(db, S_NOTIFY, p2);
	wait_count(&l.notifies, 3, 5000, "notifications after reconnect");
	ck_assert_str_eq(l.payload, "again");
	db_free(db);
}
END_TEST

/* --------------------------------------------------------- connection loss */

static bool
sleep_is_running(void *arg)
{
	(void)arg;
	/* Sleeping, not just being prepared: the wait event says so. */
	return exec_long(side,
			 "SELECT count(*) FROM pg_stat_activity"
			 " WHERE datname = current_database() AND wait_event = 'PgSleep'") > 0;
}

/* A query in flight when its backend is terminated fails with DB_UNAVAILABLE; the
 * pool reconnects by itself and the next query works. */
START_TEST(test_terminate_in_flight)
{
	struct db *db = pool(1, NULL);
	const char *p[] = {"30", "x"};
	const char *one[] = {"1"};
	struct db_stats st0, st;
	struct call c = {0}, after;

	db_get_stats(db, &st0);
	query(db, S_SLEEP, p, &c);
	ck_assert(run_until(sleep_is_running, NULL, 5000));
	ck_assert_int_eq(terminate("wait_event = 'PgSleep'"), 1);
	wait_calls(&c, 1, 5000);
	ck_assert_msg(c.status == DB_UNAVAILABLE, "status %d sqlstate %s: %s", c.status, c.sqlstate,
		      c.message);

	ck_assert_msg(run_until(ready, db, 5000), "pool did not reconnect within 5 s");
	after = run1(db, S_ADD, one);
	ASSERT_OK(after, "2");
	db_get_stats(db, &st);
	ck_assert_uint_gt(st.reconnects, st0.reconnects);
	db_free(db);
}
END_TEST

struct reconnected {
	struct db *db;
	unsigned long want;
};

static bool
reconnected_and_up(void *arg)
{
	struct reconnected *r = arg;
	struct db_stats st;

	db_get_stats(r->db, &st);
	return st.reconnects >= r->want && st.up == st.total;
}

/* Idle connections killed behind the pool's back: noticed, re-established, and the
 * statements (prepared again lazily on the new sessions) work. */
START_TEST(test_terminate_idle)
{
	struct db *db = pool(2, NULL);
	const char *one[] = {"1"};
	struct db_stats st0;
	struct reconnected r = {db, 0};
	struct call c[4] = {{0}};

	/* Two overlapping statements: both connections have prepared something. */
	for (int i = 0; i < 2; i++) {
		const char *p[] = {"0.2", "warm"};

		query(db, S_SLEEP, p, &c[i]);
	}
	wait_calls(c, 2, 5000);
	db_get_stats(db, &st0);
	ck_assert_int_eq(terminate("application_name = 'cmdbd'"), 2);
	r.want = st0.reconnects + 2;
	ck_assert_msg(run_until(reconnected_and_up, &r, 5000),
		      "pool did not reconnect both connections within 5 s");
	memset(c, 0, sizeof(c));
	for (int i = 0; i < 4; i++)
		query(db, S_ADD, one, &c[i]);
	wait_calls(c, 4, 5000);
	for (int i = 0; i < 4; i++)
		ASSERT_OK(c[i], "2");
	db_free(db);
}
END_TEST

Suite *
suite_db(void)
{
	Suite *s = suite_create("db");
	TCase *tc;

	if ((admin_url = pgtest_admin_url(s)) == NULL)
		return s;
	tc = tcase_create("pool");
	tcase_add_checked_fixture(tc, db_setup, db_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_simple);
	tcase_add_test(tc, test_params);
	tcase_add_test(tc, test_statement_errors);
	tcase_add_test(tc, test_lazy_prepare);
	tcase_add_test(tc, test_queue_beyond_pool);
	tcase_add_test(tc, test_retry_transient);
	tcase_add_test(tc, test_no_retry);
	tcase_add_test(tc, test_retry_gives_up);
	tcase_add_test(tc, test_unavailable_fast);
	tcase_add_test(tc, test_unavailable_hung_server);
	tcase_add_test(tc, test_free_pending);
	tcase_add_test(tc, test_free_deferred);
	tcase_add_test(tc, test_queue_limit);
	tcase_add_test(tc, test_listen_notify);
	tcase_add_test(tc, test_terminate_in_flight);
	tcase_add_test(tc, test_terminate_idle);
	suite_add_tcase(s, tc);
	return s;
}
