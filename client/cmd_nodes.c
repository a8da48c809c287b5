/*
 * cmd_nodes.c — commands on single nodes and edges: get, ls, put, rm,
 * health, edges, link, unlink.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "ref.h"
#include "table.h"

/* Prints "label  value" for the get block, control characters masked. */
static void
print_field(const char *label, const char *value)
{
	char *clean = cl_text_sanitize(value ? value : "-");
	printf("%-12s%s\n", label, clean);
	free(clean);
}

/* Like print_field for a JSON member of any type. */
static void
print_json_field(const char *label, const json_t *obj, const char *key)
{
	char *text = cl_json_text(json_object_get(obj, key));
	print_field(label, text);
	free(text);
}

static int
cmp_keys(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "attributes:" followed by one indented "key: value" line per attribute. */
static void
print_attributes(const json_t *attrs)
{
	size_t n = json_is_object(attrs) ? json_object_size(attrs) : 0;
	if (n == 0) {
		print_field("attributes:", "-");
		return;
	}
	const char **keys = cl_xmalloc(n * sizeof *keys);
	size_t i = 0;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)attrs, k, v) keys[i++] = k;
	qsort(keys, n, sizeof *keys, cmp_keys);
	puts("attributes:");
	for (i = 0; i < n; i++) {
		char *text = cl_json_text(json_object_get(attrs, keys[i]));
		char *ck = cl_text_sanitize(keys[i]), *cv = cl_text_sanitize(text);
		printf("  %s: %s\n", ck, cv);
		free(ck);
		free(cv);
		free(text);
	}
	free(keys);
}

/* The owners of a GET reply: an array, or {"owners": [...]} as the owners query. */
static const json_t *
owners_array(const json_t *node)
{
	const json_t *o = json_object_get(node, "owners");
	if (json_is_object(o))
		o = json_object_get(o, "owners");
	return json_is_array(o) ? o : NULL;
}

static void
print_owners_field(const json_t *owners)
{
	if (owners == NULL || json_array_size(owners) == 0) {
		print_field("owners:", "-");
		return;
	}
	size_t i;
	json_t *o;
	json_array_foreach((json_t *)owners, i, o)
	{
		struct buf line = BUF_INIT;
		const char *ref = cl_jstr(o, "ref"), *rule = cl_jstr(o, "rule");
		char *contacts = cl_fmt_contacts(json_object_get(o, "attributes"));
		cl_buf_printf(&line, "%s (%s)%s%s", ref ? ref : "?", rule ? rule : "?",
			      contacts[0] ? " " : "", contacts);
		print_field(i == 0 ? "owners:" : "", cl_buf_str(&line));
		free(contacts);
		cl_buf_free(&line);
	}
}

static void
print_health_field(const json_t *node)
{
	struct buf b = BUF_INIT;
	const char *state = cl_jstr(node, "health");
	const char *reason = cl_jstr(node, "health_reason");
	const char *at = cl_jstr(node, "health_at");
	cl_buf_puts(&b, state ? state : "?");
	if ((reason && reason[0]) || at)
		cl_buf_printf(&b, " (%s%s%s%s)", reason && reason[0] ? reason : "",
			      reason && reason[0] && at ? "; " : "", at ? "since " : "",
			      at ? at : "");
	print_field("health:", cl_buf_str(&b));
	cl_buf_free(&b);
}

