/*
 * cmd_token.c — `cmdbd token create|list|revoke`: the tokens table, from the
 * command line, with synchronous libpq (never inside the event loop). The
 * token primitives it uses are token.c's.
 */
#include "cmd_token.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

#define TS_FMT "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'"

/* One statement: insert, then notify (delivered at commit, i.e. only if it stored). */
static const char SQL_CREATE[] =
    "WITH ins AS ("
    " INSERT INTO tokens (name, hash, scope, source_glob, expires_at)"
    " VALUES ($1, $2, $3, $4, now() + $5::bigint * interval '1 second')"
    " RETURNING name, expires_at)"
    " SELECT pg_notify('cmdb_tokens', name),"
    " coalesce(to_char(expires_at AT TIME ZONE 'UTC', " TS_FMT "), 'never') FROM ins";

static const char SQL_UNCREATE[] = "WITH del AS (DELETE FROM tokens WHERE name = $1 RETURNING name)"
				   " SELECT pg_notify('cmdb_tokens', name) FROM del";

static const char SQL_LIST[] =
    "SELECT name, scope, coalesce(source_glob, '-'),"
    " coalesce(to_char(expires_at AT TIME ZONE 'UTC', " TS_FMT "), 'never'),"
    " to_char(created_at AT TIME ZONE 'UTC', " TS_FMT "),"
    " coalesce(to_char(revoked_at AT TIME ZONE 'UTC', " TS_FMT "), '-')"
    " FROM tokens ORDER BY name COLLATE \"C\"";

static const char SQL_REVOKE[] = "WITH upd AS (UPDATE tokens SET revoked_at = now()"
				 " WHERE name = $1 AND revoked_at IS NULL RETURNING name)"
				 " SELECT pg_notify('cmdb_tokens', name) FROM upd";

static const char SQL_REVOKED_AT[] =
    "SELECT to_char(revoked_at AT TIME ZONE 'UTC', " TS_FMT ") FROM tokens WHERE name = $1";

static void
usage(FILE *out)
{
	fputs("usage: cmdbd token create --name NAME --scope read|write|admin"
	      " [--source GLOB] [--expires DURATION]\n"
	      "       cmdbd token list\n"
	      "       cmdbd token revoke NAME\n"
	      "DURATION is a positive number with a unit: 90d, 12h, 30m, 45s.\n"
	      "--source (write tokens only) limits the manifest sources the token may write,\n"
	      "as a glob: 'capistrano:*'.\n",
	      out);
}

/* Usage error: message, the usage text, exit code 2. */
__attribute__((format(printf, 1, 2))) static int
usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("cmdbd token: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	usage(stderr);
	return 2;
}

/* A database error: the statement's primary message (PQresultErrorMessage has a
 * trailing newline and a "ERROR:  " prefix we do not want). */
static int
db_error(const char *what, PGconn *conn, const PGresult *res)
{
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;

	if (msg == NULL)
		msg = PQerrorMessage(conn);
	fprintf(stderr, "cmdbd token: %s: %s%s", what, msg,
		msg[0] != '\0' && msg[strlen(msg) - 1] == '\n' ? "" : "\n");
	return 1;
}

static int
need_conn(PGconn *conn)
{
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "cmdbd token: no database connection%s%s",
			conn != NULL ? ": " : "\n", conn != NULL ? PQerrorMessage(conn) : "");
		return -1;
	}
	return 0;
}

/* Match argv[*i] against "--opt VALUE" or "--opt=VALUE". Returns 1 and sets *value (and
 * advances *i past a separate value) on a match, 0 when argv[*i] is another option,
 * -1 when the value is missing. */
