/*
 * cmd_history.c — SPEC §5 history in the CLI: the --as-of option the query
 * commands share, and `cmdb diff FROM [TO] [--root REF] [--direction D] [--depth N]`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "ref.h"
#include "table.h"

void
cmdb_as_of_param(const struct cmdb *c, struct buf *t)
{
	const char *v = cl_args_get(c->args, "as-of");
	if (v != NULL)
		cl_query_add(t, "as_of", v);
}

void
cmdb_as_of_note(const struct cmdb *c, const json_t *reply)
{
	const json_t *p = json_object_get(reply, "as_of");
	if (c->json || !json_is_object(p))
		return;
	const char *at = cl_jstr(p, "at");
	printf("as of seq %lld (%s)\n", (long long)json_integer_value(json_object_get(p, "seq")),
	       at ? at : "the empty map");
}

static void
print_point(const char *label, const json_t *p)
{
	const char *at = cl_jstr(p, "at");
	printf("%s seq %lld (%s)", label, (long long)json_integer_value(json_object_get(p, "seq")),
	       at ? at : "the empty map");
}

/*
 * One line per item: "MARK [WHAT ]TEXT" where an item is a ref (string), an
 * edge ({"from","type","to"}: "from type to") or a changed node ({"ref",
 * "fields"}: "ref: field, field"). Returns how many were printed.
 */
static size_t
print_items(const char *mark, const char *what, const json_t *items)
{
	size_t i;
	json_t *it;
	json_array_foreach((json_t *)items, i, it)
	{
		struct buf line = BUF_INIT;
		cl_buf_printf(&line, "%s %s%s", mark, what ? what : "", what ? " " : "");
		if (json_is_string(it)) {
			cl_buf_puts(&line, json_string_value(it));
		} else if (cl_jstr(it, "from") != NULL) {
			cl_buf_printf(&line, "%s %s %s", cl_jstr(it, "from"), cl_jstr(it, "type"),
				      cl_jstr(it, "to"));
		} else {
			char *fields = cl_fmt_join(json_object_get(it, "fields"), ", ");
			cl_buf_printf(&line, "%s: %s", cl_jstr(it, "ref"), fields);
			free(fields);
		}
		char *clean = cl_text_sanitize(cl_buf_str(&line));
		puts(clean);
		free(clean);
		cl_buf_free(&line);
	}
	return json_array_size(items);
}

int
cmd_diff(struct cmdb *c)
{
	struct buf t = BUF_INIT;
	struct cmdb_reply r;
	const char *root = cl_args_get(c->args, "root");
	const char *dir = cl_args_get(c->args, "direction");
	long long depth;
	int has, rc;

	cl_buf_puts(&t, "/v1/diff");
	cl_query_add(&t, "from", c->args->pos[0]);
	if (c->args->npos > 1)
		cl_query_add(&t, "to", c->args->pos[1]);
	if (root != NULL) {
		char err[512];
		struct ref_parts rp;
		if (cl_ref_split(root, &rp, err, sizeof err) < 0) {
			cl_buf_free(&t);
			return cmdb_usage(c, "--root: %s", err);
		}
		cl_query_add(&t, "root", root);
		cl_query_add(&t, "direction", dir ? dir : "dependents");
	} else if (dir != NULL) {
		cl_buf_free(&t);
		return cmdb_usage(c, "--direction needs --root");
	}
	has = cmdb_number(c, "depth", 0, 100000, &depth);
	if (has < 0 || (has && root == NULL)) {
		cl_buf_free(&t);
		return has < 0 ? CMDB_EXIT_USAGE : cmdb_usage(c, "--depth needs --root");
	}
	if (has) {
		char num[32];
		snprintf(num, sizeof num, "%lld", depth);
		cl_query_add(&t, "depth", num);
	}
	rc = cmdb_request(c, &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&t)}, &r);
	cl_buf_free(&t);
	if (rc != 0)
		return rc;
	if (c->json) {
		cmdb_print_json(r.json);
	} else if (!json_is_object(json_object_get(r.json, "nodes")) ||
		   !json_is_object(json_object_get(r.json, "edges"))) {
		rc = cmdb_bad_reply(&r, "no \"nodes\" and \"edges\" objects");
	} else {
		const json_t *n = json_object_get(r.json, "nodes"),
			     *e = json_object_get(r.json, "edges");
		size_t count = 0;
		print_point("from", json_object_get(r.json, "from"));
		print_point(" to", json_object_get(r.json, "to"));
		putchar('\n');
		count += print_items("+", "node", json_object_get(n, "added"));
		count += print_items("-", "node", json_object_get(n, "removed"));
		count += print_items("~", "node", json_object_get(n, "changed"));
		count += print_items("+", "edge", json_object_get(e, "added"));
		count += print_items("-", "edge", json_object_get(e, "removed"));
		count += print_items("~", "edge", json_object_get(e, "changed"));
		if (count == 0)
			puts("no changes");
		const json_t *reach = json_object_get(r.json, "reach");
		if (json_is_object(reach)) {
			char *clean =
			    cl_text_sanitize(cl_jstr(reach, "root") ? cl_jstr(reach, "root") : "?");
			printf("reach of %s (%s):\n", clean,
			       cl_jstr(reach, "direction") ? cl_jstr(reach, "direction") : "?");
			free(clean);
			if (print_items("+", NULL, json_object_get(reach, "added")) +
				print_items("-", NULL, json_object_get(reach, "removed")) ==
			    0)
				puts("  unchanged");
		}
	}
	cmdb_reply_free(&r);
	return rc;
}