int
cmd_get(struct cmdb *c)
{
	struct buf path = BUF_INIT;
	struct cmdb_reply r;
	int rc = cmdb_ref_path(c, &path, c->args->pos[0]);
	if (rc != 0)
		goto out;
	cmdb_as_of_param(c, &path);
	rc = cmdb_request(c, &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&path)}, &r);
	if (rc != 0)
		goto out;
	const json_t *node = r.json;
	if (c->json) {
		cmdb_print_json(node);
	} else if (!json_is_object(node) || cl_jstr(node, "ref") == NULL) {
		rc = cmdb_bad_reply(&r, "expected a node object with a \"ref\"");
	} else {
		cmdb_as_of_note(c, node);
		print_json_field("ref:", node, "ref");
		print_json_field("id:", node, "id");
		print_json_field("kind:", node, "kind");
		print_json_field("name:", node, "name");
		print_health_field(node);
		char *labels = cl_fmt_labels(json_object_get(node, "labels"));
		print_field("labels:", labels[0] ? labels : "-");
		free(labels);
		print_attributes(json_object_get(node, "attributes"));
		char *sources = cl_fmt_join(json_object_get(node, "sources"), ", ");
		print_field("sources:", sources[0] ? sources : "-");
		free(sources);
		const json_t *orphan = json_object_get(node, "orphan");
		print_field("orphan:",
			    json_is_boolean(orphan) ? (json_is_true(orphan) ? "yes" : "no") : "-");
		print_json_field("version:", node, "version");
		print_json_field("created:", node, "created_at");
		print_json_field("updated:", node, "updated_at");
		print_json_field("last seen:", node, "last_seen_at");
		const json_t *edges = json_object_get(node, "edges");
		char *in = cl_json_text(json_object_get(edges, "in"));
		char *outs = cl_json_text(json_object_get(edges, "out"));
		struct buf e = BUF_INIT;
		cl_buf_printf(&e, "%s in, %s out", in, outs);
		print_field("edges:", cl_buf_str(&e));
		cl_buf_free(&e);
		free(in);
		free(outs);
		print_owners_field(owners_array(node));
	}
	cmdb_reply_free(&r);
out:
	cl_buf_free(&path);
	return rc;
}

/* ------------------------------------------------------------------- ls */

/* Builds /v1/nodes?... from the ls options (cursor may be NULL). */

/* Adds --OPT REF as the query parameter OPT, after checking it is a ref. 0, or the
 * usage exit code. */
static int
query_ref_option(struct cmdb *c, struct buf *t, const char *opt)
{
	const char *ref = cl_args_get(c->args, opt);
	struct ref_parts rp;
	char err[512];

	if (ref == NULL)
		return 0;
	if (cl_ref_split(ref, &rp, err, sizeof err) < 0)
		return cmdb_usage(c, "--%s: %s", opt, err);
	cl_query_add(t, opt, ref);
	return 0;
}

int
cmdb_query_page(struct cmdb *c, struct buf *t, const char *cursor)
{
	long long limit;
	int has = cmdb_number(c, "limit", 1, 1000, &limit);

	if (has < 0)
		return CMDB_EXIT_USAGE;
	if (has) {
		char num[32];
		snprintf(num, sizeof num, "%lld", limit);
		cl_query_add(t, "limit", num);
	}
	if (cursor)
		cl_query_add(t, "cursor", cursor);
	return 0;
}

static int
ls_target(struct cmdb *c, const char *cursor, struct buf *t)
{
	static const char *const passthrough[][2] = {
	    {"kind", "kind"},
	    {"health", "health"},
	    {"prefix", "q"},
	};
	cl_buf_puts(t, "/v1/nodes");
	for (size_t i = 0; i < sizeof passthrough / sizeof *passthrough; i++) {
		const char *v = cl_args_get(c->args, passthrough[i][0]);
		if (v)
			cl_query_add(t, passthrough[i][1], v);
	}
	size_t it = 0;
	const char *label;
	while ((label = cl_args_next(c->args, "label", &it)) != NULL) {
		const char *eq = strchr(label, '=');
		if (eq == NULL || eq == label)
			return cmdb_usage(c, "--label wants KEY=VALUE (got '%s')", label);
		struct buf kv = BUF_INIT; /* the API spells a label filter key:value */
		cl_buf_printf(&kv, "%.*s:%s", (int)(eq - label), label, eq + 1);
		cl_query_add(t, "label", cl_buf_str(&kv));
		cl_buf_free(&kv);
	}
	int rc = query_ref_option(c, t, "owner");
	if (rc != 0)
		return rc;
	if (cl_args_has(c->args, "orphan"))
		cl_query_add(t, "orphan", "true");
	return cmdb_query_page(c, t, cursor);
}

/* The cursor for the next page as text (malloc'd), or NULL on the last page. */
static char *
next_cursor(const json_t *page)
{
	const json_t *nc = json_object_get(page, "next_cursor");
	if (nc == NULL || json_is_null(nc))
		return NULL;
	if (json_is_string(nc) && json_string_length(nc) == 0)
		return NULL;
	return cl_json_text(nc);
}

