/*
 * check_config.c — settings (cmdbd/config.c): defaults, then the environment, then
 * flags; integer ranges; error messages; --help text; host:port splitting.
 *
 * Every test starts from an environment without the CMDB_* settings (a checked
 * fixture unsets them before and after), so results do not depend on the shell.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

static const char *const env_names[] = {
    "CMDB_DATABASE_URL",
    "CMDB_LISTEN",
    "CMDB_MAX_BODY",
    "CMDB_MAX_HEADER_BYTES",
    "CMDB_MAX_HEADERS",
    "CMDB_JSON_MAX_DEPTH",
    "CMDB_IDLE_TIMEOUT",
    "CMDB_DB_POOL",
    "CMDB_MANIFEST_MAX_NODES",
    "CMDB_MANIFEST_MAX_EDGES",
    "CMDB_SHUTDOWN_GRACE",
    "CMDB_LOG_LEVEL",
    "CMDB_HEADER_TIMEOUT",
    "CMDB_BODY_TIMEOUT",
    "CMDB_MAX_CONNECTIONS",
    "CMDB_SOURCE_TTL",
    "CMDB_ORPHAN_PURGE_AFTER",
    "CMDB_TLS_CERT",
    "CMDB_TLS_KEY",
    "CMDB_READ_DATABASE_URL",
    "CMDB_READY_GRACE",
};

static void
clear_env(void)
{
	for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
		unsetenv(env_names[i]);
}

/* Loads argv (NULL-terminated) over defaults; returns cfg_load's result. */
static int
load(struct cfg *c, char **argv, char *err, size_t errlen)
{
	int argc = 0;

	while (argv[argc] != NULL)
		argc++;
	cfg_defaults(c);
	err[0] = '\0';
	return cfg_load(c, argc, argv, err, errlen);
}

START_TEST(test_defaults)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};

	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.database_url, "dbname=cmdb");
	ck_assert_str_eq(c.listen, "127.0.0.1:8080");
	ck_assert_int_eq(c.max_body_bytes, 4L * 1024 * 1024); /* SPEC §3: 4 MiB */
	ck_assert_int_eq(c.max_header_bytes, 16 * 1024);      /* SPEC §2: 16 KiB */
	ck_assert_int_eq(c.max_headers, 100);
	ck_assert_int_eq(c.json_max_depth, 32);
	ck_assert_int_eq(c.manifest_max_nodes, 10000);
	ck_assert_int_eq(c.manifest_max_edges, 10000);
	ck_assert_int_gt(c.db_pool_size, 0);
	ck_assert_int_gt(c.idle_timeout, 0);
	ck_assert_int_ge(c.shutdown_grace, 0);
	ck_assert_str_eq(c.log_level, "info");
	ck_assert_int_eq(c.header_timeout, 10); /* issue 8: headers within 10 s */
	ck_assert_int_eq(c.body_timeout, 60);	/* ... the body within 60 s more */
	ck_assert_int_eq(c.max_connections, 0); /* automatic: from RLIMIT_NOFILE */
	cfg_free(&c);
}
END_TEST

/* SPEC §7: the read database (empty: the --database) and /readyz's grace. */
START_TEST(test_read_database)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};
	char *flags[] = {"--read-database", "host=standby dbname=cmdb", "--ready-grace=30s", NULL};
	char *bad[] = {"--ready-grace", "soon", NULL};

	clear_env();
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.read_database_url, "");
	ck_assert_int_eq(c.ready_grace, 0);
	cfg_free(&c);
	setenv("CMDB_READ_DATABASE_URL", "host=replica dbname=cmdb", 1);
	setenv("CMDB_READY_GRACE", "1m", 1);
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.read_database_url, "host=replica dbname=cmdb");
	ck_assert_int_eq(c.ready_grace, 60);
	cfg_free(&c);
	ck_assert_int_eq(load(&c, flags, err, sizeof(err)), 0);
	ck_assert_str_eq(c.read_database_url, "host=standby dbname=cmdb");
	ck_assert_int_eq(c.ready_grace, 30);
	cfg_free(&c);
	ck_assert_int_eq(load(&c, bad, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "ready-grace") != NULL, "%s", err);
	cfg_free(&c);
	clear_env();
}
END_TEST

