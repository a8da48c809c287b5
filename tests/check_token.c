/*
 * check_token.c — token primitives (unit), and `cmdbd migrate` / `cmdbd token` against a
 * real database (tcase "db", only when CMDB_TEST_ADMIN_URL names a superuser conninfo:
 * each test makes its own database there and drops it).
 */
#include <check.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "migrate.h"
#include "cmd_token.h"
#include "token.h"
#include "pgtest.h"

/* ------------------------------------------------------------------------------------
 * Unit tests
 * ---------------------------------------------------------------------------------- */

#define ZERO_TOKEN "cmdb_0000000000000000000000000000000000000000000000000000000000000000"

START_TEST(test_hash_known)
{
	char hex[TOKEN_HASH_HEX_LEN + 1];

	/* Expected value from coreutils' sha256sum. */
	token_hash_hex(ZERO_TOKEN, strlen(ZERO_TOKEN), hex);
	ck_assert_str_eq(hex, "67b7ea141e197a06e623a2525ed8505bbecf66bb3bcc3318427be4611f2f6808");
	/* Only len bytes count. */
	token_hash_hex(ZERO_TOKEN "trailing", strlen(ZERO_TOKEN), hex);
	ck_assert_str_eq(hex, "67b7ea141e197a06e623a2525ed8505bbecf66bb3bcc3318427be4611f2f6808");
}
END_TEST

