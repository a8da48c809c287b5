/*
 * cmdb.c — the cmdb command-line client: command table, global options,
 * configuration (URL, token), and the one request helper every command
 * uses, which turns HTTP outcomes into exit codes and error messages.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "http.h"
#include "ref.h"
#include "table.h"

#define DEFAULT_URL "http://127.0.0.1:8080"
#define TOKEN_FILE ".cmdb/admin.token"

static int cmd_help(struct cmdb *c);
static int cmd_version(struct cmdb *c);

/* Accepted anywhere on the line, before or after the command. */
static const struct arg_spec global_options[] = {
    {"json", ARG_FLAG},	   {"url", ARG_VALUE}, {"token", ARG_VALUE},  {"timeout", ARG_VALUE},
    {"cacert", ARG_VALUE}, {"help", ARG_FLAG}, {"version", ARG_FLAG}, {NULL, ARG_FLAG},
};

static const struct arg_spec opts_none[] = {{NULL, ARG_FLAG}};
static const struct arg_spec opts_as_of[] = {{"as-of", ARG_VALUE}, {NULL, ARG_FLAG}};
static const struct arg_spec opts_diff[] = {
    {"root", ARG_VALUE},
    {"direction", ARG_VALUE},
    {"depth", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_ls[] = {
    {"kind", ARG_VALUE},   {"label", ARG_VALUE},  {"owner", ARG_VALUE}, {"orphan", ARG_FLAG},
    {"health", ARG_VALUE}, {"prefix", ARG_VALUE}, {"limit", ARG_VALUE}, {"cursor", ARG_VALUE},
    {"all", ARG_FLAG},	   {NULL, ARG_FLAG},
};
static const struct arg_spec opts_walk[] = {
    {"depth", ARG_VALUE}, {"types", ARG_VALUE}, {"limit", ARG_VALUE},
    {"watch", ARG_FLAG},  {"as-of", ARG_VALUE}, {NULL, ARG_FLAG},
};
static const struct arg_spec opts_owners[] = {
    {"watch", ARG_FLAG},
    {"as-of", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_rootcause[] = {
    {"max-depth", ARG_VALUE},
    {"as-of", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_push[] = {
    {"dry-run", ARG_FLAG},
    {"idempotency-key", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_health[] = {{"reason", ARG_VALUE}, {NULL, ARG_FLAG}};
static const struct arg_spec opts_graph[] = {
    {"depth", ARG_VALUE}, {"direction", ARG_VALUE}, {"format", ARG_VALUE},
    {"watch", ARG_FLAG},  {"as-of", ARG_VALUE},	    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_changes[] = {
    {"since", ARG_VALUE}, {"limit", ARG_VALUE}, {"follow", ARG_FLAG},
    {"wait", ARG_VALUE},  {NULL, ARG_FLAG},
};
static const struct arg_spec opts_put[] = {
    {"attr", ARG_VALUE},
    {"label", ARG_VALUE},
    {"if-match", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_link[] = {{"attr", ARG_VALUE}, {NULL, ARG_FLAG}};
static const struct arg_spec opts_edges[] = {
    {"direction", ARG_VALUE},
    {"type", ARG_VALUE},
    {"as-of", ARG_VALUE},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_deployments[] = {
    {"node", ARG_VALUE}, {"limit", ARG_VALUE}, {"cursor", ARG_VALUE},
    {"all", ARG_FLAG},	 {NULL, ARG_FLAG},
};

static const struct arg_spec opts_sources[] = {
    {"limit", ARG_VALUE},
    {"cursor", ARG_VALUE},
    {"all", ARG_FLAG},
    {NULL, ARG_FLAG},
};
static const struct arg_spec opts_drift[] = {
    {"observer", ARG_VALUE},
    {"types", ARG_VALUE},
    {NULL, ARG_FLAG},
};
#define WATCH_HELP                                                                                 \
	"  --watch         print the answer again each time it changes, until interrupted\n"
#define AS_OF_HELP "  --as-of X       the answer as of seq X, or time X (RFC 3339), from history\n"

static const struct command commands[] = {
    {"get", cmd_get, 1, 1, opts_as_of, "get REF [--as-of SEQ|TIME]",
     "show one node: attributes, labels, health, owners, edge counts", NULL},
    {"ls", cmd_ls, 0, 0, opts_ls,
     "ls [--kind K] [--label k=v]... [--owner REF] [--orphan] [--health S] [--prefix P] "
     "[--limit N] [--cursor C] [--all]",
     "list nodes",
     "  --label k=v     repeatable; all must match\n"
     "  --owner REF     nodes owned by this team/person\n"
     "  --prefix P      names starting with P\n"
     "  --all           follow next_cursor to the end (else one page)\n"},
    {"owners", cmd_owners, 1, 1, opts_owners, "owners REF [--watch] [--as-of SEQ|TIME]",
     "who owns REF, with contacts, the rule that found them and the chain", WATCH_HELP AS_OF_HELP},
    {"dependents", cmd_dependents, 1, 1, opts_walk,
     "dependents REF [--depth N] [--types T,...] [--limit N] [--watch] [--as-of SEQ|TIME]",
     "everything impacted if REF fails (transitively)",
     "  --types T,...   impact types to follow: " MODEL_IMPACT_TYPES(
	 MODEL_X_STR, ",") "\n" WATCH_HELP AS_OF_HELP},
    {"dependencies", cmd_dependencies, 1, 1, opts_walk,
     "dependencies REF [--depth N] [--types T,...] [--limit N] [--watch] [--as-of SEQ|TIME]",
     "everything REF needs (transitively)", WATCH_HELP AS_OF_HELP},
    {"path", cmd_path, 2, 2, opts_as_of, "path FROM TO [--as-of SEQ|TIME]",
     "shortest chain of needs from FROM to TO", AS_OF_HELP},
    {"rootcause", cmd_rootcause, 0, -1, opts_rootcause,
     "rootcause [REF...] [--max-depth N] [--as-of SEQ|TIME]",
     "rank the likely causes of a set of failing nodes (none: all then down or degraded)",
     AS_OF_HELP},
    {"push", cmd_push, 1, 1, opts_push, "push FILE|- [--dry-run] [--idempotency-key K]",
     "apply a manifest (from FILE, or stdin with -)",
     "  --dry-run       report what would change; write nothing\n"},
    {"health", cmd_health, 2, 2, opts_health, "health REF STATE [--reason TEXT]",
     "set a node's health: " MODEL_HEALTH_LIST, NULL},
    {"graph", cmd_graph, 1, 1, opts_graph,
     "graph REF [--depth N] [--direction dependents|dependencies|both] [--format dot|json] "
     "[--watch] [--as-of SEQ|TIME]",
     "the subgraph around REF (dot by default: cmdb graph X | dot -Tsvg > map.svg)",
     WATCH_HELP AS_OF_HELP},
    {"changes", cmd_changes, 0, 0, opts_changes, "changes [--since N] [--limit N] [--follow]",
     "the change feed, one line per change: seq at actor op ref",
     "  --since N       changes after seq N (default 0: from the start)\n"
     "  --follow        keep long-polling for new changes until interrupted\n"
     "                  (with --json: one change object per line)\n"},
    {"put", cmd_put, 1, 1, opts_put,
     "put REF [--attr k=v | --attr k:=JSON]... [--label k=v]... [--if-match VERSION]",
     "create or update a node by hand (--attr and --label sets replace the stored ones)", NULL},
    {"rm", cmd_rm, 1, 1, opts_none, "rm REF", "delete a node and its edges", NULL},
    {"link", cmd_link, 3, 3, opts_link, "link FROM TYPE TO [--attr k=v | --attr k:=JSON]...",
     "create or update an edge (TYPE: " MODEL_EDGE_TYPES(MODEL_X_STR, " ") ")", NULL},
    {"unlink", cmd_unlink, 3, 3, opts_none, "unlink FROM TYPE TO", "delete an edge", NULL},
    {"edges", cmd_edges, 1, 1, opts_edges,
     "edges REF [--direction in|out|both] [--type T] [--as-of SEQ|TIME]", "the edges of one node",
     NULL},
    {"deployments", cmd_deployments, 0, 0, opts_deployments,
     "deployments [--node REF] [--limit N] [--cursor C] [--all]",
     "recorded deployments, newest first", NULL},
    {"sources", cmd_sources, 0, 0, opts_sources, "sources [--limit N] [--cursor C] [--all]",
     "manifest sources: last applied, TTL, expiry, what each asserts", NULL},
    {"drift", cmd_drift, 0, 0, opts_drift, "drift [--observer observed:NAME] [--types T,...]",
     "edges observed but declared by no source, and declared edges no observer saw",
     "  --observer S    one observed source (default: every observed: source)\n"
     "  --types T,...   edge types checked for unobserved (default depends_on,connects_to)\n"},
    {"diff", cmd_diff, 1, 2, opts_diff,
     "diff FROM [TO] [--root REF] [--direction dependents|dependencies] [--depth N]",
     "what changed between two points (seq, RFC 3339 time or deployment:ID; TO: now)",
     "  --root REF      also: the nodes that entered (+) or left (-) REF's reach\n"
     "  --direction D   which reach: dependents (default) or dependencies\n"},
    {"help", cmd_help, 0, 1, opts_none, "help [COMMAND]", "show help", NULL},
    {"version", cmd_version, 0, 0, opts_none, "version", "print the client version", NULL},
};

#define NCOMMANDS (sizeof commands / sizeof *commands)

static const struct command *
find_command(const char *name)
{
	for (size_t i = 0; i < NCOMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			return &commands[i];
	return NULL;
}

/* ------------------------------------------------------------------ help */

static void
print_general_help(FILE *f)
{
	fputs("usage: cmdb [--url URL] [--token TOKEN] [--json] COMMAND [ARGS]\n\n"
	      "Commands:\n",
	      f);
	for (size_t i = 0; i < NCOMMANDS; i++)
		fprintf(f, "  %-13s %s\n", commands[i].name, commands[i].summary);
	fputs("\nGlobal options (anywhere on the line):\n"
	      "  --json          print the server's JSON reply instead of a table\n"
	      "  --url URL       server (env CMDB_URL, default " DEFAULT_URL ")\n"
	      "  --token TOKEN   bearer token (env CMDB_TOKEN, else " TOKEN_FILE " in the\n"
	      "                  current directory or a parent)\n"
	      "  --timeout SEC   seconds the whole request may take (default 30; connecting\n"
	      "                  has its own 5 s limit)\n"
	      "  --cacert FILE   CA certificates (PEM) to verify an https server with (env\n"
	      "                  CMDB_CACERT; default: the system's). Proxies come from\n"
	      "                  https_proxy, http_proxy, all_proxy and no_proxy.\n"
	      "\nREF is KIND/NAME, e.g. service/billing-api or database/pg-main:5432.\n"
	      "Exit: 0 ok, 1 not found, 2 usage, 3 auth, 4 server or network error.\n"
	      "Run 'cmdb help COMMAND' for a command's options.\n",
	      f);
}

static void
print_command_help(const struct command *cmd, FILE *f)
{
	fprintf(f, "usage: cmdb %s\n\n%s\n", cmd->usage, cmd->summary);
	if (cmd->help)
		fprintf(f, "\n%s", cmd->help);
}

static int
cmd_help(struct cmdb *c)
{
	if (c->args->npos == 0) {
		print_general_help(stdout);
		return CMDB_EXIT_OK;
	}
	const struct command *cmd = find_command(c->args->pos[0]);
	if (cmd == NULL)
		return cmdb_fail(CMDB_EXIT_USAGE, "unknown command '%s' (see cmdb help)",
				 c->args->pos[0]);
	print_command_help(cmd, stdout);
	return CMDB_EXIT_OK;
}

static int
cmd_version(struct cmdb *c)
{
	(void)c;
	printf("cmdb %s\n", CMDB_VERSION);
	return CMDB_EXIT_OK;
}

/* ---------------------------------------------------------- diagnostics */

int
cmdb_fail(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cmdb: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	return code;
}

int
cmdb_usage(const struct cmdb *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("cmdb: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	if (c && c->cmd)
		fprintf(stderr, "usage: cmdb %s\n", c->cmd->usage);
	return CMDB_EXIT_USAGE;
}

int
cmdb_bad_reply(const struct cmdb_reply *r, const char *what)
{
	const char *rid = r->http.request_id;
	return cmdb_fail(CMDB_EXIT_SERVER, "unexpected reply from the server: %s%s%s%s", what,
			 rid ? " (request id " : "", rid ? rid : "", rid ? ")" : "");
}

char *
cmdb_dump(const json_t *body)
{
	char *s = json_dumps(body, JSON_COMPACT);
	if (s == NULL) {
		fputs("cmdb: out of memory\n", stderr);
		exit(CMDB_EXIT_SERVER);
	}
	return s;
}

void
cmdb_print_json(const json_t *j)
{
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_ENCODE_ANY);
	if (s != NULL) {
		fputs(s, stdout);
		fputc('\n', stdout);
		free(s);
	}
}

int
cmdb_ref_path(const struct cmdb *c, struct buf *b, const char *ref)
{
	char err[512];
	if (cl_ref_path(b, ref, err, sizeof err) < 0)
		return cmdb_usage(c, "%s", err);
	return 0;
}

int
cmdb_number(const struct cmdb *c, const char *name, long long min, long long max, long long *out)
{
	char err[256];
	int rc = cl_args_number(c->args, name, min, max, out, err, sizeof err);
	if (rc < 0)
		cmdb_usage(c, "%s", err);
	return rc;
}

/* -------------------------------------------------------------- requests */

static int
exit_code_for_status(int status)
{
	if (status == 404)
		return CMDB_EXIT_NOT_FOUND;
	if (status == 400)
		return CMDB_EXIT_USAGE;
	if (status == 401 || status == 403)
		return CMDB_EXIT_AUTH;
	return CMDB_EXIT_SERVER;
}

/* Prints the details of an error body, one item per line, compact JSON. */
static void
print_error_details(const json_t *details)
{
	if (details == NULL || json_is_null(details))
		return;
	if (json_is_array(details)) {
		size_t i;
		json_t *d;
		json_array_foreach((json_t *)details, i, d)
		{
			char *s = json_dumps(d, JSON_COMPACT | JSON_ENCODE_ANY);
			char *clean = cl_text_sanitize(s ? s : "?");
			fprintf(stderr, "cmdb:   %s\n", clean);
			free(clean);
			free(s);
		}
		return;
	}
	char *s = json_dumps(details, JSON_COMPACT | JSON_ENCODE_ANY);
	char *clean = cl_text_sanitize(s ? s : "?");
	fprintf(stderr, "cmdb:   details: %s\n", clean);
	free(clean);
	free(s);
}

/* Reports a non-2xx reply; returns its exit code. Everything the server
 * sent is sanitized before it reaches the terminal. */
static int
report_http_error(const struct cmdb *c, const struct http_response *h)
{
	json_error_t jerr;
	json_t *body = h->body_len ? json_loadb(h->body, h->body_len, 0, &jerr) : NULL;
	json_t *error = json_object_get(body, "error");
	const char *message = cl_jstr(error, "message");
	const char *code = cl_jstr(error, "code");
	const char *rid = cl_jstr(error, "request_id");
	struct buf line = BUF_INIT;
	if (rid == NULL)
		rid = h->request_id;

	if (message != NULL) {
		cl_buf_printf(&line, "%s (HTTP %d%s%s", message, h->status, code ? " " : "",
			      code ? code : "");
	} else {
		/* not our error shape: show the start of whatever came back */
		cl_buf_printf(&line, "the server answered HTTP %d %s", h->status,
			      h->reason ? h->reason : "");
		if (h->body_len) {
			cl_buf_puts(&line, ": ");
			cl_buf_append(&line, h->body, h->body_len > 200 ? 200 : h->body_len);
		}
		cl_buf_puts(&line, h->body_len ? " (not a JSON error body" : " (empty body");
	}
	if (rid)
		cl_buf_printf(&line, ", request id %s", rid);
	cl_buf_putc(&line, ')');
	char *clean = cl_text_sanitize(cl_buf_str(&line));
	fprintf(stderr, "cmdb: %s\n", clean);
	free(clean);
	cl_buf_free(&line);

	if (error && h->status != 404) /* a 404's message already names the missing thing */
		print_error_details(json_object_get(error, "details"));
	if (h->status == 401)
		fprintf(
		    stderr, "cmdb: hint: %s\n",
		    c->token
			? "the token was refused; check CMDB_TOKEN or --token"
			: "no token found: set CMDB_TOKEN, pass --token, or run where " TOKEN_FILE
			  " exists");
	if (c->json_errors && body != NULL)
		cmdb_print_json(body);
	json_decref(body);
	return exit_code_for_status(h->status);
}

void
cmdb_reply_free(struct cmdb_reply *r)
{
	cl_http_response_free(&r->http);
	json_decref(r->json);
	r->json = NULL;
}

int
cmdb_request(struct cmdb *c, const struct cmdb_call *call, struct cmdb_reply *out)
{
	char err[512];
	struct buf target = BUF_INIT, auth = BUF_INIT;
	const char *hdrs[32];
	size_t n = 0;
	int rc = CMDB_EXIT_SERVER;
	*out = (struct cmdb_reply){{0, NULL, NULL, 0, NULL, NULL, NULL}, NULL};
	c->last_status = 0;

	cl_buf_puts(&target, call->target);
	if (c->token) {
		cl_buf_printf(&auth, "Bearer %s", c->token);
		hdrs[n++] = "Authorization";
		hdrs[n++] = cl_buf_str(&auth);
	}
	hdrs[n++] = "User-Agent";
	hdrs[n++] = "cmdb/" CMDB_VERSION;
	hdrs[n++] = "Accept";
	hdrs[n++] = call->raw ? "*/*" : "application/json";
	if (call->body) {
		hdrs[n++] = "Content-Type";
		hdrs[n++] = "application/json";
	}
	for (const char *const *h = call->headers; h && h[0] && n + 2 < 32; h += 2) {
		hdrs[n++] = h[0];
		hdrs[n++] = h[1];
	}
	hdrs[n] = NULL;

	struct http_request rq = {
	    .method = call->method,
	    .target = cl_buf_str(&target),
	    .headers = hdrs,
	    .body = call->body,
	    .body_len = call->body_len,
	    .send_body = strcmp(call->method, "POST") == 0 || strcmp(call->method, "PUT") == 0,
	};
	struct http_opts opts = {
	    .connect_ms = CMDB_CONNECT_TIMEOUT_MS,
	    .timeout_ms = call->timeout_ms ? call->timeout_ms : c->timeout_ms,
	    .cacert = c->cacert,
	};
	if (cl_http_check_request(&rq, err, sizeof err) < 0) {
		rc = cmdb_fail(CMDB_EXIT_USAGE, "%s", err);
		goto out;
	}
	if (cl_http_perform(&c->url, &rq, &opts, &out->http, err, sizeof err) < 0) {
		rc = cmdb_fail(CMDB_EXIT_SERVER, "%s", err);
		goto out;
	}
	c->last_status = out->http.status;
	if (out->http.status < 200 || out->http.status > 299) {
		rc = report_http_error(c, &out->http);
		cl_http_response_free(&out->http);
		goto out;
	}
	if (!call->raw && out->http.body_len > 0) {
		json_error_t jerr;
		out->json = json_loadb(out->http.body, out->http.body_len, 0, &jerr);
		if (out->json == NULL) {
			const char *rid = out->http.request_id;
			rc = cmdb_fail(CMDB_EXIT_SERVER,
				       "the server's reply is not valid JSON (HTTP %d%s%s): %s",
				       out->http.status, rid ? ", request id " : "", rid ? rid : "",
				       jerr.text);
			cl_http_response_free(&out->http);
			goto out;
		}
	}
	rc = CMDB_EXIT_OK;
out:
	cl_buf_free(&target);
	cl_buf_free(&auth);
	return rc;
}

/* --------------------------------------------------------- configuration */

/* Reads the first line of path, trimmed; NULL when missing or empty. */
static char *
read_token_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	char line[4096];
	char *tok = NULL;
	if (fgets(line, sizeof line, f) != NULL) {
		size_t n = strcspn(line, "\r\n");
		while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
			n--;
		if (n > 0)
			tok = cl_xstrndup(line, n);
	}
	fclose(f);
	return tok;
}

/* Looks for TOKEN_FILE in the current directory and each parent. */
static char *
find_token_file(void)
{
	char *dir = getcwd(NULL, 0);
	char *tok = NULL;
	if (dir == NULL)
		return NULL;
	for (;;) {
		struct buf path = BUF_INIT;
		cl_buf_printf(&path, "%s/%s", strcmp(dir, "/") == 0 ? "" : dir, TOKEN_FILE);
		tok = read_token_file(cl_buf_str(&path));
		cl_buf_free(&path);
		char *slash = strrchr(dir, '/');
		if (tok != NULL || slash == NULL || strcmp(dir, "/") == 0)
			break;
		if (slash == dir)
			slash[1] = '\0'; /* parent is "/" */
		else
			*slash = '\0';
	}
	free(dir);
	return tok;
}

/* Fills the URL, token and timeout from flags and environment. Returns an exit code. */
static int
configure(struct cmdb *c)
{
	char err[512];
	const char *url = cl_args_get(c->args, "url");
	if (url == NULL)
		url = getenv("CMDB_URL");
	if (url == NULL || url[0] == '\0')
		url = DEFAULT_URL;
	if (cl_http_url_parse(url, &c->url, err, sizeof err) < 0)
		return cmdb_usage(c, "%s", err);

	const char *tok = cl_args_get(c->args, "token");
	if (tok == NULL)
		tok = getenv("CMDB_TOKEN");
	c->token = tok && tok[0] ? cl_xstrdup(tok) : find_token_file();

	long long secs = 30;
	if (cmdb_number(c, "timeout", 1, 3600, &secs) < 0)
		return CMDB_EXIT_USAGE;
	c->timeout_ms = (int)secs * 1000;

	c->cacert = cl_args_get(c->args, "cacert");
	if (c->cacert == NULL)
		c->cacert = getenv("CMDB_CACERT");
	if (c->cacert != NULL && c->cacert[0] == '\0')
		c->cacert = NULL;
	if (c->cacert != NULL && access(c->cacert, R_OK) != 0)
		return cmdb_usage(c, "cannot read the CA file '%s': %s", c->cacert,
				  strerror(errno));
	return CMDB_EXIT_OK;
}

/* Flushes stdout; a failed write (full disk, closed pipe) is an error. */
static int
finish_output(int rc)
{
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno == EPIPE)
			return rc;
		return cmdb_fail(rc ? rc : CMDB_EXIT_SERVER, "writing output failed: %s",
				 strerror(errno));
	}
	return rc;
}

int
main(int argc, char **argv)
{
	char err[512];
	struct args args = {NULL, 0, NULL, 0};
	struct cmdb c = {.args = &args};
	int rc;

	int at = cl_args_find_command(argc, argv, global_options, err, sizeof err);
	if (at < 0) {
		rc = cmdb_fail(CMDB_EXIT_USAGE, "%s (see cmdb help)", err);
		goto out;
	}
	if (at > 0) {
		c.cmd = find_command(argv[at]);
		if (c.cmd == NULL) {
			rc = cmdb_fail(CMDB_EXIT_USAGE, "unknown command '%s' (see cmdb help)",
				       argv[at]);
			goto out;
		}
	}
	if (cl_args_parse(argc, argv, at, global_options, c.cmd ? c.cmd->options : NULL, &args, err,
			  sizeof err) < 0) {
		rc = cmdb_usage(&c, "%s", err);
		goto out;
	}
	if (c.cmd == NULL) {
		if (cl_args_has(&args, "version"))
			rc = cmd_version(&c);
		else if (cl_args_has(&args, "help") || args.npos == 0) {
			print_general_help(cl_args_has(&args, "help") ? stdout : stderr);
			rc = cl_args_has(&args, "help") ? CMDB_EXIT_OK : CMDB_EXIT_USAGE;
		} else
			rc = cmdb_fail(CMDB_EXIT_USAGE, "no command given (see cmdb help)");
		goto out;
	}
	if (cl_args_has(&args, "help")) {
		print_command_help(c.cmd, stdout);
		rc = CMDB_EXIT_OK;
		goto out;
	}
	if ((int)args.npos < c.cmd->min_pos ||
	    (c.cmd->max_pos >= 0 && (int)args.npos > c.cmd->max_pos)) {
		rc = args.npos < (size_t)c.cmd->min_pos
			 ? cmdb_usage(&c, "%s: missing argument", c.cmd->name)
			 : cmdb_usage(&c, "%s: unexpected argument '%s'", c.cmd->name,
				      args.pos[c.cmd->max_pos]);
		goto out;
	}
	c.json = cl_args_has(&args, "json");
	c.json_errors = c.json;
	rc = configure(&c);
	if (rc == CMDB_EXIT_OK && cl_http_global_init() < 0)
		rc = cmdb_fail(CMDB_EXIT_SERVER, "cannot initialise libcurl");
	else if (rc == CMDB_EXIT_OK) {
		rc = c.cmd->run(&c);
		cl_http_global_cleanup();
	}
out:
	rc = finish_output(rc);
	cl_args_free(&args);
	cl_http_url_free(&c.url);
	free(c.token);
	return rc;
}