START_TEST(test_env)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};

	setenv("CMDB_DATABASE_URL", "postgresql:///x?host=/tmp", 1);
	setenv("CMDB_LISTEN", "0.0.0.0:9000", 1);
	setenv("CMDB_DB_POOL", "8", 1);
	setenv("CMDB_MAX_BODY", "2048", 1);
	setenv("CMDB_LOG_LEVEL", "debug", 1);
	setenv("CMDB_SHUTDOWN_GRACE", "", 1); /* empty: ignored, default stays */
	setenv("CMDB_HEADER_TIMEOUT", "5", 1);
	setenv("CMDB_BODY_TIMEOUT", "120", 1);
	setenv("CMDB_MAX_CONNECTIONS", "500", 1);
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.database_url, "postgresql:///x?host=/tmp");
	ck_assert_str_eq(c.listen, "0.0.0.0:9000");
	ck_assert_int_eq(c.db_pool_size, 8);
	ck_assert_int_eq(c.max_body_bytes, 2048);
	ck_assert_str_eq(c.log_level, "debug");
	ck_assert_int_eq(c.shutdown_grace, 10);
	ck_assert_int_eq(c.header_timeout, 5);
	ck_assert_int_eq(c.body_timeout, 120);
	ck_assert_int_eq(c.max_connections, 500);
	cfg_free(&c);
}
END_TEST

START_TEST(test_flags)
{
	struct cfg c;
	char err[256];
	char *argv[] = {"--listen",
			"127.0.0.1:1",
			"--db-pool=3",
			"--database=dbname=a b",
			"--max-body",
			"1024",
			"--log-level=warn",
			"--header-timeout",
			"1",
			"--body-timeout=2",
			"--max-connections",
			"20",
			NULL};

	ck_assert_msg(load(&c, argv, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.listen, "127.0.0.1:1");
	ck_assert_int_eq(c.db_pool_size, 3);
	ck_assert_str_eq(c.database_url, "dbname=a b");
	ck_assert_int_eq(c.max_body_bytes, 1024);
	ck_assert_str_eq(c.log_level, "warn");
	ck_assert_int_eq(c.header_timeout, 1);
	ck_assert_int_eq(c.body_timeout, 2);
	ck_assert_int_eq(c.max_connections, 20);
	cfg_free(&c);
}
END_TEST

/* Flags beat the environment, which beats the defaults; the last flag wins. */
START_TEST(test_precedence)
{
	struct cfg c;
	char err[256];
	char *argv[] = {"--db-pool", "5", "--listen=a:1", "--listen=b:2", NULL};

	setenv("CMDB_DB_POOL", "9", 1);
	setenv("CMDB_LISTEN", "env:3", 1);
	setenv("CMDB_MAX_HEADERS", "50", 1);
	ck_assert_int_eq(load(&c, argv, err, sizeof(err)), 0);
	ck_assert_int_eq(c.db_pool_size, 5);
	ck_assert_str_eq(c.listen, "b:2");
	ck_assert_int_eq(c.max_headers, 50);
	cfg_free(&c);
}
END_TEST

/* "=" splits only the first time: the value may hold '=' (conninfo). */
START_TEST(test_value_with_equals)
{
	struct cfg c;
	char err[256];
	char *argv[] = {"--database=host=/tmp dbname=x", NULL};

	ck_assert_int_eq(load(&c, argv, err, sizeof(err)), 0);
	ck_assert_str_eq(c.database_url, "host=/tmp dbname=x");
	cfg_free(&c);
}
END_TEST

/* Integer settings: the bounds are inclusive; anything else names flag and range. */
static const struct {
	const char *flag;
	const char *value;
	bool ok;
} ranges[] = {
    {"db-pool", "1", true},
    {"db-pool", "64", true},
    {"db-pool", "0", false},
    {"db-pool", "65", false},
    {"db-pool", "-1", false},
    {"db-pool", "", false},
    {"db-pool", "abc", false},
    {"db-pool", "4x", false},
    {"db-pool", "4.0", false},
    {"db-pool", "0x4", false},
    {"db-pool", "99999999999999999999999", false},
    {"max-body", "1024", true},
    {"max-body", "1023", false},
    {"max-body", "1073741824", true},
    {"max-body", "1073741825", false},
    {"max-header-bytes", "1023", false},
    {"max-headers", "7", false},
    {"max-headers", "8", true},
    {"json-max-depth", "1", false},
    {"json-max-depth", "2", true},
    {"json-max-depth", "1001", false},
    {"idle-timeout", "0", false},
    {"idle-timeout", "86400", true},
    {"manifest-max-nodes", "0", false},
    {"manifest-max-nodes", "1000000", true},
    {"manifest-max-edges", "1000001", false},
    {"shutdown-grace", "0", true},
    {"shutdown-grace", "600", true},
    {"shutdown-grace", "601", false},
    {"header-timeout", "1", true},
    {"header-timeout", "3600", true},
    {"header-timeout", "0", false}, /* no deadline is not an option */
    {"header-timeout", "3601", false},
    {"header-timeout", "10s", false}, /* whole seconds, like --idle-timeout */
    {"body-timeout", "1", true},
    {"body-timeout", "86400", true},
    {"body-timeout", "0", false},
    {"body-timeout", "86401", false},
    {"max-connections", "0", true}, /* automatic */
    {"max-connections", "1", true},
    {"max-connections", "1000000", true},
    {"max-connections", "-1", false},
    {"max-connections", "1000001", false},
};

START_TEST(test_range_table)
{
	struct cfg c;
	char err[256], arg[128];
	char *argv[] = {arg, NULL};
	int rc;

	snprintf(arg, sizeof(arg), "--%s=%s", ranges[_i].flag, ranges[_i].value);
	rc = load(&c, argv, err, sizeof(err));
	if (ranges[_i].ok) {
		ck_assert_msg(rc == 0, "%s: %s", arg, err);
	} else {
		ck_assert_msg(rc == -1, "%s: accepted", arg);
		ck_assert_msg(strstr(err, ranges[_i].flag) != NULL, "%s: message %s", arg, err);
		ck_assert_msg(strstr(err, "must be an integer from") != NULL, "%s: message %s", arg,
			      err);
	}
	cfg_free(&c);
}
END_TEST

/* A bad environment value names the variable. */
START_TEST(test_env_error)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};

	setenv("CMDB_DB_POOL", "lots", 1);
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "CMDB_DB_POOL") != NULL, "message: %s", err);
	ck_assert_msg(strstr(err, "lots") != NULL, "message: %s", err);
	cfg_free(&c);
}
END_TEST

