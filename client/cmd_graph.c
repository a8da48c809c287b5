/*
 * cmd_graph.c — graph queries: owners, dependents, dependencies, path,
 * rootcause, graph.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "ref.h"
#include "table.h"

/* GETs `target` and, with --json, prints the body. *r is filled on success. */
static int
get_json(struct cmdb *c, const char *target, struct cmdb_reply *r)
{
	int rc = cmdb_request(c, &(struct cmdb_call){.method = "GET", .target = target}, r);
	if (rc == 0 && c->json)
		cmdb_print_json(r->json);
	return rc;
}

/* Adds ?name=N when the integer option is given. Returns 0 or a usage code. */
static int
add_number_param(struct cmdb *c, struct buf *t, const char *option, const char *param,
		 long long min, long long max)
{
	long long v;
	int has = cmdb_number(c, option, min, max, &v);
	if (has < 0)
		return CMDB_EXIT_USAGE;
	if (has) {
		char num[32];
		snprintf(num, sizeof num, "%lld", v);
		cl_query_add(t, param, num);
	}
	return 0;
}

/* ---------------------------------------------------------------- --watch */

/* Prints one successful reply of a graph query; returns 0 or an exit code. */
typedef int (*show_fn)(struct cmdb *c, const struct cmdb_reply *r, const void *arg);

/* Seconds each long poll of --watch may wait (the server's maximum). */
#define WATCH_WAIT 60

static bool
same_body(const struct cmdb_reply *r, const char *prev, size_t prev_len)
{
	return prev != NULL && r->http.body_len == prev_len &&
	       memcmp(r->http.body, prev, prev_len) == 0;
}

/*
 * GETs `target` and shows the answer; with --watch, then long-polls with
 * index=X-Cmdb-Index&wait=60 and shows the answer again each time it changes,
 * until interrupted (SIGINT, or SIGPIPE when the reader goes away). Network
 * trouble and 5xx are retried with backoff; a 4xx (the node was deleted: 404)
 * ends the loop with its exit code.
 */
static int
query(struct cmdb *c, const char *target, bool raw, show_fn show, const void *arg)
{
	struct cmdb_reply r;
	char *index = NULL, *prev = NULL;
	size_t prev_len = 0;
	unsigned backoff = 1;
	bool watch = cl_args_has(c->args, "watch");
	int rc;

	if (!watch) {
		rc = cmdb_request(
		    c, &(struct cmdb_call){.method = "GET", .target = target, .raw = raw}, &r);
		if (rc == 0) {
			rc = show(c, &r, arg);
			cmdb_reply_free(&r);
		}
		return rc;
	}
	c->json_errors = false; /* stdout is a stream of answers */
	for (;;) {
		struct buf t = BUF_INIT;
		cl_buf_puts(&t, target);
		if (index != NULL) {
			char wait[16];
			snprintf(wait, sizeof wait, "%d", WATCH_WAIT);
			cl_query_add(&t, "index", index);
			cl_query_add(&t, "wait", wait);
		}
		/* a long poll may legitimately take `wait` seconds before any byte arrives */
		int timeout = index ? WATCH_WAIT * 1000 + c->timeout_ms : 0;
		rc = cmdb_request(c,
				  &(struct cmdb_call){.method = "GET",
						      .target = cl_buf_str(&t),
						      .raw = raw,
						      .timeout_ms = timeout},
				  &r);
		cl_buf_free(&t);
		if (rc != 0) {
			if (rc != CMDB_EXIT_SERVER || (c->last_status != 0 && c->last_status < 500))
				break;
			fprintf(stderr, "cmdb: retrying in %u s\n", backoff);
			sleep(backoff);
			backoff = backoff >= 16 ? 30 : backoff * 2;
			continue;
		}
		backoff = 1;
		if (!same_body(&r, prev, prev_len)) {
			if (prev != NULL && !c->json)
				putchar('\n');
			rc = show(c, &r, arg);
			free(prev);
			prev_len = r.http.body_len;
			prev = malloc(prev_len + 1);
			if (prev != NULL)
				memcpy(prev, r.http.body, prev_len);
		}
		free(index);
		index = r.http.cmdb_index ? cl_xstrdup(r.http.cmdb_index) : NULL;
		cmdb_reply_free(&r);
		if (rc != 0)
			break;
		if (fflush(stdout) != 0) {
			rc = CMDB_EXIT_OK; /* the reader went away */
			break;
		}
		if (index == NULL) {
			rc = cmdb_fail(CMDB_EXIT_SERVER, "the server does not support --watch "
							 "(no X-Cmdb-Index in its reply)");
			break;
		}
	}
	free(index);
	free(prev);
	return rc;
}

