/*
 * fuzz_changes.c — the change-log row decoder: what the tailer does with the rows of
 * SQL_CHANGES_TAIL (cmdbd/tailer.c apply_row() and fetch_done()), and what the graph
 * makes of a node row's image (cmdbd/graph_image.c: parsed on first GET into the
 * node's id, version, sources and derived last_seen_at).
 *
 * Input: rows separated by '\n', columns by '\t', in SQL_CHANGES_TAIL order —
 *   seq  op  ref  from  type  to  health  attributes  image
 * with "\N" for SQL NULL (PQgetvalue() gives "" for a NULL text column; the tailer
 * tests attributes and image with PQgetisnull()). Two harness-only ops feed the other
 * ways into the images: "x.refresh" (ref, from = id, to = last_seen_at, health =
 * health_at: a handler's graph_node_refresh()) and "x.seen" (ref = source, from = at:
 * the tailer's sightings poll, graph_source_seen()).
 *
 * apply_row() is static in tailer.c and reads a PGresult; the dispatch below is the
 * same, call for call. After every row each node touched is viewed (parsing its image
 * lazily as GET does); at the end nodes are walked both ways and the serialised
 * walk must equal the jansson one byte for byte (graph.h's promise for
 * graph_walk_text()).
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "model.h"
#include "fuzz.h"

#define NCOLS 9
#define MAX_ROWS 64
#define MAX_WALKS 8

/* PQgetvalue(): never NULL. */
static const char *
val(char *const *f, int i)
{
	return f[i] ? f[i] : "";
}

/* tailer.c apply_row(), on columns instead of a PGresult. */
static int
apply_row(graph *g, char *const *f, const size_t *flen)
{
	const char *op = val(f, 1);

	if (strncmp(op, "node.", 5) == 0) {
		const char *ref = val(f, 2);

		if (strcmp(op, "node.deleted") == 0)
			return graph_node_remove(g, ref);
		return graph_node_put_image(g, ref, graph_health_parse(val(f, 6)), f[7], f[8],
					    f[8] ? flen[8] : 0);
	} else {
		const char *from = val(f, 3);
		int type = graph_edge_type_parse(val(f, 4));
		const char *to = val(f, 5);

		if (type < 0)
			return -1;
		if (strcmp(op, "edge.deleted") == 0)
			return graph_edge_remove(g, from, type, to);
		return graph_edge_put(g, from, type, to);
	}
}

static void
view(graph *g, const char *ref)
{
	struct graph_node_view v;
	long i = graph_find(g, ref);
	json_error_t jerr;
	json_t *obj;

	if (i < 0)
		return;
	CHECK(strcmp(graph_node_ref(g, i), ref) == 0);
	int rc = graph_node_view(g, i, &v);

	if (rc != 0) {
		CHECK(rc == GRAPH_ENOENT || rc == GRAPH_EPROTO);
		return;
	}
	/* The normalised image: one compact object, without last_seen_at (derived). */
	CHECK(v.len == strlen(v.json));
	obj = json_loadb(v.json, v.len, JSON_REJECT_DUPLICATES, &jerr);
	CHECK(json_is_object(obj) && json_object_get(obj, "last_seen_at") == NULL);
	CHECK(json_integer_value(json_object_get(obj, "version")) == v.version);
	CHECK(v.last_seen_at[0] == '\0' || strlen(v.last_seen_at) == GRAPH_TIME_LEN);
	json_decref(obj);
}

/*
 * The database lets only valid refs into the change log (CHECK constraints, the same
 * rules as model.c); graph.h leaves that check to the caller. Rows with other refs are
 * applied all the same (nothing may crash on them), but once one is in the graph a
 * query may fail where jansson refuses the bytes: `strict` is off from then on.
 */
static bool
ref_valid(const char *ref)
{
	return *ref == '\0' || model_ref_parse(ref, NULL, NULL) == NULL;
}