static const struct {
	const char *args[4];
	const char *msg;
} arg_errors[] = {
    {{"--nope", NULL}, "unknown option --nope"},
    {{"--nope=1", NULL}, "unknown option --nope"},
    {{"--list=a:1", NULL}, "unknown option --list"}, /* no prefix matching */
    {{"--listen-x=a:1", NULL}, "unknown option --listen-x"},
    {{"--LISTEN=a:1", NULL}, "unknown option"},
    {{"serve", NULL}, "unexpected argument \"serve\""},
    {{"-l", "a:1", NULL}, "unexpected argument"},
    {{"--listen", NULL}, "--listen needs a value"},
    {{"--db-pool=2", "--max-body", NULL}, "--max-body needs a value"},
    {{"--", NULL}, "unknown option"},
};

START_TEST(test_arg_error_table)
{
	struct cfg c;
	char err[256];

	ck_assert_int_eq(load(&c, (char **)arg_errors[_i].args, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, arg_errors[_i].msg) != NULL, "want \"%s\", got \"%s\"",
		      arg_errors[_i].msg, err);
	cfg_free(&c);
}
END_TEST

/* A small error buffer is filled but never overrun. */
START_TEST(test_small_err_buffer)
{
	struct cfg c;
	char err[12];
	char *argv[] = {"--db-pool=thisisnotanumber", NULL};

	memset(err, 'Z', sizeof(err));
	cfg_defaults(&c);
	ck_assert_int_eq(cfg_load(&c, 1, argv, err, 8), -1);
	ck_assert_uint_eq(strlen(err), 7);
	ck_assert_int_eq(err[8], 'Z');
	cfg_free(&c);
}
END_TEST

START_TEST(test_free)
{
	struct cfg c;

	cfg_defaults(&c);
	cfg_free(&c);
	ck_assert_ptr_null(c.database_url);
	ck_assert_ptr_null(c.listen);
	ck_assert_ptr_null(c.log_level);
	cfg_free(&c); /* twice is harmless */
	cfg_free(NULL);
}
END_TEST

