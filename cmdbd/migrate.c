/*
 * migrate.c — apply the embedded SQL migrations (`cmdbd migrate [--status]`).
 *
 * Synchronous libpq: this runs from the command line, never inside the event loop.
 * See migrate.h for the contract and the rules for migration files.
 */
#include "migrate.h"

#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Session advisory lock held while migrating: the bytes of "cmdbmigr" as a bigint. */
#define MIGRATE_LOCK_SQL_LOCK "SELECT pg_advisory_lock(7164492956121524082)"
#define MIGRATE_LOCK_SQL_UNLOCK "SELECT pg_advisory_unlock(7164492956121524082)"

static const char SQL_CREATE_TABLE[] = "CREATE TABLE IF NOT EXISTS schema_migrations ("
				       " version integer PRIMARY KEY,"
				       " name text NOT NULL,"
				       " applied_at timestamptz NOT NULL DEFAULT now())";

static const char SQL_SELECT_APPLIED[] =
    "SELECT version, name,"
    " to_char(applied_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
    " FROM schema_migrations ORDER BY version";

static const char SQL_INSERT_APPLIED[] =
    "INSERT INTO schema_migrations (version, name) VALUES ($1::integer, $2)";

/* Prints s as a log value (log_q's quoting), so that one event stays one line. */
static void
put_value(FILE *out, const char *s)
{
	char q[1024];

	fputs(log_q(s, q, sizeof(q)), out);
}

/* The connection's last error without its trailing newline, copied into the caller's
 * buf (truncated to size); returns buf. */
static const char *
conn_error(PGconn *conn, char *buf, size_t size)
{
	size_t n;

	snprintf(buf, size, "%s", PQerrorMessage(conn));
	n = strlen(buf);
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = '\0';
	return buf;
}

/* Why a statement failed: PostgreSQL's primary message, else the connection's error
 * (copied into buf). */
static const char *
result_error(PGconn *conn, const PGresult *res, char *buf, size_t size)
{
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	return msg != NULL ? msg : conn_error(conn, buf, size);
}

/* One "event=migrate_error step=... error=..." line. */
static void
report_error(FILE *out, const char *step, PGconn *conn, const PGresult *res)
{
	char buf[512];

	fprintf(out, "event=migrate_error step=%s error=", step);
	put_value(out, result_error(conn, res, buf, sizeof(buf)));
	fputc('\n', out);
}

/* Run a statement without parameters that must succeed with the given status.
 * On failure writes an event=migrate_error line naming `what` and returns -1. */
static int
exec_simple(PGconn *conn, const char *sql, ExecStatusType want, const char *what, FILE *out)
{
	PGresult *res = PQexec(conn, sql);
	int rc = 0;

	if (PQresultStatus(res) != want) {
		report_error(out, what, conn, res);
		rc = -1;
	}
	PQclear(res);
	return rc;
}

/* The line (1-based) of sql holding character number pos (1-based, as PostgreSQL counts:
 * characters, not bytes; the SQL is UTF-8). */
static int
line_of_position(const char *sql, long pos)
{
	int line = 1;
	long chars = 0;

	for (const unsigned char *p = (const unsigned char *)sql; *p != '\0'; p++) {
		if ((*p & 0xC0) != 0x80 && ++chars >= pos)
			break;
		if (*p == '\n')
			line++;
	}
	return line;
}

static double
elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) * 1e3 +
	       (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

/* Report why migration m failed: its file, the line PostgreSQL points at (when it
 * does), the SQLSTATE and the messages. */
static void
report_failure(const struct migration *m, PGconn *conn, const PGresult *res, FILE *out)
{
	const char *pos = res != NULL ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *detail = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	char buf[512];

	fprintf(out, "event=migration_failed version=%d name=%s file=migrations/%04d_%s.sql",
		m->version, m->name, m->version, m->name);
	if (pos != NULL)
		fprintf(out, " line=%d", line_of_position(m->sql, strtol(pos, NULL, 10)));
	if (state != NULL)
		fprintf(out, " sqlstate=%s", state);
	fputs(" error=", out);
	put_value(out, result_error(conn, res, buf, sizeof(buf)));
	if (detail != NULL) {
		fputs(" detail=", out);
		put_value(out, detail);
	}
	if (hint != NULL) {
		fputs(" hint=", out);
		put_value(out, hint);
	}
	fputc('\n', out);
}

/* Apply one migration in its own transaction, recording it in schema_migrations. */
static int
apply_one(PGconn *conn, const struct migration *m, FILE *out)
{
	PGresult *res = NULL;
	struct timespec start;
	char version[16];
	const char *params[2];
	int rc = -1;

	clock_gettime(CLOCK_MONOTONIC, &start);
	if (exec_simple(conn, "BEGIN", PGRES_COMMAND_OK, "begin", out) != 0)
		return -1;

	/* A file holds several statements: PQexec's simple protocol runs them all and
	 * returns the last result, or the first error. */
	res = PQexec(conn, m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_EMPTY_QUERY) {
		report_failure(m, conn, res, out);
		goto out;
	}
	PQclear(res);

	snprintf(version, sizeof(version), "%d", m->version);
	params[0] = version;
	params[1] = m->name;
	res = PQexecParams(conn, SQL_INSERT_APPLIED, 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		report_failure(m, conn, res, out);
		goto out;
	}
	PQclear(res);
	res = PQexec(conn, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		report_failure(m, conn, res, out);
		goto out;
	}
	fprintf(out, "event=migration_applied version=%d name=%s ms=%.0f\n", m->version, m->name,
		elapsed_ms(&start));
	rc = 0;
out:
	PQclear(res);
	if (rc != 0) {
		/* Harmless if the transaction is already gone (COMMIT of a failed one). */
		PQclear(PQexec(conn, "ROLLBACK"));
	}
	return rc;
}

/* Index of version in the applied result set, or -1. */
static int
find_applied(const PGresult *applied, int version)
{
	for (int i = 0; applied != NULL && i < PQntuples(applied); i++) {
		if (atoi(PQgetvalue(applied, i, 0)) == version)
			return i;
	}
	return -1;
}

/* Is version one of the embedded migrations? */
static bool
is_known(int version)
{
	for (size_t i = 0; i < migrations_count; i++) {
		if (migrations[i].version == version)
			return true;
	}
	return false;
}

/* Read schema_migrations; *applied stays NULL when the table does not exist yet. */
static int
load_applied(PGconn *conn, PGresult **applied, FILE *out)
{
	PGresult *res = PQexec(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL");
	bool exists;

	*applied = NULL;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		report_error(out, "read_state", conn, res);
		PQclear(res);
		return -1;
	}
	exists = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!exists)
		return 0;

	res = PQexec(conn, SQL_SELECT_APPLIED);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		report_error(out, "read_state", conn, res);
		PQclear(res);
		return -1;
	}
	*applied = res;
	return 0;
}