/* --------------------------------------------------------------- owners */

static int
show_owners(struct cmdb *c, const struct cmdb_reply *r, const void *arg)
{
	static const char *const head[] = {"OWNER", "RULE", "CONTACTS", "VIA"};
	const char *ref = arg;
	if (c->json) {
		cmdb_print_json(r->json);
		return 0;
	}
	cmdb_as_of_note(c, r->json);
	const json_t *owners = json_object_get(r->json, "owners");
	if (!json_is_array(owners))
		return cmdb_bad_reply(r, "no \"owners\" array");
	if (json_array_size(owners) == 0) {
		printf("no owners found for %s\n", ref);
		return 0;
	}
	struct table *t = cl_table_new(4, head);
	size_t i;
	json_t *o;
	json_array_foreach((json_t *)owners, i, o)
	{
		char *contacts = cl_fmt_contacts(json_object_get(o, "attributes"));
		char *via = cl_fmt_join(json_object_get(o, "via"), " -> ");
		const char *cells[] = {cl_jstr(o, "ref"), cl_jstr(o, "rule"), contacts, via};
		cl_table_add(t, cells);
		free(contacts);
		free(via);
	}
	cl_table_print(t, stdout);
	cl_table_free(t);
	return 0;
}

int
cmd_owners(struct cmdb *c)
{
	const char *ref = c->args->pos[0];
	struct buf path = BUF_INIT;
	int rc = cmdb_ref_path(c, &path, ref);
	if (rc == 0) {
		cl_buf_puts(&path, "/owners");
		cmdb_as_of_param(c, &path);
		rc = query(c, cl_buf_str(&path), false, show_owners, ref);
	}
	cl_buf_free(&path);
	return rc;
}

/* ------------------------------------------------ dependents, dependencies */

struct walk_ctx {
	const char *ref, *what;
};

static int
show_walk(struct cmdb *c, const struct cmdb_reply *r, const void *arg)
{
	static const char *const head[] = {"REF", "DEPTH", "VIA"};
	const struct walk_ctx *w = arg;
	const json_t *nodes = json_object_get(r->json, "nodes");
	if (!c->json)
		cmdb_as_of_note(c, r->json);
	if (c->json) {
		cmdb_print_json(r->json);
	} else if (!json_is_array(nodes)) {
		return cmdb_bad_reply(r, "no \"nodes\" array");
	} else if (json_array_size(nodes) == 0) {
		printf("%s: no %s\n", w->ref, w->what);
	} else {
		struct table *t = cl_table_new(3, head);
		size_t i;
		json_t *n;
		json_array_foreach((json_t *)nodes, i, n)
		{
			char *depth = cl_json_text(json_object_get(n, "depth"));
			const json_t *via = json_object_get(n, "via");
			char *via_text = json_is_object(via) ? cl_fmt_edge(via) : cl_xstrdup("-");
			const char *cells[] = {cl_jstr(n, "ref"), depth, via_text};
			cl_table_add(t, cells);
			free(depth);
			free(via_text);
		}
		cl_table_print(t, stdout);
		cl_table_free(t);
		if (json_is_true(json_object_get(r->json, "truncated"))) {
			char *count = cl_json_text(json_object_get(r->json, "count"));
			fprintf(stderr, "cmdb: showing %zu of %s %s; raise --limit for more\n",
				json_array_size(nodes), count, w->what);
			free(count);
		}
	}
	return 0;
}

static int
walk(struct cmdb *c, const char *what)
{
	struct walk_ctx w = {c->args->pos[0], what};
	struct buf path = BUF_INIT;
	int rc = cmdb_ref_path(c, &path, w.ref);
	if (rc != 0)
		goto out;
	cl_buf_printf(&path, "/%s", what);
	if (add_number_param(c, &path, "depth", "depth", 0, 1000000) ||
	    add_number_param(c, &path, "limit", "limit", 1, 100000)) {
		rc = CMDB_EXIT_USAGE;
		goto out;
	}
	const char *types = cl_args_get(c->args, "types");
	if (types)
		cl_query_add(&path, "types", types);
	cmdb_as_of_param(c, &path);
	rc = query(c, cl_buf_str(&path), false, show_walk, &w);
out:
	cl_buf_free(&path);
	return rc;
}

