/*
 * api_history.c — SPEC §5 history: GET /v1/diff, GET /v1/deployments/{id}/diff,
 * and the node GET and node edges of a past moment.
 *
 * A diff is one SQL function over the change log (cmdb_diff, migrations/0008);
 * its reach part ("what entered or left X's blast radius") walks two as-of
 * graphs (history.h). A node or its edges as of a seq take their existence,
 * owners and degree from the as-of graph and their images from the change log
 * (cmdb_history_images), as the live node GET takes them from the live images.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uuid/uuid.h>

#include "api.h"
#include "graph.h"
#include "history.h"
#include "manifest.h"
#include "model.h"
#include "app.h"
#include "sql.h"
#include "tailer.h"

#define DEPTH_MAX 100000

/* -------------------------------------------------- node and edges as of */

struct images_req {
	struct http_req *r;
	struct history_point pt;
	bool node; /* a node GET (else the edges of a node) */
	json_t *owners;
	size_t in, out;
	char ref[MODEL_REF_MAX + 2];
};

static void
images_done(void *arg, const struct db_result *res)
{
	struct images_req *q = arg;
	struct http_req *r = q->r;
	json_t *arr = NULL, *body = NULL;

	if (res->status != DB_OK) {
		api_reply_db_error(r, res);
		goto out;
	}
	if (PQntuples(res->res) == 1)
		arr = json_loads(PQgetvalue(res->res, 0, 0), 0, NULL);
	if (!json_is_array(arr)) {
		http_reply_error(r, 500, "internal", NULL, "unreadable database reply");
		goto out;
	}
	if (q->node) {
		char etag[40];

		body = json_incref(json_array_get(arr, 0));
		if (!json_is_object(body)) {
			/* In the as-of graph but without an image: the log is inconsistent
			 * with the graph built from it — never expected. */
			http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", q->ref),
					 "node %s not found", q->ref);
			goto out;
		}
		snprintf(etag, sizeof(etag), "\"%lld\"",
			 (long long)json_integer_value(json_object_get(body, "version")));
		http_set_header(r, "ETag", etag);
		json_object_set(body, "owners", q->owners);
		json_object_set_new(
		    body, "edges",
		    json_pack("{s:I,s:I}", "in", (json_int_t)q->in, "out", (json_int_t)q->out));
	} else {
		body = json_pack("{s:O}", "edges", arr);
	}
	json_object_set_new(body, "as_of", history_point_json(&q->pt));
	http_reply_json(r, 200, body);
out:
	json_decref(arr);
	json_decref(q->owners);
	free(q);
}

/* Reads the images of refs (a jansson array, stolen) as of the current point. */
static void
images_fetch(struct http_req *r, struct images_req *q, json_t *refs)
{
	char seq[32];
	char *text = refs ? json_dumps(refs, JSON_COMPACT) : NULL;
	const char *params[3] = {text, q->node ? "false" : "true", seq};

	json_decref(refs);
	q->r = r;
	q->pt = *history_point(r);
	snprintf(seq, sizeof(seq), "%lld", q->pt.seq);
	if (text == NULL || db_query(r->app->db, SQL_HISTORY_IMAGES, params, images_done, q) != 0) {
		json_decref(q->owners);
		free(q);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
	}
	free(text);
}

static long
find_or_404(struct http_req *r, graph *g, const char *ref)
{
	long idx = graph_find(g, ref);

	if (idx < 0)
		http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", ref),
				 "node %s not found", ref);
	return idx;
}

void
api_history_node_get(struct http_req *r, graph *g, const char *ref)
{
	struct images_req *q;
	json_t *o;
	long idx;

	if ((idx = find_or_404(r, g, ref)) < 0)
		return;
	q = calloc(1, sizeof(*q));
	o = graph_owners(g, idx);
	if (q == NULL || o == NULL) {
		free(q);
		json_decref(o);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return;
	}
	q->node = true;
	q->owners = json_incref(json_object_get(o, "owners"));
	json_decref(o);
	graph_degree(g, idx, &q->in, &q->out);
	snprintf(q->ref, sizeof(q->ref), "%s", ref);
	images_fetch(r, q, json_pack("[s]", ref));
}

void
api_history_node_edges(struct http_req *r, graph *g, const char *ref, const char *dir,
		       const char *type)
{
	struct images_req *q;
	long idx;

	if ((idx = find_or_404(r, g, ref)) < 0)
		return;
	q = calloc(1, sizeof(*q));
	if (q == NULL) {
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return;
	}
	snprintf(q->ref, sizeof(q->ref), "%s", ref);
	images_fetch(r, q,
		     graph_node_edge_refs(g, idx, strcmp(dir, "in") != 0, strcmp(dir, "out") != 0,
					  type ? graph_edge_type_parse(type) : -1));
}

