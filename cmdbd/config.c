/*
 * config.c — the settings table and its loader (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "token.h"

/* CFG_DURATION: seconds, spelled 90d, 36h, 30m, 45s (token_parse_duration); 0 or "off" = off. */
enum cfg_type { CFG_STR, CFG_LONG, CFG_DURATION };

struct cfg_def {
	const char *flag; /* without the leading "--" */
	const char *env;
	enum cfg_type type;
	size_t offset;
	const char *def;
	long min, max;
	const char *help;
};

#define F(field) offsetof(struct cfg, field)

static const struct cfg_def defs[] = {
    {"database", "CMDB_DATABASE_URL", CFG_STR, F(database_url), "dbname=cmdb", 0, 0,
     "libpq connection string or URI"},
    {"read-database", "CMDB_READ_DATABASE_URL", CFG_STR, F(read_database_url), "", 0, 0,
     "where the map is loaded from and the change log followed, and lists read: typically a "
     "hot standby (empty: the --database)"},
    {"listen", "CMDB_LISTEN", CFG_STR, F(listen), "127.0.0.1:8080", 0, 0,
     "address to serve HTTP on (host:port)"},
    {"max-body", "CMDB_MAX_BODY", CFG_LONG, F(max_body_bytes), "4194304", 1024, 1L << 30,
     "largest request body in bytes"},
    {"max-header-bytes", "CMDB_MAX_HEADER_BYTES", CFG_LONG, F(max_header_bytes), "16384", 1024,
     1L << 20, "largest request header block in bytes"},
    {"max-headers", "CMDB_MAX_HEADERS", CFG_LONG, F(max_headers), "100", 8, 10000,
     "most request headers"},
    {"json-max-depth", "CMDB_JSON_MAX_DEPTH", CFG_LONG, F(json_max_depth), "32", 2, 1000,
     "deepest JSON nesting accepted"},
    {"idle-timeout", "CMDB_IDLE_TIMEOUT", CFG_LONG, F(idle_timeout), "75", 1, 86400,
     "seconds an idle client connection is kept"},
    {"header-timeout", "CMDB_HEADER_TIMEOUT", CFG_LONG, F(header_timeout), "10", 1, 3600,
     "seconds for a request's headers from accept, or from its first byte on a kept-alive "
     "connection; then 408"},
    {"body-timeout", "CMDB_BODY_TIMEOUT", CFG_LONG, F(body_timeout), "60", 1, 86400,
     "seconds for a request's body after its headers; then 408"},
    {"max-connections", "CMDB_MAX_CONNECTIONS", CFG_LONG, F(max_connections), "0", 0, 1000000,
     "open client connections, more get 503; 0: min(4096, open-file limit - reserve)"},
    {"db-pool", "CMDB_DB_POOL", CFG_LONG, F(db_pool_size), "4", 1, 64,
     "database connections for requests"},
    {"manifest-max-nodes", "CMDB_MANIFEST_MAX_NODES", CFG_LONG, F(manifest_max_nodes), "10000", 1,
     1000000, "most nodes in one manifest"},
    {"manifest-max-edges", "CMDB_MANIFEST_MAX_EDGES", CFG_LONG, F(manifest_max_edges), "10000", 1,
     1000000, "most edges in one manifest"},
    {"shutdown-grace", "CMDB_SHUTDOWN_GRACE", CFG_LONG, F(shutdown_grace), "10", 0, 600,
     "seconds to finish in-flight requests on SIGTERM"},
    {"verify-interval", "CMDB_VERIFY_INTERVAL", CFG_LONG, F(verify_interval), "0", 0, 604800,
     "seconds between checks of the map against the database, repairing it (0: never)"},
    {"max-watchers", "CMDB_MAX_WATCHERS", CFG_LONG, F(max_watchers), "1000", 1, 1000000,
     "most graph queries parked at once with index/wait (503 beyond)"},
    {"log-level", "CMDB_LOG_LEVEL", CFG_STR, F(log_level), "info", 0, 0,
     "debug, info, warn or error"},
    {"source-ttl", "CMDB_SOURCE_TTL", CFG_DURATION, F(source_ttl), "off", 0, 0,
     "a source whose last manifest is older expires (unless its manifest sets ttl)"},
    {"orphan-purge-after", "CMDB_ORPHAN_PURGE_AFTER", CFG_DURATION, F(orphan_purge_after), "off", 0,
     0, "delete nodes that have been orphans this long"},
    {"tls-cert", "CMDB_TLS_CERT", CFG_STR, F(tls_cert), "", 0, 0,
     "serve HTTPS with this PEM certificate chain (with --tls-key)"},
    {"tls-key", "CMDB_TLS_KEY", CFG_STR, F(tls_key), "", 0, 0,
     "the certificate's PEM private key, not encrypted (with --tls-cert)"},
    {"ready-grace", "CMDB_READY_GRACE", CFG_DURATION, F(ready_grace), "off", 0, 0,
     "/readyz stays 200 this long after the read database was last reached, the map answering "
     "reads from memory"},
};