int
cmdb_list_pages(struct cmdb *c, int (*target)(struct cmdb *, const char *, struct buf *),
		struct table *tab, cmdb_row_fn add_row)
{
	bool all = cl_args_has(c->args, "all");
	char *cursor =
	    cl_args_get(c->args, "cursor") ? cl_xstrdup(cl_args_get(c->args, "cursor")) : NULL;
	json_t *collected = json_array();
	int rc;
	for (;;) {
		struct buf t = BUF_INIT;
		struct cmdb_reply r;
		rc = target(c, cursor, &t);
		if (rc == 0)
			rc = cmdb_request(
			    c, &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&t)}, &r);
		cl_buf_free(&t);
		if (rc != 0)
			break;
		const json_t *items = json_object_get(r.json, "items");
		if (!json_is_array(items)) {
			rc = cmdb_bad_reply(&r, "no \"items\" array in the list");
			cmdb_reply_free(&r);
			break;
		}
		char *next = next_cursor(r.json);
		if (c->json && !all)
			cmdb_print_json(r.json);
		size_t i;
		json_t *item;
		json_array_foreach((json_t *)items, i, item)
		{
			if (c->json)
				json_array_append(collected, item);
			else
				add_row(tab, item);
		}
		if (next && cursor && strcmp(next, cursor) == 0) {
			rc = cmdb_bad_reply(&r, "next_cursor did not advance");
			free(next);
			cmdb_reply_free(&r);
			break;
		}
		cmdb_reply_free(&r);
		free(cursor);
		cursor = next;
		if (cursor == NULL || !all)
			break;
	}
	if (rc == 0 && c->json && all) {
		json_t *body = json_pack("{s:O,s:n}", "items", collected, "next_cursor");
		cmdb_print_json(body);
		json_decref(body);
	} else if (rc == 0 && !c->json) {
		cl_table_print(tab, stdout);
		if (cursor)
			fprintf(stderr, "cmdb: more results: add --all, or --cursor %s\n", cursor);
	}
	free(cursor);
	json_decref(collected);
	return rc;
}

static void
ls_row(struct table *t, const json_t *node)
{
	char *labels = cl_fmt_labels(json_object_get(node, "labels"));
	const char *cells[] = {cl_jstr(node, "ref"), cl_jstr(node, "kind"), cl_jstr(node, "health"),
			       labels};
	cl_table_add(t, cells);
	free(labels);
}

int
cmd_ls(struct cmdb *c)
{
	static const char *const head[] = {"REF", "KIND", "HEALTH", "LABELS"};
	struct table *t = cl_table_new(4, head);
	int rc = cmdb_list_pages(c, ls_target, t, ls_row);
	cl_table_free(t);
	return rc;
}

/* ------------------------------------------------------------ deployments */

static int
deployments_target(struct cmdb *c, const char *cursor, struct buf *t)
{
	cl_buf_puts(t, "/v1/deployments");
	int rc = query_ref_option(c, t, "node");
	return rc != 0 ? rc : cmdb_query_page(c, t, cursor);
}

/* WHEN is started_at as the deploy tool reported it, else when it was applied. */
static void
deployment_row(struct table *t, const json_t *d)
{
	const char *when = cl_jstr(d, "started_at");
	if (when == NULL)
		when = cl_jstr(d, "applied_at");
	const char *cells[] = {when,
			       cl_jstr(d, "node"),
			       cl_jstr(d, "version"),
			       cl_jstr(d, "revision"),
			       cl_jstr(d, "environment"),
			       cl_jstr(d, "status"),
			       cl_jstr(d, "actor"),
			       cl_jstr(d, "source")};
	cl_table_add(t, cells);
}

int
cmd_deployments(struct cmdb *c)
{
	static const char *const head[] = {"WHEN", "NODE",   "VERSION", "REVISION",
					   "ENV",  "STATUS", "ACTOR",	"SOURCE"};
	struct table *t = cl_table_new(8, head);
	int rc = cmdb_list_pages(c, deployments_target, t, deployment_row);
	cl_table_free(t);
	return rc;
}

/* ---------------------------------------------------------- put, rm, health */