int
cmd_dependents(struct cmdb *c)
{
	return walk(c, "dependents");
}

int
cmd_dependencies(struct cmdb *c)
{
	return walk(c, "dependencies");
}

/* ----------------------------------------------------------------- path */

/*
 * Prints the hops as one chain starting at `from`. Hops are stored edges, so
 * a hop walked against its direction (part_of, from system to component)
 * is drawn "<--type--".
 */
static int
print_chain(const struct cmdb_reply *r, const char *from, const json_t *hops)
{
	struct buf line = BUF_INIT;
	const char *at = from;
	size_t i;
	json_t *h;
	cl_buf_puts(&line, from);
	json_array_foreach((json_t *)hops, i, h)
	{
		const char *hf = cl_jstr(h, "from"), *ht = cl_jstr(h, "to"),
			   *type = cl_jstr(h, "type");
		if (hf == NULL || ht == NULL || type == NULL) {
			cl_buf_free(&line);
			return cmdb_bad_reply(r, "a hop lacks from, type or to");
		}
		if (strcmp(hf, at) == 0) {
			cl_buf_printf(&line, " --%s--> %s", type, ht);
			at = ht;
		} else if (strcmp(ht, at) == 0) {
			cl_buf_printf(&line, " <--%s-- %s", type, hf);
			at = hf;
		} else { /* not a chain: show the hop as it is */
			cl_buf_printf(&line, " ... %s --%s--> %s", hf, type, ht);
			at = ht;
		}
	}
	char *clean = cl_text_sanitize(cl_buf_str(&line));
	puts(clean);
	free(clean);
	cl_buf_free(&line);
	return 0;
}

int
cmd_path(struct cmdb *c)
{
	char err[512];
	struct ref_parts rp;
	for (size_t i = 0; i < 2; i++)
		if (cl_ref_split(c->args->pos[i], &rp, err, sizeof err) < 0)
			return cmdb_usage(c, "%s", err);
	struct buf t = BUF_INIT;
	struct cmdb_reply r;
	cl_buf_puts(&t, "/v1/path");
	cl_query_add(&t, "from", c->args->pos[0]);
	cl_query_add(&t, "to", c->args->pos[1]);
	cmdb_as_of_param(c, &t);
	int rc = get_json(c, cl_buf_str(&t), &r);
	cl_buf_free(&t);
	if (rc != 0)
		return rc;
	const json_t *hops = json_object_get(r.json, "hops");
	if (!c->json) {
		cmdb_as_of_note(c, r.json);
		if (!json_is_array(hops))
			rc = cmdb_bad_reply(&r, "no \"hops\" array");
		else
			rc = print_chain(&r, c->args->pos[0], hops);
	}
	cmdb_reply_free(&r);
	return rc;
}

/* ------------------------------------------------------------ rootcause */

static void
print_ref_line(const char *label, const json_t *refs)
{
	char *list = cl_fmt_join(refs, ", ");
	char *clean = cl_text_sanitize(list[0] ? list : "-");
	printf("%-15s%s\n", label, clean);
	free(clean);
	free(list);
}

