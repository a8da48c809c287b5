/*
 * pgtest.h — helpers for the Check suites that need a real PostgreSQL
 * (the throwaway cluster named by CMDB_TEST_ADMIN_URL; see tests/run.sh).
 * Blocking libpq; failures end the test through ck_assert.
 */
#ifndef CMDB_PGTEST_H
#define CMDB_PGTEST_H

#include <check.h>
#include <stdbool.h>

#include <event2/event.h>
#include <libpq-fe.h>

struct db;
struct tailer;

/*
 * The admin conninfo (CMDB_TEST_ADMIN_URL), or NULL when it is not set: then a
 * tcase "skipped" is added to s, whose one test says so (the suite's database
 * tests are left out; `make check` runs without a database).
 */
const char *pgtest_admin_url(Suite *s);

/* Connects to database dbname on the server of admin_url (dbname overrides its own). */
PGconn *pgtest_connect(const char *admin_url, const char *dbname);

/* Runs sql, which must succeed (command or tuples). */
void pgtest_exec(PGconn *conn, const char *sql);

/* The first cell of a query that must return a row, as a number. */
long long pgtest_value(PGconn *conn, const char *sql);

/* The admin conninfo (URI or key=value) with its dbname replaced (malloc'd). */
char *pgtest_conninfo(const char *admin_url, const char *dbname);

/*
 * A new empty database "<prefix>_<pid>_<n>" (one left over from a crashed run is
 * dropped first), its name in name[64]; with migrate, brought to the current
 * schema (migrate.h). Returns a connection to it.
 */
PGconn *pgtest_create_db(const char *admin_url, const char *prefix, bool migrate, char name[64]);

/* Drops the database (connections to it are terminated). */
void pgtest_drop_db(const char *admin_url, const char *name);

/* Runs the loop until cond(arg) holds (true) or ms pass (false); cond NULL: just
 * run for ms. */
bool pgtest_run_until(struct event_base *base, bool (*cond)(void *), void *arg, int ms);

/*
 * A migrated scratch database with what the server runs on it: a loop, the
 * server's statement table on an async pool (db.h), and a blocking connection
 * for the test's own SQL (a superuser's). Log level error unless CMDB_TEST_LOG.
 */
struct pgtest_map {
	char dbname[64];
	char *conninfo; /* malloc'd */
	PGconn *side;
	struct event_base *base;
	struct db *db;
};

void pgtest_map_setup(struct pgtest_map *m, const char *prefix);
void pgtest_map_teardown(struct pgtest_map *m);

/* The map of the running test, made and dropped by this checked fixture. */
extern struct pgtest_map pgtest_current_map;
void pgtest_map_fixture_setup(void);
void pgtest_map_fixture_teardown(void);

/* Frees m's pool, then the tailer: the server's order, so that a read still in
 * flight answers the tailer before it is freed. */
void pgtest_map_free_tailer(struct pgtest_map *m, struct tailer *t);

/* Runs a SQL function that returns a reply ({"seq": N, ...}) on m->side; returns N
 * (0 when it changed nothing). */
long long pgtest_map_write(struct pgtest_map *m, const char *sql);

#endif
