/*
 * pgtest.c — shared PostgreSQL helpers for the Check suites (see pgtest.h).
 */
#include "pgtest.h"

#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "db.h"
#include "log.h"
#include "migrate.h"
#include "sql.h"
#include "tailer.h"

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

START_TEST(test_skipped)
{
	fputs("database tests skipped: CMDB_TEST_ADMIN_URL is not set (make test sets it)\n",
	      stderr);
}
END_TEST

const char *
pgtest_admin_url(Suite *s)
{
	const char *url = getenv("CMDB_TEST_ADMIN_URL");
	TCase *tc;

	if (url != NULL && url[0] != '\0')
		return url;
	tc = tcase_create("skipped");
	tcase_add_test(tc, test_skipped);
	suite_add_tcase(s, tc);
	return NULL;
}

long long
pgtest_value(PGconn *conn, const char *sql)
{
	PGresult *res = PQexec(conn, sql);
	long long v;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) >= 1, "%s: %s", sql,
		      PQresultErrorMessage(res));
	v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return v;
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
pgtest_conninfo(const char *admin_url, const char *dbname)
{
	char *errmsg = NULL, *buf;
	PQconninfoOption *opts = PQconninfoParse(admin_url, &errmsg);

	ck_assert_msg(opts != NULL, "CMDB_TEST_ADMIN_URL does not parse: %s", errmsg);
	buf = strdup("");
	ck_assert_ptr_nonnull(buf);
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (o->val != NULL && strcmp(o->keyword, "dbname") != 0)
			append_kv(&buf, o->keyword, o->val);
	append_kv(&buf, "dbname", dbname);
	PQconninfoFree(opts);
	return buf;
}

PGconn *
pgtest_create_db(const char *admin_url, const char *prefix, bool migrate, char name[64])
{
	static int counter;
	PGconn *admin = pgtest_connect(admin_url, "postgres"), *conn;
	char sql[160];

	pgtest_exec(admin, "SET client_min_messages = warning");
	snprintf(name, 64, "%s_%ld_%d", prefix, (long)getpid(), counter++);
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pgtest_exec(admin, sql);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
	pgtest_exec(admin, sql);
	PQfinish(admin);
	conn = pgtest_connect(admin_url, name);
	if (migrate) {
		char *report = NULL;
		size_t len = 0;
		FILE *out = open_memstream(&report, &len);
		int rc;

		ck_assert_ptr_nonnull(out);
		pgtest_exec(conn, "SET client_min_messages = warning");
		rc = migrate_run(conn, false, out);
		fclose(out);
		ck_assert_msg(rc == 0, "migrate %s: %s", name, report);
		free(report);
	}
	return conn;
}

void
pgtest_drop_db(const char *admin_url, const char *name)
{
	PGconn *admin = pgtest_connect(admin_url, "postgres");
	char sql[160];

	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", name);
	pgtest_exec(admin, sql);
	PQfinish(admin);
}

struct run_until {
	struct event_base *base;
	bool (*cond)(void *);
	void *arg;
	struct timeval deadline;
	bool met;
};

static void
run_until_tick(evutil_socket_t fd, short what, void *arg)
{
	struct run_until *w = arg;
	struct timeval now;

	(void)fd;
	(void)what;
	if (w->cond != NULL && w->cond(w->arg)) {
		w->met = true;
		event_base_loopbreak(w->base);
		return;
	}
	gettimeofday(&now, NULL);
	if (timercmp(&now, &w->deadline, >))
		event_base_loopbreak(w->base);
}

bool
pgtest_run_until(struct event_base *base, bool (*cond)(void *), void *arg, int ms)
{
	struct run_until w = {base, cond, arg, {0, 0}, false};
	struct timeval now, span = {ms / 1000, (ms % 1000) * 1000}, tick = {0, 5000};
	struct event *t;

	if (cond != NULL && cond(arg))
		return true;
	gettimeofday(&now, NULL);
	timeradd(&now, &span, &w.deadline);
	t = event_new(base, -1, EV_PERSIST, run_until_tick, &w);
	ck_assert_ptr_nonnull(t);
	event_add(t, &tick);
	event_base_dispatch(base);
	event_free(t);
	return w.met;
}

void
pgtest_map_setup(struct pgtest_map *m, const char *prefix)
{
	memset(m, 0, sizeof(*m));
	log_set_level(getenv("CMDB_TEST_LOG") ? LOG_DEBUG : LOG_ERROR);
	m->side = pgtest_create_db(getenv("CMDB_TEST_ADMIN_URL"), prefix, true, m->dbname);
	m->conninfo = pgtest_conninfo(getenv("CMDB_TEST_ADMIN_URL"), m->dbname);
	m->base = event_base_new();
	ck_assert_ptr_nonnull(m->base);
	m->db = db_new(m->base, m->conninfo, 2, sql_statements, SQL_COUNT, NULL);
	ck_assert_ptr_nonnull(m->db);
}

void
pgtest_map_teardown(struct pgtest_map *m)
{
	db_free(m->db);
	event_base_free(m->base);
	PQfinish(m->side);
	free(m->conninfo);
	pgtest_drop_db(getenv("CMDB_TEST_ADMIN_URL"), m->dbname);
	log_set_level(LOG_INFO);
	memset(m, 0, sizeof(*m));
}

struct pgtest_map pgtest_current_map;

void
pgtest_map_fixture_setup(void)
{
	pgtest_map_setup(&pgtest_current_map, "cmdb_check_map");
}

void
pgtest_map_fixture_teardown(void)
{
	pgtest_map_teardown(&pgtest_current_map);
}

void
pgtest_map_free_tailer(struct pgtest_map *m, struct tailer *t)
{
	db_free(m->db);
	m->db = NULL;
	tailer_free(t);
}

long long
pgtest_map_write(struct pgtest_map *m, const char *sql)
{
	PGresult *res = PQexec(m->side, sql);
	json_t *reply;
	long long seq;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1, "%s: %s", sql,
		      PQresultErrorMessage(res));
	reply = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
	ck_assert_msg(reply != NULL && json_integer_value(json_object_get(reply, "status")) < 300,
		      "%s: %s", sql, PQgetvalue(res, 0, 0));
	seq = json_integer_value(json_object_get(reply, "seq"));
	json_decref(reply);
	PQclear(res);
	return seq;
}
