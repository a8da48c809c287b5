/*
 * pgtest.c — shared PostgreSQL helpers for the Check suites (see pgtest.h).
 */
#include "pgtest.h"

#include <check.h>

PGconn *
pgtest_connect(const char *admin_url, const char *dbname)
{
	/* expand_dbname: the first "dbname" is the whole conninfo, the second wins. */
	const char *keys[] = {"dbname", "dbname", NULL};
	const char *values[] = {admin_url, dbname, NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 1);

	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect to %s: %s", dbname,
		      PQerrorMessage(conn));
	return conn;
}

void
pgtest_exec(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);

	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK ||
			  PQresultStatus(res) == PGRES_TUPLES_OK,
		      "%s: %s", sql, PQresultErrorMessage(res));
	PQclear(res);
}