#define NDEFS (sizeof(defs) / sizeof(defs[0]))

static int
set_value(struct cfg *c, const struct cfg_def *d, const char *value, const char *origin, char *err,
	  size_t errlen)
{
	char *target = (char *)c + d->offset;

	if (d->type == CFG_STR) {
		char *copy = strdup(value);

		if (copy == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		free(*(char **)target);
		*(char **)target = copy;
		return 0;
	} else if (d->type == CFG_DURATION) {
		long long s = 0;

		if (strcmp(value, "off") != 0 && strcmp(value, "0") != 0 &&
		    token_parse_duration(value, &s) != 0) {
			snprintf(err, errlen,
				 "%s: %s must be a duration such as 90d, 36h, 30m or 45s, or off "
				 "(got \"%s\")",
				 origin, d->flag, value);
			return -1;
		}
		*(long *)target = (long)s;
		return 0;
	} else {
		char *end;
		long v;

		errno = 0;
		v = strtol(value, &end, 10);
		if (errno != 0 || end == value || *end != '\0' || v < d->min || v > d->max) {
			snprintf(err, errlen,
				 "%s: %s must be an integer from %ld to %ld (got \"%s\")", origin,
				 d->flag, d->min, d->max, value);
			return -1;
		}
		*(long *)target = v;
		return 0;
	}
}

void
cfg_defaults(struct cfg *c)
{
	char err[16];

	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < NDEFS; i++)
		(void)set_value(c, &defs[i], defs[i].def, "default", err, sizeof(err));
}

int
cfg_load(struct cfg *c, int argc, char **argv, char *err, size_t errlen)
{
	for (size_t i = 0; i < NDEFS; i++) {
		const char *v = getenv(defs[i].env);

		if (v != NULL && *v != '\0' &&
		    set_value(c, &defs[i], v, defs[i].env, err, errlen) != 0)
			return -1;
	}
	for (int a = 0; a < argc; a++) {
		const char *arg = argv[a], *eq, *value;
		size_t nlen;
		const struct cfg_def *d = NULL;

		if (strncmp(arg, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument \"%s\"", arg);
			return -1;
		}
		arg += 2;
		eq = strchr(arg, '=');
		nlen = eq ? (size_t)(eq - arg) : strlen(arg);
		for (size_t i = 0; i < NDEFS; i++)
			if (strlen(defs[i].flag) == nlen && strncmp(defs[i].flag, arg, nlen) == 0)
				d = &defs[i];
		if (d == NULL) {
			snprintf(err, errlen, "unknown option --%.*s", (int)nlen, arg);
			return -1;
		}
		if (eq != NULL) {
			value = eq + 1;
		} else if (a + 1 < argc) {
			value = argv[++a];
		} else {
			snprintf(err, errlen, "option --%s needs a value", d->flag);
			return -1;
		}
		if (set_value(c, d, value, "flag", err, errlen) != 0)
			return -1;
	}
	return 0;
}

int
cfg_check(const struct cfg *c, char *err, size_t errlen)
{
	bool cert = c->tls_cert != NULL && *c->tls_cert != '\0';
	bool key = c->tls_key != NULL && *c->tls_key != '\0';

	if (cert != key) {
		snprintf(err, errlen,
			 "--tls-cert (CMDB_TLS_CERT) and --tls-key (CMDB_TLS_KEY) go together: "
			 "%s is missing",
			 cert ? "--tls-key" : "--tls-cert");
		return -1;
	}
	return 0;
}

void
cfg_usage(FILE *out)
{
	for (size_t i = 0; i < NDEFS; i++)
		fprintf(out, "  --%-20s %-24s %s (default %s)\n", defs[i].flag, defs[i].env,
			defs[i].help, *defs[i].def ? defs[i].def : "none");
}

void
cfg_free(struct cfg *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < NDEFS; i++) {
		if (defs[i].type == CFG_STR) {
			char **p = (char **)((char *)c + defs[i].offset);
			free(*p);
			*p = NULL;
		}
	}
}

int
cfg_split_listen(const char *listen, char **host, int *port)
{
	const char *colon = strrchr(listen, ':');
	char *end;
	long p;

	if (colon == NULL || colon == listen)
		return -1;
	errno = 0;
	p = strtol(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == colon + 1 || p < 0 || p > 65535)
		return -1;
	if (listen[0] == '[') {
		/* [v6address]:port */
		if (colon - listen < 3 || colon[-1] != ']')
			return -1;
		*host = strndup(listen + 1, (size_t)(colon - listen) - 2);
	} else {
		*host = strndup(listen, (size_t)(colon - listen));
	}
	if (*host == NULL)
		return -1;
	*port = (int)p;
	return 0;
}