/* Adds every KEY=VALUE of a repeatable option to a new object under obj[member]. */
static int
collect_kv(struct cmdb *c, const char *option, int allow_json, json_t *obj, const char *member)
{
	size_t it = 0;
	const char *arg;
	json_t *map = NULL;
	while ((arg = cl_args_next(c->args, option, &it)) != NULL) {
		char err[512], *key;
		json_t *value;
		struct buf what = BUF_INIT;
		cl_buf_printf(&what, "--%s", option);
		int bad =
		    cl_parse_kv(arg, cl_buf_str(&what), allow_json, &key, &value, err, sizeof err);
		cl_buf_free(&what);
		if (bad) {
			json_decref(map);
			return cmdb_usage(c, "%s", err);
		}
		if (map == NULL)
			map = json_object();
		json_object_set_new(map, key, value);
		free(key);
	}
	if (map)
		json_object_set_new(obj, member, map);
	return 0;
}

int
cmd_put(struct cmdb *c)
{
	const char *ref = c->args->pos[0];
	struct buf path = BUF_INIT, etag = BUF_INIT;
	json_t *body = json_object();
	char *text = NULL;
	int rc = cmdb_ref_path(c, &path, ref);
	if (rc == 0)
		rc = collect_kv(c, "attr", 1, body, "attributes");
	if (rc == 0)
		rc = collect_kv(c, "label", 0, body, "labels");
	if (rc != 0)
		goto out;
	const char *if_match = cl_args_get(c->args, "if-match");
	if (if_match) /* the ETag is the quoted version; accept it with or without quotes */
		cl_buf_printf(&etag, if_match[0] == '"' ? "%s" : "\"%s\"", if_match);
	const char *hdrs[] = {"If-Match", if_match ? cl_buf_str(&etag) : NULL, NULL};
	text = cmdb_dump(body);
	struct cmdb_reply r;
	rc = cmdb_request(c,
			  &(struct cmdb_call){.method = "PUT",
					      .target = cl_buf_str(&path),
					      .body = text,
					      .body_len = strlen(text),
					      .headers = hdrs},
			  &r);
	if (rc != 0)
		goto out;
	if (c->json) {
		cmdb_print_json(r.json);
	} else {
		char *version = cl_json_text(json_object_get(r.json, "version"));
		printf("%s %s (version %s)\n", r.http.status == 201 ? "created" : "updated", ref,
		       version);
		free(version);
	}
	cmdb_reply_free(&r);
out:
	free(text);
	json_decref(body);
	cl_buf_free(&path);
	cl_buf_free(&etag);
	return rc;
}

int
cmd_rm(struct cmdb *c)
{
	struct buf path = BUF_INIT;
	struct cmdb_reply r;
	int rc = cmdb_ref_path(c, &path, c->args->pos[0]);
	if (rc == 0)
		rc = cmdb_request(
		    c, &(struct cmdb_call){.method = "DELETE", .target = cl_buf_str(&path)}, &r);
	if (rc == 0) {
		if (!c->json)
			printf("deleted %s\n", c->args->pos[0]);
		else if (r.json)
			cmdb_print_json(r.json);
		cmdb_reply_free(&r);
	}
	cl_buf_free(&path);
	return rc;
}

int
cmd_health(struct cmdb *c)
{
	const char *ref = c->args->pos[0], *state = c->args->pos[1];
	const char *reason = cl_args_get(c->args, "reason");
	struct buf path = BUF_INIT;
	json_t *body = json_pack("{s:s?}", "state", state);
	char *text = NULL;
	int rc = cmdb_ref_path(c, &path, ref);
	if (rc != 0)
		goto out;
	if (body == NULL ||
	    (reason && json_object_set_new(body, "reason", json_string(reason)) < 0)) {
		rc = cmdb_usage(c, "STATE and --reason must be valid UTF-8");
		goto out;
	}
	cl_buf_puts(&path, "/health");
	text = cmdb_dump(body);
	struct cmdb_reply r;
	rc = cmdb_request(c,
			  &(struct cmdb_call){.method = "PUT",
					      .target = cl_buf_str(&path),
					      .body = text,
					      .body_len = strlen(text)},
			  &r);
	if (rc != 0)
		goto out;
	if (c->json)
		cmdb_print_json(r.json);
	else
		printf("%s: %s%s%s%s\n", ref, state, reason ? " (" : "", reason ? reason : "",
		       reason ? ")" : "");
	cmdb_reply_free(&r);
out:
	free(text);
	json_decref(body);
	cl_buf_free(&path);
	return rc;
}

/* ---------------------------------------------------------------- edges */