START_TEST(test_generate)
{
	char a[TOKEN_MAX], b[TOKEN_MAX];
	char ha[TOKEN_HASH_HEX_LEN + 1], hb[TOKEN_HASH_HEX_LEN + 1];
	regex_t re;

	ck_assert_int_eq(regcomp(&re, "^cmdb_[0-9a-f]{64}$", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_int_eq(token_generate(a), 0);
	ck_assert_int_eq(token_generate(b), 0);
	ck_assert_uint_eq(strlen(a), TOKEN_LEN);
	ck_assert_int_eq(regexec(&re, a, 0, NULL, 0), 0);
	ck_assert_int_eq(regexec(&re, b, 0, NULL, 0), 0);
	ck_assert_str_ne(a, b);
	token_hash_hex(a, strlen(a), ha);
	token_hash_hex(b, strlen(b), hb);
	ck_assert_str_ne(ha, hb);
	regfree(&re);
}
END_TEST

START_TEST(test_ct_equal)
{
	ck_assert(token_ct_equal("abcdef", "abcdef", 6));
	ck_assert(!token_ct_equal("abcdef", "xbcdef", 6));
	ck_assert(!token_ct_equal("abcdef", "abcdex", 6));
	ck_assert(!token_ct_equal("\x01", "\x81", 1)); /* differs in the top bit only */
	ck_assert(token_ct_equal("abc", "abd", 2));    /* only n bytes are compared */
	ck_assert(token_ct_equal("", "x", 0));
}
END_TEST

static const struct {
	const char *glob;
	const char *source;
	bool match;
} globs[] = {
    {NULL, "anything", true},
    {NULL, NULL, true},
    {"*", "capistrano:billing-api", true},
    {"capistrano:*", "capistrano:billing-api", true},
    {"capistrano:*", "fabric:billing-api", false},
    {"capistrano:*", "capistrano", false},
    {"ci.*", "ci.github", true},
    {"ci.?", "ci.gh", false},
    {"a*", "a/b", true}, /* '/' is not special (no FNM_PATHNAME) */
    {"*b", ".b", true},	 /* nor a leading '.' (no FNM_PERIOD) */
    {"[ab]x", "bx", true},
    {"[ab]x", "cx", false},
    {"exact", "exact", true},
    {"exact", "exact2", false},
    {"capistrano:*", NULL, false},
};

START_TEST(test_glob_match)
{
	ck_assert_msg(token_glob_match(globs[_i].glob, globs[_i].source) == globs[_i].match,
		      "glob %s vs %s: expected %s", globs[_i].glob ? globs[_i].glob : "(null)",
		      globs[_i].source ? globs[_i].source : "(null)",
		      globs[_i].match ? "match" : "no match");
}
END_TEST

static const struct {
	const char *text;
	long long seconds; /* -1: must be rejected */
} durations[] = {
    {"90d", 90LL * 86400},
    {"12h", 12 * 3600},
    {"30m", 1800},
    {"45s", 45},
    {"1s", 1},
    {"36600d", TOKEN_MAX_LIFETIME_S},
    {"36601d", -1},
    {"99999999999999999999d", -1},
    {"0d", -1},
    {"0", -1},
    {"", -1},
    {"d", -1},
    {"1", -1},
    {"-1d", -1},
    {"+1d", -1},
    {" 1d", -1},
    {"1d ", -1},
    {"1.5h", -1},
    {"1x", -1},
    {"1dd", -1},
    {"1D", -1},
};

START_TEST(test_parse_duration)
{
	long long got = -42;
	int rc = token_parse_duration(durations[_i].text, &got);

	if (durations[_i].seconds < 0) {
		ck_assert_msg(rc == -1, "'%s' should be rejected", durations[_i].text);
		ck_assert_int_eq(got, -42); /* untouched on error */
	} else {
		ck_assert_msg(rc == 0, "'%s' should parse", durations[_i].text);
		ck_assert_int_eq(got, durations[_i].seconds);
	}
}
END_TEST

START_TEST(test_name_valid)
{
	char longest[TOKEN_NAME_MAX + 2];

	ck_assert(token_name_valid("admin"));
	ck_assert(token_name_valid("a"));
	ck_assert(token_name_valid("9"));
	ck_assert(token_name_valid("A-1_b.c:d@e"));
	memset(longest, 'x', TOKEN_NAME_MAX);
	longest[TOKEN_NAME_MAX] = '\0';
	ck_assert(token_name_valid(longest));
	longest[TOKEN_NAME_MAX] = 'x';
	longest[TOKEN_NAME_MAX + 1] = '\0';
	ck_assert(!token_name_valid(longest));
	ck_assert(!token_name_valid(""));
	ck_assert(!token_name_valid(NULL));
	ck_assert(!token_name_valid("-a"));
	ck_assert(!token_name_valid("_a"));
	ck_assert(!token_name_valid("a b"));
	ck_assert(!token_name_valid("a/b"));
	ck_assert(!token_name_valid("caf\xc3\xa9"));
}
END_TEST

/* The generated table holds every migrations/NNNN_name.sql, byte for byte (the file's
 * text plus a final newline if it lacked one), in strictly ascending version order. */
START_TEST(test_migrations_embedded)
{
	const char *repo = getenv("CMDB_REPO");
	char path[4096];

	ck_assert_uint_ge(migrations_count, 1);
	for (size_t i = 0; i < migrations_count; i++) {
		const struct migration *m = &migrations[i];
		char *text = NULL;
		size_t len = 0;
		FILE *f;

		if (i > 0)
			ck_assert_int_gt(m->version, migrations[i - 1].version);
		ck_assert_int_eq(migrate_latest_version() >= m->version, 1);
		snprintf(path, sizeof(path), "%s/migrations/%04d_%s.sql",
			 repo != NULL && repo[0] != '\0' ? repo : ".", m->version, m->name);
		f = fopen(path, "rb");
		ck_assert_msg(f != NULL, "%s: cannot open (run from the repository root)", path);
		text = calloc(1, strlen(m->sql) + 2);
		len = fread(text, 1, strlen(m->sql) + 1, f);
		fclose(f);
		if (len > 0 && text[len - 1] != '\n')
			text[len++] = '\n';
		ck_assert_msg(len == strlen(m->sql) && memcmp(text, m->sql, len) == 0,
			      "%s differs from its embedded copy", path);
		free(text);
	}
}
END_TEST

/* ------------------------------------------------------------------------------------
 * The CLI and the database: test_cli_usage needs no database, the "db" tcase does
 * ---------------------------------------------------------------------------------- */

static const char *admin_url;

/* A fresh, empty database for one test; its name goes into name[64]. */
static PGconn *
fresh_db(char name[64])
{
	return pgtest_create_db(admin_url, "cmdb_test_token", false, name);
}

static void
drop_db(PGconn *conn, const char *name)
{
	PQfinish(conn);
	pgtest_drop_db(admin_url, name);
}

/* Run migrate_run with its report captured; returns the report (caller frees). */
static char *
run_migrate(PGconn *conn, bool status_only, int *rc)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);

	ck_assert_ptr_nonnull(out);
	*rc = migrate_run(conn, status_only, out);
	fclose(out);
	return buf;
}

/* The value of one cell of a one-row query (caller frees). */
static char *
query_value(PGconn *conn, const char *sql, const char *param)
{
	const char *params[1] = {param};
	PGresult *res = PQexecParams(conn, sql, param != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
	char *value;

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
		      PQresultErrorMessage(res));
	ck_assert_msg(PQntuples(res) == 1, "%s: %d rows", sql, PQntuples(res));
	value = strdup(PQgetisnull(res, 0, 0) ? "(null)" : PQgetvalue(res, 0, 0));
	PQclear(res);
	return value;
}