static int
take_option(int argc, char **argv, int *i, const char *opt, const char **value)
{
	size_t n = strlen(opt);

	if (strncmp(argv[*i], opt, n) != 0)
		return 0;
	if (argv[*i][n] == '=') {
		*value = argv[*i] + n + 1;
		return 1;
	}
	if (argv[*i][n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*value = argv[++*i];
	return 1;
}

struct create_args {
	const char *name;
	const char *scope;
	const char *source; /* NULL: unrestricted */
	const char *expires;
	long long lifetime_s; /* valid when expires != NULL */
};

/* Parse and check `token create` arguments (argv[0] is "create"). Returns 0 or 2. */
static int
parse_create(int argc, char **argv, struct create_args *a)
{
	static const char *const names[] = {"--name", "--scope", "--source", "--expires"};
	const char **slots[] = {&a->name, &a->scope, &a->source, &a->expires};

	memset(a, 0, sizeof(*a));
	for (int i = 1; i < argc; i++) {
		int matched = 0;

		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]) && matched == 0; k++) {
			const char *value = NULL;

			matched = take_option(argc, argv, &i, names[k], &value);
			if (matched < 0)
				return usage_error("%s needs a value", names[k]);
			if (matched > 0) {
				if (*slots[k] != NULL)
					return usage_error("%s given twice", names[k]);
				*slots[k] = value;
			}
		}
		if (matched == 0)
			return usage_error("create: unexpected argument '%s'", argv[i]);
	}

	if (a->name == NULL)
		return usage_error("create: %s is required", "--name");
	if (!token_name_valid(a->name))
		return usage_error(
		    "invalid token name '%s': 1-64 characters of A-Z a-z 0-9 _ . : @ -,"
		    " starting with a letter or digit",
		    a->name);
	if (a->scope == NULL)
		return usage_error("create: %s is required", "--scope");
	if (strcmp(a->scope, "read") != 0 && strcmp(a->scope, "write") != 0 &&
	    strcmp(a->scope, "admin") != 0)
		return usage_error("invalid scope '%s': read, write or admin", a->scope);
	if (a->source != NULL) {
		if (strcmp(a->scope, "write") != 0)
			return usage_error("--source restricts write tokens; scope is %s",
					   a->scope);
		if (a->source[0] == '\0' || strlen(a->source) > 255)
			return usage_error("invalid --source glob '%s': 1-255 characters",
					   a->source);
		for (const char *p = a->source; *p != '\0'; p++) {
			if ((unsigned char)*p < ' ' || *p == 0x7f)
				return usage_error("invalid --source glob '%s': control character",
						   a->source);
		}
	}
	if (a->expires != NULL && token_parse_duration(a->expires, &a->lifetime_s) != 0)
		return usage_error("invalid --expires '%s': a positive number and a unit, as 90d,"
				   " 12h, 30m or 45s (at most 100 years)",
				   a->expires);
	return 0;
}

/* Undo a create whose token could not be shown: a credential nobody has is a risk. */
static void
uncreate(PGconn *conn, const char *name)
{
	const char *params[1] = {name};

	PQclear(PQexecParams(conn, SQL_UNCREATE, 1, NULL, params, NULL, NULL, 0));
}

static int
cmd_create(int argc, char **argv, PGconn *conn)
{
	struct create_args a;
	char token[TOKEN_MAX];
	char hash[TOKEN_HASH_HEX_LEN + 1];
	char lifetime[32];
	const char *params[5];
	PGresult *res = NULL;
	int rc;

	rc = parse_create(argc, argv, &a);
	if (rc != 0)
		return rc;
	if (need_conn(conn) != 0)
		return 1;
	if (token_generate(token) != 0) {
		fprintf(stderr, "cmdbd token: cannot read random bytes: %s\n", strerror(errno));
		return 1;
	}
	token_hash_hex(token, TOKEN_LEN, hash);
	snprintf(lifetime, sizeof(lifetime), "%lld", a.lifetime_s);

	params[0] = a.name;
	params[1] = hash;
	params[2] = a.scope;
	params[3] = a.source;
	params[4] = a.expires != NULL ? lifetime : NULL;
	res = PQexecParams(conn, SQL_CREATE, 5, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

		if (state != NULL && strcmp(state, "23505") == 0 && constraint != NULL &&
		    strcmp(constraint, "tokens_pkey") == 0) {
			fprintf(stderr,
				"cmdbd token: a token named '%s' already exists"
				" (revoked tokens keep their name)\n",
				a.name);
			rc = 1;
		} else {
			rc = db_error("create failed", conn, res);
		}
		goto out;
	}

	/* The token goes to stdout alone, once; if it cannot be written, nobody has it. */
	if (printf("%s\n", token) < 0 || fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr,
			"cmdbd token: cannot write the token to stdout: %s;"
			" token '%s' removed again\n",
			strerror(errno), a.name);
		uncreate(conn, a.name);
		rc = 1;
		goto out;
	}
	fprintf(stderr, "event=token_created name=%s scope=%s source=%s expires=%s\n", a.name,
		a.scope, a.source != NULL ? a.source : "-", PQgetvalue(res, 0, 1));
	rc = 0;