int
cmd_edges(struct cmdb *c)
{
	static const char *const head[] = {"FROM", "TYPE", "TO", "SOURCES", "ATTRIBUTES"};
	struct buf path = BUF_INIT;
	struct cmdb_reply r;
	int rc = cmdb_ref_path(c, &path, c->args->pos[0]);
	if (rc != 0)
		goto out;
	cl_buf_puts(&path, "/edges");
	const char *dir = cl_args_get(c->args, "direction");
	if (dir)
		cl_query_add(&path, "direction", dir);
	const char *type = cl_args_get(c->args, "type");
	if (type)
		cl_query_add(&path, "type", type);
	cmdb_as_of_param(c, &path);
	rc = cmdb_request(c, &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&path)}, &r);
	if (rc != 0)
		goto out;
	const json_t *edges = json_object_get(r.json, "edges");
	if (c->json) {
		cmdb_print_json(r.json);
	} else if (!json_is_array(edges)) {
		rc = cmdb_bad_reply(&r, "no \"edges\" array");
	} else {
		cmdb_as_of_note(c, r.json);
		struct table *t = cl_table_new(5, head);
		size_t i;
		json_t *e;
		json_array_foreach((json_t *)edges, i, e)
		{
			char *sources = cl_fmt_join(json_object_get(e, "sources"), ",");
			const json_t *attrs = json_object_get(e, "attributes");
			char *attr_text =
			    json_object_size(attrs) ? cl_json_text(attrs) : cl_xstrdup("");
			const char *cells[] = {cl_jstr(e, "from"), cl_jstr(e, "type"),
					       cl_jstr(e, "to"), sources, attr_text};
			cl_table_add(t, cells);
			free(sources);
			free(attr_text);
		}
		cl_table_print(t, stdout);
		cl_table_free(t);
	}
	cmdb_reply_free(&r);
out:
	cl_buf_free(&path);
	return rc;
}

/* Checks FROM and TO of link/unlink; returns 0 or a usage exit code. */
static int
check_edge_refs(struct cmdb *c)
{
	char err[512];
	struct ref_parts rp;
	for (size_t i = 0; i < 3; i += 2)
		if (cl_ref_split(c->args->pos[i], &rp, err, sizeof err) < 0)
			return cmdb_usage(c, "%s", err);
	return 0;
}

int
cmd_link(struct cmdb *c)
{
	const char *from = c->args->pos[0], *type = c->args->pos[1], *to = c->args->pos[2];
	json_t *body = json_pack("{s:s?,s:s?,s:s?}", "from", from, "type", type, "to", to);
	char *text = NULL;
	int rc = check_edge_refs(c);
	if (rc == 0 && body == NULL)
		rc = cmdb_usage(c, "arguments must be valid UTF-8");
	if (rc == 0)
		rc = collect_kv(c, "attr", 1, body, "attributes");
	if (rc != 0)
		goto out;
	text = cmdb_dump(body);
	struct cmdb_reply r;
	rc = cmdb_request(
	    c,
	    &(struct cmdb_call){
		.method = "PUT", .target = "/v1/edges", .body = text, .body_len = strlen(text)},
	    &r);
	if (rc != 0)
		goto out;
	if (c->json)
		cmdb_print_json(r.json);
	else
		printf("%s %s --%s--> %s\n", r.http.status == 201 ? "created" : "updated", from,
		       type, to);
	cmdb_reply_free(&r);
out:
	free(text);
	json_decref(body);
	return rc;
}

int
cmd_unlink(struct cmdb *c)
{
	const char *from = c->args->pos[0], *type = c->args->pos[1], *to = c->args->pos[2];
	struct buf t = BUF_INIT;
	struct cmdb_reply r;
	int rc = check_edge_refs(c);
	if (rc != 0)
		goto out;
	cl_buf_puts(&t, "/v1/edges");
	cl_query_add(&t, "from", from);
	cl_query_add(&t, "type", type);
	cl_query_add(&t, "to", to);
	rc = cmdb_request(c, &(struct cmdb_call){.method = "DELETE", .target = cl_buf_str(&t)}, &r);
	if (rc == 0) {
		if (!c->json)
			printf("removed %s --%s--> %s\n", from, type, to);
		else if (r.json)
			cmdb_print_json(r.json);
		cmdb_reply_free(&r);
	}
out:
	cl_buf_free(&t);
	return rc;
}