START_TEST(test_migrate)
{
	char db[64], expect[128];
	PGconn *conn = fresh_db(db);
	char *report, *value;
	const char *applied;
	int rc;

	/* Status on an empty database changes nothing and lists everything as pending. */
	report = run_migrate(conn, true, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(report, "0001_schema") != NULL && strstr(report, "pending") != NULL,
		      "status before: %s", report);
	free(report);
	value = query_value(conn, "SELECT to_regclass('schema_migrations') IS NULL", NULL);
	ck_assert_str_eq(value, "t");
	free(value);

	report = run_migrate(conn, false, &rc);
	ck_assert_msg(rc == 0, "migrate failed: %s", report);
	ck_assert_msg(strstr(report, "event=migration_applied version=1 name=schema") != NULL,
		      "report: %s", report);
	free(report);
	value = query_value(conn, "SELECT count(*) FROM schema_migrations", NULL);
	snprintf(expect, sizeof(expect), "%zu", migrations_count);
	ck_assert_str_eq(value, expect);
	free(value);
	value = query_value(conn, "SELECT max(version) FROM schema_migrations", NULL);
	snprintf(expect, sizeof(expect), "%d", migrate_latest_version());
	ck_assert_str_eq(value, expect);
	free(value);

	/* Again: nothing to do. */
	report = run_migrate(conn, false, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(report, "event=migrations_current") != NULL, "report: %s", report);
	ck_assert_msg(strstr(report, "migration_applied") == NULL, "report: %s", report);
	free(report);

	report = run_migrate(conn, true, &rc);
	ck_assert_int_eq(rc, 0);
	applied = strstr(report, " applied 20");
	ck_assert_msg(strncmp(report, "0001_schema ", 12) == 0 && applied != NULL &&
			  applied < strchr(report, '\n'),
		      "status after: %s", report);
	ck_assert_msg(strstr(report, "pending") == NULL, "status after: %s", report);
	free(report);

	drop_db(conn, db);
}
END_TEST

/* A migration that fails is rolled back and reported with its name. Simulated by
 * pre-creating a table the first migration creates. */
START_TEST(test_migrate_failure)
{
	char db[64];
	PGconn *conn = fresh_db(db);
	char *report, *value;
	int rc;

	pgtest_exec(conn, "CREATE TABLE nodes (x int)");
	report = run_migrate(conn, false, &rc);
	ck_assert_int_eq(rc, -1);
	ck_assert_msg(strstr(report, "event=migration_failed version=1 name=schema") != NULL,
		      "report: %s", report);
	ck_assert_msg(strstr(report, "sqlstate=42P07") != NULL, "report: %s", report);
	free(report);
	/* Nothing of it stayed: no row, no other table, and the connection is usable. */
	value = query_value(conn, "SELECT count(*) FROM schema_migrations", NULL);
	ck_assert_str_eq(value, "0");
	free(value);
	value = query_value(conn, "SELECT to_regclass('edges') IS NULL", NULL);
	ck_assert_str_eq(value, "t");
	free(value);
	drop_db(conn, db);
}
END_TEST

/* Run token_cli with stdout and stderr captured into *out and *err (caller frees). */
static int
run_token(PGconn *conn, char **out, char **err, char **argv)
{
	FILE *fo = tmpfile(), *fe = tmpfile();
	FILE *files[2] = {fo, fe};
	char **bufs[2] = {out, err};
	int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
	int argc = 0, rc;
	long n;

	ck_assert(fo != NULL && fe != NULL && saved_out >= 0 && saved_err >= 0);
	while (argv[argc] != NULL)
		argc++;
	fflush(stdout);
	fflush(stderr);
	dup2(fileno(fo), STDOUT_FILENO);
	dup2(fileno(fe), STDERR_FILENO);
	rc = token_cli(argc, argv, conn);
	fflush(stdout);
	fflush(stderr);
	dup2(saved_out, STDOUT_FILENO);
	dup2(saved_err, STDERR_FILENO);
	close(saved_out);
	close(saved_err);

	for (int i = 0; i < 2; i++) {
		fseek(files[i], 0, SEEK_END);
		n = ftell(files[i]);
		rewind(files[i]);
		*bufs[i] = calloc(1, (size_t)n + 1);
		ck_assert_uint_eq(fread(*bufs[i], 1, (size_t)n, files[i]), (size_t)n);
		fclose(files[i]);
	}
	return rc;
}

