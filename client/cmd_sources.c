/*
 * cmd_sources.c — staleness and drift (SPEC §5): `cmdb sources` (every manifest
 * source, its TTL and whether it expired) and `cmdb drift` (edges seen on the wire
 * but declared by no source, and declared edges no observer saw).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "ref.h"
#include "table.h"

/* --------------------------------------------------------------- sources */

static int
sources_target(struct cmdb *c, const char *cursor, struct buf *t)
{
	cl_buf_puts(t, "/v1/sources");
	return cmdb_query_page(c, t, cursor);
}

static void
source_row(struct table *t, const json_t *s)
{
	char *gen = cl_json_text(json_object_get(s, "generation"));
	char *nodes = cl_json_text(json_object_get(s, "nodes"));
	char *edges = cl_json_text(json_object_get(s, "edges"));
	const char *state = json_is_true(json_object_get(s, "expired")) ? "expired" : "live";
	const char *cells[] = {cl_jstr(s, "source"),
			       gen,
			       cl_jstr(s, "last_applied_at"),
			       cl_jstr(s, "ttl"),
			       cl_jstr(s, "expires_at"),
			       nodes,
			       edges,
			       state};

	cl_table_add(t, cells);
	free(gen);
	free(nodes);
	free(edges);
}

int
cmd_sources(struct cmdb *c)
{
	static const char *const head[] = {"SOURCE",  "GENERATION", "LAST APPLIED", "TTL",
					   "EXPIRES", "NODES",	    "EDGES",	    "STATE"};
	struct table *t = cl_table_new(8, head);
	int rc = cmdb_list_pages(c, sources_target, t, source_row);

	cl_table_free(t);
	return rc;
}

/* ----------------------------------------------------------------- drift */

/* The latest of an edge's per-source assertion times (RFC 3339 UTC strings in one
 * format compare as times), or NULL. Borrowed from the edge. */
static const char *
last_asserted(const json_t *edge)
{
	const char *key, *latest = NULL;
	json_t *v;

	json_object_foreach((json_t *)json_object_get(edge, "last_asserted"), key, v)
	{
		const char *at = json_string_value(v);

		if (at != NULL && (latest == NULL || strcmp(at, latest) > 0))
			latest = at;
	}
	return latest;
}

static void
drift_rows(struct table *t, const char *what, const json_t *edges)
{
	size_t i;
	json_t *e;

	json_array_foreach((json_t *)edges, i, e)
	{
		char *sources = cl_fmt_join(json_object_get(e, "sources"), ",");
		const char *cells[] = {
		    what,    cl_jstr(e, "from"), cl_jstr(e, "type"), cl_jstr(e, "to"),
		    sources, last_asserted(e)};

		cl_table_add(t, cells);
		free(sources);
	}
}

int
cmd_drift(struct cmdb *c)
{
	static const char *const head[] = {"DRIFT", "FROM",    "TYPE",
					   "TO",    "SOURCES", "LAST ASSERTED"};
	const char *observer = cl_args_get(c->args, "observer");
	const char *types = cl_args_get(c->args, "types");
	struct buf target = BUF_INIT;
	struct cmdb_reply r;
	int rc;

	cl_buf_puts(&target, "/v1/drift");
	if (observer != NULL)
		cl_query_add(&target, "observer", observer);
	if (types != NULL)
		cl_query_add(&target, "types", types);
	rc = cmdb_request(c, &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&target)},
			  &r);
	cl_buf_free(&target);
	if (rc != 0)
		return rc;
	if (c->json) {
		cmdb_print_json(r.json);
	} else if (!json_is_array(json_object_get(r.json, "undeclared")) ||
		   !json_is_array(json_object_get(r.json, "unobserved"))) {
		rc = cmdb_bad_reply(&r, "no \"undeclared\" and \"unobserved\" arrays");
	} else {
		char *observers = cl_fmt_join(json_object_get(r.json, "observers"), ", ");
		struct table *t = cl_table_new(6, head);

		printf("observers: %s\n", observers[0] ? observers : "(none)");
		drift_rows(t, "undeclared", json_object_get(r.json, "undeclared"));
		drift_rows(t, "unobserved", json_object_get(r.json, "unobserved"));
		if (cl_table_rows(t) == 0)
			printf("no drift\n");
		else
			cl_table_print(t, stdout);
		cl_table_free(t);
		free(observers);
	}
	cmdb_reply_free(&r);
	return rc;
}
