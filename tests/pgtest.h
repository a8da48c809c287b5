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

#endif