/* Usage errors are found before the connection is touched: conn may be NULL. */
START_TEST(test_cli_usage)
{
	char *no_action[] = {"token", NULL};
	char *bad_action[] = {"token", "frobnicate", NULL};
	char *no_name[] = {"token", "create", "--scope", "read", NULL};
	char *bad_name[] = {"token", "create", "--name", "-x", "--scope", "read", NULL};
	char *bad_scope[] = {"token", "create", "--name", "x", "--scope", "root", NULL};
	char *source_read[] = {"token", "create", "--name=x", "--scope=read", "--source=a*", NULL};
	char *bad_expiry[] = {"token", "create",    "--name", "x", "--scope",
			      "read",  "--expires", "soon",   NULL};
	char *missing_value[] = {"token", "create", "--name", NULL};
	char *twice[] = {"token", "create", "--name", "x", "--name", "y", "--scope", "read", NULL};
	char *stray[] = {"token", "create", "--name", "x", "--scope", "read", "extra", NULL};
	char *list_arg[] = {"token", "list", "extra", NULL};
	char *revoke_none[] = {"token", "revoke", NULL};
	char *revoke_two[] = {"token", "revoke", "a", "b", NULL};
	char *valid[] = {"token",    "create", "--name",    "x",  "--scope", "write",
			 "--source", "ci:*",   "--expires", "1h", NULL};
	char **cases[] = {no_action,   bad_action,  no_name,	   bad_name, bad_scope,
			  source_read, bad_expiry,  missing_value, twice,    stray,
			  list_arg,    revoke_none, revoke_two};

	char *out, *err;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_msg(run_token(NULL, &out, &err, cases[i]) == 2,
			      "case %zu: expected a usage error", i);
		ck_assert_str_eq(out, "");
		ck_assert_msg(strstr(err, "usage: cmdbd token") != NULL, "case %zu: %s", i, err);
		free(out);
		free(err);
	}
	/* Valid arguments without a database: a failure, not a usage error. */
	ck_assert_int_eq(run_token(NULL, &out, &err, valid), 1);
	ck_assert_str_eq(out, "");
	free(out);
	free(err);
}
END_TEST

/* Wait up to 5 s for a notification on channel cmdb_tokens; returns its payload. */
static char *
wait_notify(PGconn *listener)
{
	for (int tries = 0; tries < 50; tries++) {
		PGnotify *n;
		fd_set fds;
		struct timeval tv = {0, 100000};

		ck_assert_int_eq(PQconsumeInput(listener), 1);
		n = PQnotifies(listener);
		if (n != NULL) {
			char *payload = NULL;

			if (strcmp(n->relname, "cmdb_tokens") == 0)
				payload = strdup(n->extra);
			PQfreemem(n);
			if (payload != NULL)
				return payload;
			continue;
		}
		FD_ZERO(&fds);
		FD_SET(PQsocket(listener), &fds);
		select(PQsocket(listener) + 1, &fds, NULL, NULL, &tv);
	}
	ck_abort_msg("no NOTIFY cmdb_tokens within 5 s");
	return NULL;
}

