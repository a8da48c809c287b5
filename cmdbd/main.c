/*
 * main.c — the cmdbd command line: serve, migrate, token, verify, version.
 *
 * Configuration comes from defaults, the environment (CMDB_*), then flags (see
 * config.c). Only `serve` runs an event loop; migrate and token are short blocking
 * programs over one libpq connection; verify is a short HTTP client of a running
 * server.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cmd_token.h"
#include "config.h"
#include "log.h"
#include "migrate.h"
#include "server.h"
#include "verify.h"

#ifndef CMDB_VERSION
#define CMDB_VERSION "0.1.0"
#endif

static void
usage(FILE *out)
{
	fprintf(out, "usage: cmdbd serve [--listen HOST:PORT] [options]\n"
		     "       cmdbd migrate [--status] [--database CONNINFO]\n"
		     "       cmdbd token create --name N --scope read|write|admin [--source GLOB] "
		     "[--expires 90d]\n"
		     "       cmdbd token list | token revoke NAME\n"
		     "       cmdbd verify [--url URL] [--token-file FILE] [--limit N] [--repair]\n"
		     "       cmdbd version\n\n"
		     "options (flag, environment, meaning):\n");
	cfg_usage(out);
}

/* Connects for a CLI command; prints the reason and returns NULL on failure. */
static PGconn *
connect_cli(const struct cfg *cfg)
{
	PGconn *conn = PQconnectdb(cfg->database_url);

	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "cmdbd: cannot connect to the database: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, NULL, NULL);
	return conn;
}

/*
 * Pulls the options cmdbd itself understands (--database, --log-level) out of a
 * subcommand's argv so the rest can go to the subcommand. Returns the new argc.
 */
static int
take_common(struct cfg *cfg, int argc, char **argv, char *err, size_t errlen)
{
	int out = 0;

	for (int i = 0; i < argc; i++) {
		if ((strcmp(argv[i], "--database") == 0) && i + 1 < argc) {
			char *pair[2] = {argv[i], argv[i + 1]};

			if (cfg_load(cfg, 2, pair, err, errlen) != 0)
				return -1;
			i++;
		} else if (strncmp(argv[i], "--database=", 11) == 0) {
			if (cfg_load(cfg, 1, &argv[i], err, errlen) != 0)
				return -1;
		} else {
			argv[out++] = argv[i];
		}
	}
	return out;
}

static void
silent_notice(void *arg, const char *msg)
{
	(void)arg;
	(void)msg;
}

int
main(int argc, char **argv)
{
	struct cfg cfg;
	char err[512];
	const char *cmd = argc > 1 ? argv[1] : NULL;
	int rc = 2;
	int lvl;

	cfg_defaults(&cfg);
	if (cmd == NULL || strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
	    strcmp(cmd, "-h") == 0) {
		usage(cmd ? stdout : stderr);
		cfg_free(&cfg);
		return cmd ? 0 : 2;
	}
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("cmdbd %s (schema %d)\n", CMDB_VERSION, migrate_latest_version());
		cfg_free(&cfg);
		return 0;
	}
	for (int i = 2; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			cfg_free(&cfg);
			return 0;
		}
	if (strcmp(cmd, "serve") == 0) {
		if (cfg_load(&cfg, argc - 2, argv + 2, err, sizeof(err)) != 0 ||
		    cfg_check(&cfg, err, sizeof(err)) != 0) {
			fprintf(stderr, "cmdbd serve: %s\n", err);
			usage(stderr);
			goto out;
		}
		lvl = log_level_parse(cfg.log_level);
		if (lvl < 0) {
			fprintf(stderr,
				"cmdbd serve: log-level must be debug, info, warn or error\n");
			goto out;
		}
		log_set_level((enum log_level)lvl);
		rc = server_run(&cfg) == 0 ? 0 : 1;
	} else if (strcmp(cmd, "verify") == 0) {
		/* The serve address (CMDB_LISTEN) is where the server is, unless told. */
		if (cfg_load(&cfg, 0, NULL, err, sizeof(err)) != 0) {
			fprintf(stderr, "cmdbd verify: %s\n", err);
			goto out;
		}
		rc = verify_cli(argc - 2, argv + 2, cfg.listen);
	} else if (strcmp(cmd, "migrate") == 0 || strcmp(cmd, "token") == 0) {
		int n = argc - 2;
		char **args = argv + 2;
		PGconn *conn;

		if (cfg_load(&cfg, 0, NULL, err, sizeof(err)) != 0 ||
		    (n = take_common(&cfg, n, args, err, sizeof(err))) < 0) {
			fprintf(stderr, "cmdbd %s: %s\n", cmd, err);
			goto out;
		}
		if (strcmp(cmd, "migrate") == 0) {
			bool status = false;

			for (int i = 0; i < n; i++) {
				if (strcmp(args[i], "--status") == 0) {
					status = true;
				} else {
					fprintf(stderr, "cmdbd migrate: unknown argument %s\n",
						args[i]);
					goto out;
				}
			}
			if ((conn = connect_cli(&cfg)) == NULL) {
				rc = 1;
				goto out;
			}
			PQsetNoticeProcessor(conn, silent_notice, NULL);
			rc = migrate_run(conn, status, status ? stdout : stderr) == 0 ? 0 : 1;
			PQfinish(conn);
		} else {
			if (n == 0) {
				usage(stderr);
				goto out;
			}
			if ((conn = connect_cli(&cfg)) == NULL) {
				rc = 1;
				goto out;
			}
			PQsetNoticeProcessor(conn, silent_notice, NULL);
			/* token_cli wants its own name in argv[0]. */
			rc = token_cli(n + 1, args - 1, conn);
			PQfinish(conn);
		}
	} else {
		fprintf(stderr, "cmdbd: unknown command \"%s\"\n", cmd);
		usage(stderr);
	}
out:
	cfg_free(&cfg);
	return rc;
}