START_TEST(test_usage)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	const char *want[] = {"--database",
			      "CMDB_DATABASE_URL",
			      "--listen",
			      "CMDB_LISTEN",
			      "--db-pool",
			      "CMDB_DB_POOL",
			      "--max-body",
			      "4194304",
			      "--log-level",
			      "CMDB_LOG_LEVEL",
			      "127.0.0.1:8080",
			      "--header-timeout",
			      "CMDB_HEADER_TIMEOUT",
			      "--body-timeout",
			      "CMDB_BODY_TIMEOUT",
			      "--max-connections",
			      "CMDB_MAX_CONNECTIONS",
			      "--tls-cert",
			      "CMDB_TLS_CERT",
			      "--tls-key",
			      "CMDB_TLS_KEY",
			      "(default none)"};

	ck_assert_ptr_nonnull(f);
	cfg_usage(f);
	fclose(f);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_msg(strstr(buf, want[i]) != NULL, "usage lacks %s:\n%s", want[i], buf);
	free(buf);
}
END_TEST

/* ------------------------------------------------------------------ TLS */

/* Off by default; from flags or the environment; cert and key go together. */
START_TEST(test_tls_settings)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};
	char *both[] = {"--tls-cert", "/etc/c.pem", "--tls-key=/etc/k.pem", NULL};

	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.tls_cert, "");
	ck_assert_str_eq(c.tls_key, "");
	ck_assert_int_eq(cfg_check(&c, err, sizeof(err)), 0);
	cfg_free(&c);

	ck_assert_int_eq(load(&c, both, err, sizeof(err)), 0);
	ck_assert_str_eq(c.tls_cert, "/etc/c.pem");
	ck_assert_str_eq(c.tls_key, "/etc/k.pem");
	ck_assert_int_eq(cfg_check(&c, err, sizeof(err)), 0);
	cfg_free(&c);

	setenv("CMDB_TLS_CERT", "/env/c.pem", 1);
	setenv("CMDB_TLS_KEY", "/env/k.pem", 1);
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_str_eq(c.tls_cert, "/env/c.pem");
	ck_assert_str_eq(c.tls_key, "/env/k.pem");
	ck_assert_int_eq(cfg_check(&c, err, sizeof(err)), 0);
	cfg_free(&c);

	/* a flag beats the environment */
	ck_assert_int_eq(load(&c, both, err, sizeof(err)), 0);
	ck_assert_str_eq(c.tls_cert, "/etc/c.pem");
	cfg_free(&c);
}
END_TEST

static const struct {
	const char *args[3];
	const char *env_cert, *env_key;
	const char *missing; /* NULL: accepted */
} tls_pairs[] = {
    {{"--tls-cert=/c", NULL}, NULL, NULL, "--tls-key is missing"},
    {{"--tls-key=/k", NULL}, NULL, NULL, "--tls-cert is missing"},
    {{NULL}, "/c", NULL, "--tls-key is missing"},
    {{NULL}, NULL, "/k", "--tls-cert is missing"},
    {{"--tls-key=/k", NULL}, "/c", NULL, NULL},			  /* one from each source */
    {{"--tls-cert=", NULL}, "/c", "/k", "--tls-cert is missing"}, /* emptied by a flag */
    {{"--tls-cert=", "--tls-key=", NULL}, "/c", "/k", NULL},	  /* both off */
};

START_TEST(test_tls_pair_table)
{
	struct cfg c;
	char err[256];
	int rc;

	if (tls_pairs[_i].env_cert != NULL)
		setenv("CMDB_TLS_CERT", tls_pairs[_i].env_cert, 1);
	if (tls_pairs[_i].env_key != NULL)
		setenv("CMDB_TLS_KEY", tls_pairs[_i].env_key, 1);
	ck_assert_int_eq(load(&c, (char **)tls_pairs[_i].args, err, sizeof(err)), 0);
	rc = cfg_check(&c, err, sizeof(err));
	if (tls_pairs[_i].missing == NULL) {
		ck_assert_msg(rc == 0, "case %d rejected: %s", _i, err);
	} else {
		ck_assert_msg(rc == -1, "case %d accepted", _i);
		ck_assert_msg(strstr(err, tls_pairs[_i].missing) != NULL, "case %d: %s", _i, err);
		ck_assert_msg(strstr(err, "go together") != NULL, "case %d: %s", _i, err);
	}
	cfg_free(&c);
}
END_TEST

/* ------------------------------------------------------------------ listen */

static const struct {
	const char *listen;
	const char *host; /* NULL: rejected */
	int port;
} listens[] = {
    {"127.0.0.1:8080", "127.0.0.1", 8080},
    {"localhost:1", "localhost", 1},
    {"0.0.0.0:65535", "0.0.0.0", 65535},
    {"host:0", "host", 0}, /* port 0: the kernel picks one */
    {":8080", NULL, 0},
    {"host", NULL, 0},
    {"", NULL, 0},
    {"host:", NULL, 0},
    {"host:65536", NULL, 0},
    {"host:-1", NULL, 0},
    {"host:80x", NULL, 0},
    {"host:x80", NULL, 0},
    {"host:99999999999999999999", NULL, 0},
};

