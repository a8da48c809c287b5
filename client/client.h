/*
 * client.h — what the cmdb command implementations share: the run
 * context, the request helper that maps HTTP outcomes to exit codes and
 * error messages, and output helpers.
 */
#ifndef CMDB_CLIENT_CLIENT_H
#define CMDB_CLIENT_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "args.h"
#include "http.h"

#ifndef CMDB_VERSION
#define CMDB_VERSION "0.1.0"
#endif

/* Exit codes (SPEC §4). */
enum {
	CMDB_EXIT_OK = 0,
	CMDB_EXIT_NOT_FOUND = 1, /* HTTP 404 */
	CMDB_EXIT_USAGE = 2,	 /* bad arguments, HTTP 400 */
	CMDB_EXIT_AUTH = 3,	 /* HTTP 401, 403 */
	CMDB_EXIT_SERVER = 4,	 /* other HTTP errors, network, bad replies */
};

#define CMDB_CONNECT_TIMEOUT_MS 5000
#define CMDB_REQUEST_TIMEOUT_MS 30000

struct command;

/* One run of the CLI. Owned by main(). */
struct cmdb {
	struct http_url url;
	char *token;		 /* owned; NULL when none was found */
	const char *cacert;	 /* --cacert or CMDB_CACERT: PEM CA bundle, or NULL */
	bool json;		 /* --json: print the server's JSON */
	bool json_errors;	 /* with --json, also print error bodies to stdout
				    (off where stdout is a JSON-lines stream) */
	int timeout_ms;		 /* per request, after connecting */
	const struct args *args; /* parsed command line (positionals exclude the command) */
	const struct command *cmd;
	int last_status; /* HTTP status of the last reply; 0 = none (network) */
};

/* A command: name, how many positionals, its options and its help. */
struct command {
	const char *name;
	int (*run)(struct cmdb *c);
	int min_pos, max_pos; /* max_pos < 0: unlimited */
	const struct arg_spec *options;
	const char *usage;   /* "get REF" */
	const char *summary; /* one line */
	const char *help;    /* option descriptions, or NULL */
};

/* A request to make. Unset fields are zero. */
struct cmdb_call {
	const char *method;
	const char *target; /* path + query, without the URL prefix */
	const char *body;   /* JSON text, or NULL */
	size_t body_len;
	const char *const *headers; /* extra name, value pairs, NULL-terminated */
	int timeout_ms;		    /* 0: c->timeout_ms */
	bool raw;		    /* do not parse a 2xx body as JSON (graph dot) */
};

/* A successful reply. json is NULL for empty or raw bodies. */
struct cmdb_reply {
	struct http_response http;
	json_t *json;
};

/*
 * Makes the request. On a 2xx reply returns CMDB_EXIT_OK with *out filled
 * (free with cmdb_reply_free). Otherwise prints "cmdb: <message>" (with the
 * request id) to stderr — and with --json the error body to stdout — and
 * returns the exit code for the failure; *out is then empty.
 */
int cmdb_request(struct cmdb *c, const struct cmdb_call *call, struct cmdb_reply *out);
void cmdb_reply_free(struct cmdb_reply *r);

/* Prints "cmdb: <message>" and the command's usage line; returns CMDB_EXIT_USAGE. */
int cmdb_usage(const struct cmdb *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "cmdb: <message>" to stderr and returns `code`. */
int cmdb_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reports a reply that lacks what the command needs; returns CMDB_EXIT_SERVER. */
int cmdb_bad_reply(const struct cmdb_reply *r, const char *what);

/* Serialises a request body compactly; the caller frees the result. */
char *cmdb_dump(const json_t *body);

/* Prints a JSON value pretty (2-space indent) with a newline to stdout. */
void cmdb_print_json(const json_t *j);

/* Appends the node path for ref to b, or reports a usage error: returns 0 or
 * CMDB_EXIT_USAGE. */
int cmdb_ref_path(const struct cmdb *c, struct buf *b, const char *ref);

/* Reads an integer option in [min, max]: 1 present, 0 absent, or a usage
 * error printed and -1 returned. */
int cmdb_number(const struct cmdb *c, const char *name, long long min, long long max,
		long long *out);

struct buf;
struct table;

/* Adds the page parameters of a list: --limit (1..1000) and the cursor. 0, or the
 * usage exit code. */
int cmdb_query_page(struct cmdb *c, struct buf *t, const char *cursor);

/*
 * Shared by the list commands (ls, deployments, sources): fetches one page (or every
 * page with --all) of the target built by target(c, cursor, buf), calling add_row for
 * each item. With --json prints the body, or for --all one object holding every item
 * and a null next_cursor.
 */
typedef void (*cmdb_row_fn)(struct table *t, const json_t *item);
int cmdb_list_pages(struct cmdb *c, int (*target)(struct cmdb *, const char *, struct buf *),
		    struct table *tab, cmdb_row_fn add_row);

/* The commands (cmd_*.c). */
int cmd_get(struct cmdb *c);
int cmd_ls(struct cmdb *c);
int cmd_put(struct cmdb *c);
int cmd_rm(struct cmdb *c);
int cmd_health(struct cmdb *c);
int cmd_edges(struct cmdb *c);
int cmd_link(struct cmdb *c);
int cmd_unlink(struct cmdb *c);
int cmd_owners(struct cmdb *c);
int cmd_dependents(struct cmdb *c);
int cmd_dependencies(struct cmdb *c);
int cmd_path(struct cmdb *c);
int cmd_rootcause(struct cmdb *c);
int cmd_graph(struct cmdb *c);
int cmd_push(struct cmdb *c);
int cmd_deployments(struct cmdb *c);
int cmd_changes(struct cmdb *c);
int cmd_sources(struct cmdb *c);
int cmd_drift(struct cmdb *c);
int cmd_diff(struct cmdb *c);

/* cmd_history.c: --as-of (SPEC §5) on the query commands. Adds as_of=V to the
 * query when --as-of V is given; prints "as of seq N (AT)" above a table when
 * the reply carries "as_of" (not with --json). */
struct buf;
void cmdb_as_of_param(const struct cmdb *c, struct buf *t);
void cmdb_as_of_note(const struct cmdb *c, const json_t *reply);

#endif