START_TEST(test_token_cli)
{
	char db[64];
	PGconn *conn = fresh_db(db);
	PGconn *listener = pgtest_connect(admin_url, db);
	char *out = NULL, *err = NULL, *value, *payload;
	char hash[TOKEN_HASH_HEX_LEN + 1];
	char token[TOKEN_MAX];
	char *create[] = {"token",    "create",	      "--name",	   "ci@deploy", "--scope", "write",
			  "--source", "capistrano:*", "--expires", "90d",	NULL};
	char *create_admin[] = {"token", "create", "--name=admin", "--scope=admin", NULL};
	char *list[] = {"token", "list", NULL};
	char *revoke[] = {"token", "revoke", "ci@deploy", NULL};
	char *revoke_unknown[] = {"token", "revoke", "nobody", NULL};
	regex_t re;
	int rc;

	out = run_migrate(conn, false, &rc);
	ck_assert_msg(rc == 0, "migrate: %s", out);
	free(out);
	pgtest_exec(listener, "LISTEN cmdb_tokens");

	/* create: the token alone on stdout, its hash in the table, a notification. */
	rc = run_token(conn, &out, &err, create);
	ck_assert_msg(rc == 0, "create failed: %s", err);
	ck_assert_int_eq(regcomp(&re, "^cmdb_[0-9a-f]{64}\n$", REG_EXTENDED | REG_NOSUB), 0);
	ck_assert_msg(regexec(&re, out, 0, NULL, 0) == 0, "stdout: '%s'", out);
	regfree(&re);
	snprintf(token, sizeof(token), "%.*s", TOKEN_LEN, out);
	token_hash_hex(token, strlen(token), hash);
	value = query_value(conn, "SELECT hash FROM tokens WHERE name = $1", "ci@deploy");
	ck_assert_str_eq(value, hash);
	free(value);
	value = query_value(conn,
			    "SELECT scope || ' ' || source_glob || ' ' ||"
			    " (expires_at - created_at = interval '90 days') FROM tokens"
			    " WHERE name = $1",
			    "ci@deploy");
	ck_assert_str_eq(value, "write capistrano:* true");
	free(value);
	payload = wait_notify(listener);
	ck_assert_str_eq(payload, "ci@deploy");
	free(payload);
	free(out);
	free(err);

	/* A duplicate name is refused, and says so. */
	rc = run_token(conn, &out, &err, create);
	ck_assert_int_eq(rc, 1);
	ck_assert_str_eq(out, "");
	ck_assert_msg(strstr(err, "already exists") != NULL, "stderr: %s", err);
	free(out);
	free(err);

	rc = run_token(conn, &out, &err, create_admin);
	ck_assert_msg(rc == 0, "create admin failed: %s", err);
	value = query_value(conn,
			    "SELECT coalesce(source_glob, '-') || ' ' ||"
			    " coalesce(expires_at::text, 'never') FROM tokens WHERE name = $1",
			    "admin");
	ck_assert_str_eq(value, "- never");
	free(value);
	free(out);
	free(err);

	/* list: both names, in byte order, never a hash. */
	rc = run_token(conn, &out, &err, list);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strncmp(out, "NAME", 4) == 0, "list: %s", out);
	ck_assert_ptr_nonnull(strstr(out, "admin"));
	ck_assert_ptr_nonnull(strstr(out, "capistrano:*"));
	ck_assert_msg(strstr(out, "admin") < strstr(out, "ci@deploy"), "list order: %s", out);
	ck_assert_msg(strstr(out, hash) == NULL, "list shows a hash: %s", out);
	free(out);
	free(err);
	payload = wait_notify(listener);
	ck_assert_str_eq(payload, "admin");
	free(payload);

	/* revoke: sets revoked_at once, notifies; again is a no-op; unknown fails. */
	rc = run_token(conn, &out, &err, revoke);
	ck_assert_msg(rc == 0, "revoke: %s", err);
	free(out);
	free(err);
	value = query_value(conn, "SELECT revoked_at IS NOT NULL FROM tokens WHERE name = $1",
			    "ci@deploy");
	ck_assert_str_eq(value, "t");
	free(value);
	payload = wait_notify(listener);
	ck_assert_str_eq(payload, "ci@deploy");
	free(payload);

	rc = run_token(conn, &out, &err, revoke);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(err, "already revoked") != NULL, "stderr: %s", err);
	free(out);
	free(err);

	rc = run_token(conn, &out, &err, revoke_unknown);
	ck_assert_int_eq(rc, 1);
	ck_assert_msg(strstr(err, "no token named 'nobody'") != NULL, "stderr: %s", err);
	free(out);
	free(err);

	rc = run_token(conn, &out, &err, list);
	ck_assert_int_eq(rc, 0);
	ck_assert_msg(strstr(out, "ci@deploy") != NULL, "list: %s", out);
	free(out);
	free(err);

	PQfinish(listener);
	drop_db(conn, db);
}
END_TEST

Suite *
suite_token(void)
{
	Suite *s = suite_create("token");
	TCase *unit = tcase_create("unit");

	tcase_add_test(unit, test_hash_known);
	tcase_add_test(unit, test_generate);
	tcase_add_test(unit, test_ct_equal);
	tcase_add_loop_test(unit, test_glob_match, 0, (int)(sizeof(globs) / sizeof(globs[0])));
	tcase_add_loop_test(unit, test_parse_duration, 0,
			    (int)(sizeof(durations) / sizeof(durations[0])));
	tcase_add_test(unit, test_name_valid);
	tcase_add_test(unit, test_cli_usage);
	tcase_add_test(unit, test_migrations_embedded);
	suite_add_tcase(s, unit);

	admin_url = getenv("CMDB_TEST_ADMIN_URL");
	if (admin_url != NULL && admin_url[0] != '\0') {
		TCase *db = tcase_create("db");

		tcase_set_timeout(db, 60);
		tcase_add_test(db, test_migrate);
		tcase_add_test(db, test_migrate_failure);
		tcase_add_test(db, test_token_cli);
		suite_add_tcase(s, db);
	}
	return s;
}