static void
walks(graph *g, long i, bool strict)
{
	for (int dir = GRAPH_DIR_DEPENDENTS; dir <= GRAPH_DIR_DEPENDENCIES; dir++) {
		json_t *j = dir == GRAPH_DIR_DEPENDENTS
				? graph_dependents(g, i, -1, GRAPH_IMPACT_MASK, 5)
				: graph_dependencies(g, i, -1, GRAPH_IMPACT_MASK, 5);
		size_t len;
		char *text = graph_walk_text(g, i, dir, -1, GRAPH_IMPACT_MASK, 5, &len);
		char *want = json_dumps(j, JSON_COMPACT);

		if (strict)
			CHECK(j != NULL && text != NULL && want != NULL);
		if (want != NULL && text != NULL)
			CHECK(strcmp(text, want) == 0 && len == strlen(want));
		free(want);
		free(text);
		json_decref(j);
	}
	json_decref(graph_subgraph(g, i, 2, GRAPH_DIR_BOTH));
	json_decref(graph_owners(g, i));
}

static bool
seen_ref(char *const *refs, int n, const char *ref)
{
	for (int i = 0; i < n; i++)
		if (refs[i] != NULL && strcmp(refs[i], ref) == 0)
			return true;
	return false;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf = malloc(size + 1), *line, *next;
	char *refs[MAX_ROWS * 3];
	int nrefs = 0, rows = 0;
	long long applied = 0;
	bool strict = true;
	graph *g = graph_new();

	if (buf == NULL || g == NULL) {
		free(buf);
		graph_free(g);
		return 0;
	}
	memcpy(buf, data, size);
	buf[size] = '\0';
	for (line = buf; line != NULL && rows < MAX_ROWS; line = next, rows++) {
		char *f[NCOLS] = {0};
		size_t flen[NCOLS] = {0};
		char *p = line;
		long long seq;

		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		for (int k = 0; k < NCOLS && p != NULL; k++) {
			char *tab = strchr(p, '\t');

			if (tab != NULL)
				*tab = '\0';
			f[k] = strcmp(p, "\\N") == 0 ? NULL : p;
			flen[k] = strlen(p);
			p = tab ? tab + 1 : NULL;
		}
		/* fetch_done(): rows at or below the applied seq are skipped. */
		seq = strtoll(val(f, 0), NULL, 10);
		if (seq <= applied)
			continue;
		applied = seq;
		if (strcmp(val(f, 1), "x.refresh") == 0) {
			const char *h = f[6];

			int rc = graph_node_refresh(g, val(f, 2), val(f, 3), f[5], h);

			CHECK(rc == 0 || rc == GRAPH_ENOMEM);
		} else if (strcmp(val(f, 1), "x.seen") == 0) {
			graph_source_seen(g, val(f, 2), f[3]);
			(void)graph_source_seen_at(g, val(f, 2));
		} else {
			if (apply_row(g, f, flen) == 0 &&
			    !(ref_valid(val(f, 2)) && ref_valid(val(f, 3)) && ref_valid(val(f, 5))))
				strict = false;
		}
		for (int k = 2; k <= 5; k += 1) {
			if (k == 4)
				continue;
			view(g, val(f, k));
			if (nrefs < MAX_ROWS * 3 && graph_find(g, val(f, k)) >= 0 &&
			    !seen_ref(refs, nrefs, val(f, k)))
				refs[nrefs++] = strdup(val(f, k));
		}
	}
	/* Walks from every node are quadratic in the rows: every step-th node of those
	 * the rows named, MAX_WALKS at most. */
	for (int k = 0, step = nrefs / MAX_WALKS + 1; k < nrefs; k++) {
		long i = refs[k] ? graph_find(g, refs[k]) : -1;

		if (i >= 0) {
			view(g, refs[k]);
			if (k % step == 0)
				walks(g, i, strict);
		}
		free(refs[k]);
	}
	graph_free(g);
	free(buf);
	return 0;
}