int
cmd_rootcause(struct cmdb *c)
{
	static const char *const head[] = {"RANK", "REF", "HEALTH", "DEPTH", "EXPLAINS"};
	json_t *body = json_object(), *failing = json_array();
	char *text = NULL;
	int rc = 0;
	if (c->args->npos > 0) /* none: the server takes everything now down or degraded */
		json_object_set(body, "failing", failing);
	for (size_t i = 0; i < c->args->npos; i++) {
		char err[512];
		struct ref_parts rp;
		if (cl_ref_split(c->args->pos[i], &rp, err, sizeof err) < 0) {
			rc = cmdb_usage(c, "%s", err);
			goto out;
		}
		json_t *s = json_string(c->args->pos[i]);
		if (s == NULL) {
			rc = cmdb_usage(c, "ref '%s' is not valid UTF-8", c->args->pos[i]);
			goto out;
		}
		json_array_append_new(failing, s);
	}
	long long max_depth;
	int has = cmdb_number(c, "max-depth", 0, 1000000, &max_depth);
	if (has < 0) {
		rc = CMDB_EXIT_USAGE;
		goto out;
	}
	if (has)
		json_object_set_new(body, "max_depth", json_integer(max_depth));
	const char *as_of = cl_args_get(c->args, "as-of");
	if (as_of != NULL) {
		/* a seq is a JSON integer, a time a string */
		char *end;
		long long seq = strtoll(as_of, &end, 10);
		bool num = as_of[0] >= '0' && as_of[0] <= '9' && *end == '\0';
		json_object_set_new(body, "as_of", num ? json_integer(seq) : json_string(as_of));
	}
	text = cmdb_dump(body);
	struct cmdb_reply r;
	rc = cmdb_request(c,
			  &(struct cmdb_call){.method = "POST",
					      .target = "/v1/rootcause",
					      .body = text,
					      .body_len = strlen(text)},
			  &r);
	if (rc != 0)
		goto out;
	const json_t *cands = json_object_get(r.json, "candidates");
	if (c->json) {
		cmdb_print_json(r.json);
	} else if (!json_is_array(cands)) {
		rc = cmdb_bad_reply(&r, "no \"candidates\" array");
	} else {
		cmdb_as_of_note(c, r.json);
		struct table *t = cl_table_new(5, head);
		size_t i;
		json_t *cand;
		json_array_foreach((json_t *)cands, i, cand)
		{
			char rank[32];
			snprintf(rank, sizeof rank, "%zu", i + 1);
			char *depth = cl_json_text(json_object_get(cand, "depth"));
			char *explains = cl_fmt_join(json_object_get(cand, "explains"), ", ");
			const char *cells[] = {rank, cl_jstr(cand, "ref"), cl_jstr(cand, "health"),
					       depth, explains};
			cl_table_add(t, cells);
			free(depth);
			free(explains);
		}
		cl_table_print(t, stdout);
		cl_table_free(t);
		putchar('\n');
		print_ref_line("root causes:", json_object_get(r.json, "root_causes"));
		print_ref_line("minimal cover:", json_object_get(r.json, "minimal_cover"));
	}
	cmdb_reply_free(&r);
out:
	free(text);
	json_decref(failing);
	json_decref(body);
	return rc;
}

/* ---------------------------------------------------------------- graph */

static int
show_graph(struct cmdb *c, const struct cmdb_reply *r, const void *arg)
{
	(void)c;
	if (*(const bool *)arg) {
		/* as-is, so it can be piped into dot(1) */
		fwrite(r->http.body, 1, r->http.body_len, stdout);
		if (r->http.body_len > 0 && r->http.body[r->http.body_len - 1] != '\n')
			putchar('\n');
	} else {
		cmdb_print_json(r->json);
	}
	return 0;
}

int
cmd_graph(struct cmdb *c)
{
	char err[512];
	struct ref_parts rp;
	const char *root = c->args->pos[0];
	if (cl_ref_split(root, &rp, err, sizeof err) < 0)
		return cmdb_usage(c, "%s", err);
	/* dot is the default: it is what a person renders; --json asks for json */
	const char *format = cl_args_get(c->args, "format");
	if (format == NULL)
		format = c->json ? "json" : "dot";
	if (strcmp(format, "dot") != 0 && strcmp(format, "json") != 0)
		return cmdb_usage(c, "--format must be dot or json (got '%s')", format);
	if (c->json && strcmp(format, "dot") == 0)
		return cmdb_usage(c, "--json and --format dot contradict each other");

	struct buf t = BUF_INIT;
	int rc = 0;
	cl_buf_puts(&t, "/v1/graph");
	cl_query_add(&t, "root", root);
	if (add_number_param(c, &t, "depth", "depth", 0, 1000000)) {
		rc = CMDB_EXIT_USAGE;
		goto out;
	}
	const char *dir = cl_args_get(c->args, "direction");
	if (dir)
		cl_query_add(&t, "direction", dir);
	cl_query_add(&t, "format", format);
	cmdb_as_of_param(c, &t);
	bool dot = strcmp(format, "dot") == 0;
	rc = query(c, cl_buf_str(&t), dot, show_graph, &dot);
out:
	cl_buf_free(&t);
	return rc;
}