/* `--status`: one line per migration, known ones first, then any the database has
 * that this binary does not (a newer cmdbd migrated it). */
static void
print_status(const PGresult *applied, FILE *out)
{
	int width = 0;
	char label[128];

	for (size_t i = 0; i < migrations_count; i++) {
		int n = snprintf(label, sizeof(label), "%04d_%s", migrations[i].version,
				 migrations[i].name);
		if (n > width)
			width = n;
	}
	for (size_t i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];
		int row = find_applied(applied, m->version);

		snprintf(label, sizeof(label), "%04d_%s", m->version, m->name);
		if (row >= 0)
			fprintf(out, "%-*s  applied %s\n", width, label,
				PQgetvalue(applied, row, 2));
		else
			fprintf(out, "%-*s  pending\n", width, label);
	}
	for (int row = 0; applied != NULL && row < PQntuples(applied); row++) {
		int version = atoi(PQgetvalue(applied, row, 0));

		if (!is_known(version))
			fprintf(out,
				"%04d_%s  applied %s (unknown to this cmdbd: it is older than the "
				"database)\n",
				version, PQgetvalue(applied, row, 1), PQgetvalue(applied, row, 2));
	}
}

/* Apply what is pending. Called with the advisory lock held. */
static int
apply_pending(PGconn *conn, FILE *out)
{
	PGresult *applied = NULL;
	int count = 0;
	int rc = -1;

	if (exec_simple(conn, SQL_CREATE_TABLE, PGRES_COMMAND_OK, "create_table", out) != 0)
		return -1;
	if (load_applied(conn, &applied, out) != 0)
		return -1;

	for (size_t i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];

		if (find_applied(applied, m->version) >= 0)
			continue;
		if (apply_one(conn, m, out) != 0)
			goto out;
		count++;
	}
	for (int row = 0; row < PQntuples(applied); row++) {
		int version = atoi(PQgetvalue(applied, row, 0));

		if (!is_known(version))
			fprintf(out,
				"event=migration_unknown version=%d name=%s"
				" note=\"applied by a newer cmdbd\"\n",
				version, PQgetvalue(applied, row, 1));
	}
	if (count == 0)
		fprintf(out, "event=migrations_current version=%d\n", migrate_latest_version());
	rc = 0;
out:
	PQclear(applied);
	return rc;
}

int
migrate_run(PGconn *conn, bool status_only, FILE *out)
{
	PGresult *applied = NULL;
	int rc = -1;

	if (conn == NULL) {
		fputs("event=migrate_error step=connect error=\"no connection\"\n", out);
		return -1;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		report_error(out, "connect", conn, NULL);
		return -1;
	}

	if (status_only) {
		if (load_applied(conn, &applied, out) != 0)
			return -1;
		print_status(applied, out);
		PQclear(applied);
		return 0;
	}

	/* NOTICEs such as "relation already exists, skipping" are noise here. */
	if (exec_simple(conn, "SET client_min_messages = warning", PGRES_COMMAND_OK, "set", out) !=
	    0)
		return -1;
	if (exec_simple(conn, MIGRATE_LOCK_SQL_LOCK, PGRES_TUPLES_OK, "lock", out) != 0)
		goto out;
	rc = apply_pending(conn, out);
	if (exec_simple(conn, MIGRATE_LOCK_SQL_UNLOCK, PGRES_TUPLES_OK, "unlock", out) != 0)
		rc = -1;
out:
	PQclear(PQexec(conn, "RESET client_min_messages"));
	fflush(out);
	return rc;
}

int
migrate_latest_version(void)
{
	int latest = 0;

	for (size_t i = 0; i < migrations_count; i++) {
		if (migrations[i].version > latest)
			latest = migrations[i].version;
	}
	return latest;
}
