/*
 * pgtest.h — helpers for the Check suites that need a real PostgreSQL
 * (the throwaway cluster named by CMDB_TEST_ADMIN_URL; see tests/run.sh).
 * Blocking libpq; failures end the test through ck_assert.
 */
#ifndef CMDB_PGTEST_H
#define CMDB_PGTEST_H

#include <libpq-fe.h>

/* Connects to database dbname on the server of admin_url (dbname overrides its own). */
PGconn *pgtest_connect(const char *admin_url, const char *dbname);

/* Runs sql, which must succeed (command or tuples). */
void pgtest_exec(PGconn *conn, const char *sql);

/*
 * Creates database name (dropped first if a crashed run left it) on the server of
 * admin_url and returns a connection to it.
 */
PGconn *pgtest_create_db(const char *admin_url, const char *name);

/* Closes conn (may be NULL) and drops database name, whoever is still connected. */
void pgtest_drop_db(const char *admin_url, PGconn *conn, const char *name);

/* The admin conninfo (URI or key=value) with its dbname replaced: malloc'd. */
char *pgtest_conninfo(const char *admin_url, const char *name);

#endif