START_TEST(test_listen_table)
{
	char *host = NULL;
	int port = -7;
	int rc = cfg_split_listen(listens[_i].listen, &host, &port);

	if (listens[_i].host == NULL) {
		ck_assert_msg(rc == -1, "\"%s\": accepted", listens[_i].listen);
	} else {
		ck_assert_msg(rc == 0, "\"%s\": rejected", listens[_i].listen);
		ck_assert_str_eq(host, listens[_i].host);
		ck_assert_int_eq(port, listens[_i].port);
	}
	free(host);
}
END_TEST

/*
 * IPv6: "[::1]:8080" must give the host "::1" — http.c passes the host to
 * evhttp_bind_socket_with_handle(), whose getaddrinfo() does not take brackets.
 */
START_TEST(test_listen_ipv6)
{
	char *host = NULL, got[64];
	int port = 0;

	ck_assert_int_eq(cfg_split_listen("[::1]:8080", &host, &port), 0);
	snprintf(got, sizeof(got), "%s", host);
	free(host);
	ck_assert_int_eq(port, 8080);
	ck_assert_str_eq(got, "::1");
}
END_TEST

/* Staleness settings are durations (SPEC §5): off by default, units as --expires. */
static const struct {
	const char *value;
	long seconds; /* -1: refused */
} durations[] = {
    {"off", 0},	    {"0", 0},	{"2s", 2},   {"90m", 5400}, {"36h", 129600},
    {"7d", 604800}, {"", -1},	{"5", -1},   {"-1h", -1},   {"1h30m", -1},
    {"0s", -1},	    {"1w", -1}, {"OFF", -1},
};

START_TEST(test_duration_table)
{
	struct cfg c;
	char err[256], flag[64];
	char *argv[] = {flag, NULL};

	snprintf(flag, sizeof(flag), "--source-ttl=%s", durations[_i].value);
	if (durations[_i].seconds < 0) {
		ck_assert_int_eq(load(&c, argv, err, sizeof(err)), -1);
		ck_assert_msg(strstr(err, "source-ttl") != NULL && strstr(err, "duration") != NULL,
			      "error names the setting and says what it wants: %s", err);
	} else {
		ck_assert_int_eq(load(&c, argv, err, sizeof(err)), 0);
		ck_assert_int_eq(c.source_ttl, durations[_i].seconds);
		ck_assert_int_eq(c.orphan_purge_after, 0);
	}
	cfg_free(&c);
}
END_TEST

START_TEST(test_duration_env)
{
	struct cfg c;
	char err[256];
	char *none[] = {NULL};

	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_int_eq(c.source_ttl, 0); /* default off */
	ck_assert_int_eq(c.orphan_purge_after, 0);
	cfg_free(&c);
	setenv("CMDB_ORPHAN_PURGE_AFTER", "7d", 1);
	ck_assert_int_eq(load(&c, none, err, sizeof(err)), 0);
	ck_assert_int_eq(c.orphan_purge_after, 7 * 86400);
	cfg_free(&c);
}
END_TEST

Suite *
suite_config(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("unit");

	tcase_add_checked_fixture(tc, clear_env, clear_env);
#define N(a) (int)(sizeof(a) / sizeof((a)[0]))
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_env);
	tcase_add_test(tc, test_read_database);
	tcase_add_test(tc, test_flags);
	tcase_add_test(tc, test_precedence);
	tcase_add_test(tc, test_value_with_equals);
	tcase_add_loop_test(tc, test_range_table, 0, N(ranges));
	tcase_add_test(tc, test_env_error);
	tcase_add_loop_test(tc, test_arg_error_table, 0, N(arg_errors));
	tcase_add_test(tc, test_small_err_buffer);
	tcase_add_test(tc, test_free);
	tcase_add_test(tc, test_usage);
	tcase_add_test(tc, test_tls_settings);
	tcase_add_loop_test(tc, test_tls_pair_table, 0, N(tls_pairs));
	tcase_add_loop_test(tc, test_listen_table, 0, N(listens));
	tcase_add_test(tc, test_listen_ipv6);
	tcase_add_loop_test(tc, test_duration_table, 0, N(durations));
	tcase_add_test(tc, test_duration_env);
#undef N
	suite_add_tcase(s, tc);
	return s;
}