out:
	explicit_bzero(token, sizeof(token));
	PQclear(res);
	return rc;
}

/* Column widths over the header and every row, then the table, left-aligned. */
static void
print_table(const PGresult *res, FILE *out)
{
	static const char *const header[] = {"NAME",	"SCOPE",   "SOURCE",
					     "EXPIRES", "CREATED", "REVOKED"};
	enum { NCOLS = sizeof(header) / sizeof(header[0]) };
	int width[NCOLS];

	for (int c = 0; c < NCOLS; c++) {
		width[c] = (int)strlen(header[c]);
		for (int r = 0; r < PQntuples(res); r++) {
			int len = PQgetlength(res, r, c);
			if (len > width[c])
				width[c] = len;
		}
	}
	for (int c = 0; c < NCOLS - 1; c++)
		fprintf(out, "%-*s  ", width[c], header[c]);
	fprintf(out, "%s\n", header[NCOLS - 1]);
	for (int r = 0; r < PQntuples(res); r++) {
		for (int c = 0; c < NCOLS - 1; c++)
			fprintf(out, "%-*s  ", width[c], PQgetvalue(res, r, c));
		fprintf(out, "%s\n", PQgetvalue(res, r, NCOLS - 1));
	}
}

static int
cmd_list(int argc, char **argv, PGconn *conn)
{
	PGresult *res;
	int rc = 0;

	if (argc > 1)
		return usage_error("list: unexpected argument '%s'", argv[1]);
	if (need_conn(conn) != 0)
		return 1;
	res = PQexec(conn, SQL_LIST);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = db_error("list failed", conn, res);
	else
		print_table(res, stdout);
	PQclear(res);
	return rc;
}

static int
cmd_revoke(int argc, char **argv, PGconn *conn)
{
	const char *params[1];
	PGresult *res = NULL;
	int rc = 1;

	if (argc != 2)
		return usage_error("revoke: %s", argc < 2 ? "NAME is required" : "one NAME only");
	if (need_conn(conn) != 0)
		return 1;
	params[0] = argv[1];
	res = PQexecParams(conn, SQL_REVOKE, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = db_error("revoke failed", conn, res);
		goto out;
	}
	if (PQntuples(res) == 1) {
		fprintf(stderr, "event=token_revoked name=%s\n", argv[1]);
		rc = 0;
		goto out;
	}

	/* Nothing updated: unknown, or revoked before. */
	PQclear(res);
	res = PQexecParams(conn, SQL_REVOKED_AT, 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = db_error("revoke failed", conn, res);
	} else if (PQntuples(res) == 0) {
		fprintf(stderr, "cmdbd token: no token named '%s'\n", argv[1]);
		rc = 1;
	} else {
		fprintf(stderr, "cmdbd token: token '%s' was already revoked at %s\n", argv[1],
			PQgetvalue(res, 0, 0));
		rc = 0;
	}
out:
	PQclear(res);
	return rc;
}

int
token_cli(int argc, char **argv, PGconn *conn)
{
	const char *action = argc > 1 ? argv[1] : NULL;

	if (action == NULL)
		return usage_error("%s", "an action is required: create, list or revoke");
	if (strcmp(action, "-h") == 0 || strcmp(action, "--help") == 0 ||
	    strcmp(action, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(action, "create") == 0)
		return cmd_create(argc - 1, argv + 1, conn);
	if (strcmp(action, "list") == 0)
		return cmd_list(argc - 1, argv + 1, conn);
	if (strcmp(action, "revoke") == 0)
		return cmd_revoke(argc - 1, argv + 1, conn);
	return usage_error("unknown action '%s': create, list or revoke", action);
}
