/*
 * pgtest.c — shared PostgreSQL helpers for the Check suites (see pgtest.h).
 */
#include "pgtest.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

PGconn *
pgtest_create_db(const char *admin_url, const char *name)
{
	PGconn *admin = pgtest_connect(admin_url, "postgres");
	char sql[200];

	pgtest_exec(admin, "SET client_min_messages = warning");
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pgtest_exec(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	pgtest_exec(admin, sql);
	PQfinish(admin);
	return pgtest_connect(admin_url, name);
}

void
pgtest_drop_db(const char *admin_url, PGconn *conn, const char *name)
{
	PGconn *admin;
	char sql[200];

	PQfinish(conn);
	admin = pgtest_connect(admin_url, "postgres");
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pgtest_exec(admin, sql);
	PQfinish(admin);
}

/* Appends " key='value'" (quoted as libpq wants) to the malloc'd string *buf. */
static void
append_kv(char **buf, const char *key, const char *value)
{
	size_t len = strlen(*buf);
	char *out = realloc(*buf, len + strlen(key) + 2 * strlen(value) + 5), *p;

	ck_assert_ptr_nonnull(out);
	p = out + len;
	p += sprintf(p, "%s%s='", len ? " " : "", key);
	for (const char *v = value; *v; v++) {
		if (*v == '\'' || *v == '\\')
			*p++ = '\\';
		*p++ = *v;
	}
	strcpy(p, "'");
	*buf = out;
}

char *
pgtest_conninfo(const char *admin_url, const char *name)
{
	char *errmsg = NULL, *buf;
	PQconninfoOption *opts = PQconninfoParse(admin_url, &errmsg);

	ck_assert_msg(opts != NULL, "CMDB_TEST_ADMIN_URL does not parse: %s", errmsg);
	buf = strdup("");
	ck_assert_ptr_nonnull(buf);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "dbname") != 0)
			append_kv(&buf, o->keyword, o->val);
	append_kv(&buf, "dbname", name);
	PQconninfoFree(opts);
	return buf;
}