/* ------------------------------------------------------------------ diff */

struct diff_req {
	struct http_req *r;
	json_t *body; /* the SQL reply's body, while the reach is computed */
	char root[MODEL_REF_MAX + 2];
	int dir;
	long depth;
	json_t *before; /* {ref: true} reached at `from`; NULL when root was absent */
	bool root_seen;
};

/* Whether s names a point: a seq, deployment:<uuid> or an RFC 3339 time. */
static bool
point_valid(const char *s)
{
	uuid_t u;

	if (*s != '\0' && strspn(s, "0123456789") == strlen(s))
		return strlen(s) <= 18;
	if (strncmp(s, "deployment:", 11) == 0)
		return strlen(s + 11) == 36 && uuid_parse(s + 11, u) == 0;
	return manifest_time_valid(s);
}

static void
diff_free(struct diff_req *d)
{
	json_decref(d->body);
	json_decref(d->before);
	free(d);
}

/* {ref: true} for every node in root's reach on g (empty when root is absent). */
static json_t *
reach_set(struct diff_req *d, graph *g)
{
	long idx = graph_find(g, d->root);
	json_t *set = json_object(), *res, *n;
	size_t i;

	if (set == NULL || idx < 0)
		return set;
	d->root_seen = true;
	res =
	    d->dir == GRAPH_DIR_DEPENDENTS
		? graph_dependents(g, idx, (int)d->depth, GRAPH_IMPACT_MASK, graph_node_count(g))
		: graph_dependencies(g, idx, (int)d->depth, GRAPH_IMPACT_MASK, graph_node_count(g));
	if (res == NULL) {
		json_decref(set);
		return NULL;
	}
	json_array_foreach(json_object_get(res, "nodes"), i, n)
	    json_object_set_new(set, json_string_value(json_object_get(n, "ref")), json_true());
	json_decref(res);
	return set;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keys of a that are not in b, sorted (byte order), as a NEW array. */
static json_t *
set_minus(json_t *a, json_t *b)
{
	size_t n = json_object_size(a), k = 0;
	const char **keys = malloc((n ? n : 1) * sizeof(*keys));
	const char *key;
	json_t *v, *out = json_array();

	if (keys == NULL || out == NULL) {
		free(keys);
		json_decref(out);
		return NULL;
	}
	json_object_foreach(a, key, v)
	{
		if (json_object_get(b, key) == NULL)
			keys[k++] = key;
	}
	qsort(keys, k, sizeof(*keys), cmp_str);
	for (size_t i = 0; i < k; i++)
		json_array_append_new(out, json_string(keys[i]));
	free(keys);
	return out;
}

static void
reach_to(void *arg, graph *g, const char *why)
{
	struct diff_req *d = arg;
	json_t *after, *reach;

	if (g == NULL) {
		http_reply_error(d->r, 503, "unavailable", NULL, "diff reach: %s", why);
		diff_free(d);
		return;
	}
	after = reach_set(d, g);
	if (after == NULL || d->before == NULL) {
		json_decref(after);
		http_reply_error(d->r, 503, "unavailable", NULL, "out of memory");
		diff_free(d);
		return;
	}
	if (!d->root_seen) {
		json_decref(after);
		http_reply_error(d->r, 404, "not_found", json_pack("{s:s}", "ref", d->root),
				 "node %s exists at neither point", d->root);
		diff_free(d);
		return;
	}
	reach = json_pack("{s:s,s:s,s:o,s:o}", "root", d->root, "direction",
			  d->dir == GRAPH_DIR_DEPENDENTS ? "dependents" : "dependencies", "added",
			  set_minus(after, d->before), "removed", set_minus(d->before, after));
	json_decref(after);
	if (d->depth >= 0)
		json_object_set_new(reach, "depth", json_integer(d->depth));
	json_object_set_new(d->body, "reach", reach);
	http_reply_json(d->r, 200, json_incref(d->body));
	diff_free(d);
}

static void
reach_from(void *arg, graph *g, const char *why)
{
	struct diff_req *d = arg;

	if (g == NULL) {
		http_reply_error(d->r, 503, "unavailable", NULL, "diff reach: %s", why);
		diff_free(d);
		return;
	}
	d->before = reach_set(d, g);
	history_graph_at(json_integer_value(json_object_get(json_object_get(d->body, "to"), "seq")),
			 reach_to, d);
}

static void
diff_done(void *arg, const struct db_result *res)
{
	struct diff_req *d = arg;
	json_t *reply = NULL, *err;

	if (res->status != DB_OK) {
		api_reply_db_error(d->r, res);
		diff_free(d);
		return;
	}
	if (PQntuples(res->res) == 1)
		reply = json_loads(PQgetvalue(res->res, 0, 0), 0, NULL);
	if ((err = json_object_get(reply, "error")) != NULL) {
		json_t *details = json_object_get(err, "details");

		http_reply_error(d->r, (int)json_integer_value(json_object_get(reply, "status")),
				 json_string_value(json_object_get(err, "code")),
				 details ? json_incref(details) : NULL, "%s",
				 json_string_value(json_object_get(err, "message")));
		json_decref(reply);
		diff_free(d);
		return;
	}
	d->body = json_incref(json_object_get(reply, "body"));
	json_decref(reply);
	if (!json_is_object(d->body)) {
		http_reply_error(d->r, 500, "internal", NULL, "unreadable database reply");
		diff_free(d);
		return;
	}
	if (d->root[0] == '\0') {
		http_reply_json(d->r, 200, json_incref(d->body));
		diff_free(d);
		return;
	}
	history_graph_at(
	    json_integer_value(json_object_get(json_object_get(d->body, "from"), "seq")),
	    reach_from, d);
}

static void
diff_start(struct http_req *r, const char *from, const char *to)
{
	static const char *const dirs[] = {"dependents", "dependencies", NULL};
	const char *root = http_query(r, "root"), *dir = http_query(r, "direction");
	char applied[32];
	const char *params[3] = {from, to, applied};
	struct diff_req *d;
	long depth;
	const char *why;

	if (!api_query_long(r, "depth", 0, DEPTH_MAX, -1, &depth))
		return;
	if (root != NULL && (why = model_ref_parse(root, NULL, NULL)) != NULL) {
		http_reply_bad(r, "root", "%s", why);
		return;
	}
	if (dir != NULL && strcmp(dir, dirs[0]) != 0 && strcmp(dir, dirs[1]) != 0) {
		http_reply_bad(r, "direction", "must be dependents or dependencies");
		return;
	}
	if (root == NULL && (dir != NULL || http_query(r, "depth") != NULL)) {
		http_reply_bad(r, "root", "is required with direction and depth");
		return;
	}
	if (!api_require_map(r))
		return;
	d = calloc(1, sizeof(*d));
	if (d == NULL) {
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
		return;
	}
	d->r = r;
	d->depth = depth;
	d->dir = dir != NULL && strcmp(dir, "dependencies") == 0 ? GRAPH_DIR_DEPENDENCIES
								 : GRAPH_DIR_DEPENDENTS;
	if (root != NULL)
		snprintf(d->root, sizeof(d->root), "%s", root);
	snprintf(applied, sizeof(applied), "%lld", tailer_applied(r->app->tailer));
	if (db_query(r->app->db, SQL_DIFF, params, diff_done, d) != 0) {
		diff_free(d);
		http_reply_error(r, 503, "unavailable", NULL, "out of memory");
	}
}

void
api_diff(struct http_req *r)
{
	static const char *const allowed[] = {"from", "to", "root", "direction", "depth", NULL};
	static const char *const msg =
	    "must be a seq, an RFC 3339 time or deployment:<id> (got \"%.60s\")";
	const char *from = http_query(r, "from"), *to = http_query(r, "to");

	if (!api_query_only(r, allowed, NULL))
		return;
	if (from == NULL) {
		http_reply_bad(r, "from", "is required");
		return;
	}
	if (!point_valid(from)) {
		http_reply_bad(r, "from", msg, from);
		return;
	}
	if (to != NULL && !point_valid(to)) {
		http_reply_bad(r, "to", msg, to);
		return;
	}
	diff_start(r, from, to);
}

void
api_deployment_diff(struct http_req *r)
{
	static const char *const allowed[] = {"root", "direction", "depth", NULL};
	const char *id = http_param(r, 0);
	char spec[64];
	uuid_t u;

	if (!api_query_only(r, allowed, NULL))
		return;
	if (strlen(id) != 36 || uuid_parse(id, u) != 0) {
		http_reply_bad(r, "id", "must be a deployment id (a UUID)");
		return;
	}
	snprintf(spec, sizeof(spec), "deployment:%s", id);
	diff_start(r, spec, spec);
}
