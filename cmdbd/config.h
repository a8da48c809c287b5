/*
 * config.h — server settings from defaults, then the environment, then flags.
 *
 * One table (config.c) names each setting with its flag, environment variable,
 * type, default and target field together, pgbouncer-style. cfg_load() never exits
 * the process; it reports the first bad setting in err.
 */
#ifndef CMDB_CONFIG_H
#define CMDB_CONFIG_H

#include "attrs.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct cfg {
	char *database_url;	 /* libpq conninfo; CMDB_DATABASE_URL */
	char *read_database_url; /* CMDB_READ_DATABASE_URL: map, log, lists; "" = database_url */
	char *listen;		 /* host:port; CMDB_LISTEN */
	long max_body_bytes;	 /* JSON 413 above this */
	long max_header_bytes;	 /* 431/400 above this (evhttp) */
	long max_headers;	 /* header count limit */
	long json_max_depth;	 /* nesting limit */
	long idle_timeout;	 /* seconds a connection may idle */
	long header_timeout;	 /* seconds to receive a request's headers (408) */
	long body_timeout;	 /* seconds to receive its body after the headers (408) */
	long max_connections;	 /* open client connections; 0: from RLIMIT_NOFILE */
	long db_pool_size;	 /* async connections for requests */
	long manifest_max_nodes; /* per manifest */
	long manifest_max_edges; /* per manifest */
	long shutdown_grace;	 /* seconds to finish in-flight requests */
	long verify_interval;	 /* seconds between verifications with repair; 0 = none */
	long max_watchers;	 /* parked index/wait graph queries (503 beyond) */
	char *log_level;	 /* debug|info|warn|error */
	long source_ttl;	 /* seconds; 0 = off (SPEC §5 staleness) */
	long orphan_purge_after; /* seconds; 0 = off */
	char *tls_cert;		 /* PEM certificate chain; "" serves plain HTTP */
	char *tls_key;		 /* PEM private key; set with tls_cert or not at all */
	long ready_grace; /* seconds /readyz stays 200 with the read database away; 0 = off */
};

/* Fills c with defaults. Strings are static or owned by c (see cfg_free). */
void cfg_defaults(struct cfg *c);

/*
 * Applies the environment, then argv (--flag VALUE or --flag=VALUE) starting at
 * argv[0]. Returns 0, or -1 with a message in err. Unknown flags are errors.
 */
CMDB_MUST_USE int cfg_load(struct cfg *c, int argc, char **argv, char *err, size_t errlen);

/*
 * Checks the settings together once they are all loaded (cfg_load() checks each
 * alone): --tls-cert and --tls-key go together. 0, or -1 with a message in err.
 */
CMDB_MUST_USE int cfg_check(const struct cfg *c, char *err, size_t errlen);

/* Prints the settings table (flag, env, default, meaning) for --help. */
void cfg_usage(FILE *out);

void cfg_free(struct cfg *c);

/* Splits "host:port" into host (owned by caller, malloc'd) and port. -1 on bad input. */
CMDB_MUST_USE int cfg_split_listen(const char *listen, char **host, int *port);

#endif
