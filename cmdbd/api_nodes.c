/*
 * api_nodes.c — /v1/nodes: get, put, delete, list, per-node edges, health.
 *
 * GET of one node answers from the in-memory graph: the node's image kept by the
 * tailer, its derived last_seen_at, owners and edge counts (graph.h). Every other
 * handler validates its input here and makes one database call.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include "api.h"
#include "history.h"
#include "jv.h"
#include "model.h"
#include "app.h"
#include "sql.h"

static const char *const no_params[] = {NULL};
static const char *const as_of_param[] = {"as_of", NULL};

/* Adds "owners" and "edges":{"in","out"} from the graph; 304 on If-None-Match. */
static json_t *
decorate_node(struct http_req *r, json_t *body, int *status)
{
	const char *inm = http_header(r, "If-None-Match");
	const char *ref = json_string_value(json_object_get(body, "ref"));
	json_int_t version = json_integer_value(json_object_get(body, "version"));
	graph *g = r->app->g;
	long idx = ref ? graph_find(g, ref) : -1;
	size_t in = 0, out = 0;
	json_t *owners = NULL;
	char etag[40];

	snprintf(etag, sizeof(etag), "\"%lld\"", (long long)version);
	if (inm != NULL && api_etag_listed(inm, etag)) {
		*status = 304;
		json_decref(body);
		return NULL;
	}
	if (idx >= 0) {
		json_t *o = graph_owners(g, idx);

		graph_degree(g, idx, &in, &out);
		owners = json_incref(json_object_get(o, "owners"));
		json_decref(o);
	}
	json_object_set_new(body, "owners", owners ? owners : json_array());
	json_object_set_new(body, "edges",
			    json_pack("{s:I,s:I}", "in", (json_int_t)in, "out", (json_int_t)out));
	return body;
}

/*
 * The reply body: the image (which is "{...}" without last_seen_at) with
 * last_seen_at, owners and edges added before its closing brace. The keys are
 * in another order than the database reply's; the values are the same bytes.
 */
static char *
node_reply_text(const struct graph_node_view *v, const char *owners, size_t in, size_t out,
		size_t *len)
{
	size_t cap = v->len + strlen(owners) + 160;
	char *text = malloc(cap);
	int n;

	if (text == NULL || v->len < 2)
		goto fail;
	memcpy(text, v->json, v->len - 1);
	if (v->last_seen_at[0])
		n = snprintf(text + v->len - 1, cap - v->len + 1,
			     "%s\"last_seen_at\":\"%s\",\"owners\":%s,\"edges\":{\"in\":%zu,"
			     "\"out\":%zu}}",
			     v->len > 2 ? "," : "", v->last_seen_at, owners, in, out);
	else
		n = snprintf(text + v->len - 1, cap - v->len + 1,
			     "%s\"last_seen_at\":null,\"owners\":%s,\"edges\":{\"in\":%zu,"
			     "\"out\":%zu}}",
			     v->len > 2 ? "," : "", owners, in, out);
	if (n < 0 || (size_t)n >= cap - v->len + 1)
		goto fail;
	*len = v->len - 1 + (size_t)n;
	return text;
fail:
	free(text);
	return NULL;
}

void
api_node_get(struct http_req *r)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], ref[MODEL_REF_MAX + 2];
	const char *params[2] = {kind, name};
	const char *inm = http_header(r, "If-None-Match");
	graph *g = r->app->g;
	struct graph_node_view v;
	char etag[40], *owners = NULL, *text = NULL;
	size_t in = 0, out = 0, len = 0;
	long idx;
	int rc;

	if (!api_query_only(r, as_of_param, NULL) || !api_path_ref(r, kind, name, ref) ||
	    !api_require_map(r))
		return;
	if (http_query(r, "as_of") != NULL) { /* SPEC §5: the node of a past moment */
		if ((g = history_graph(r, api_node_get)) != NULL)
			api_history_node_get(r, g, ref);
		return;
	}
	idx = graph_find(g, ref);
	if (idx < 0) {
		/* As cmdb_node_not_found() words it. */
		http_reply_error(r, 404, "not_found", json_pack("{s:s}", "ref", ref),
				 "node %s not found", ref);
		return;
	}
	if ((rc = graph_node_view(g, idx, &v)) != 0) {
		if (rc == GRAPH_ENOMEM) {
			http_reply_nomem(r);
			return;
		}
		/* No image in memory (or one jansson cannot read): ask the database. */
		api_call_db(r, SQL_NODE_GET, params, decorate_node);
		return;
	}
	snprintf(etag, sizeof(etag), "\"%lld\"", v.version);
	http_set_header(r, "ETag", etag);
	if (inm != NULL && api_etag_listed(inm, etag)) {
		http_reply_empty(r, 304);
		return;
	}
	graph_degree(g, idx, &in, &out);
	owners = graph_owners_text(g, idx, true, &len);
	if (owners != NULL)
		text = node_reply_text(&v, owners, in, out, &len);
	if (text == NULL)
		http_reply_nomem(r);
	else
		http_reply_raw(r, 200, text, len);
	free(owners);
	free(text);
}

/*
 * After a successful node write: a reply that changed nothing visible (no change
 * row) still refreshed the node's last_seen_at (a hand PUT) or health_at (a
 * health PUT) in the database; merge those into the image (graph.h).
 */
static json_t *
refresh_node(struct http_req *r, json_t *body, bool health)
{
	const char *ref = json_string_value(json_object_get(body, "ref"));
	const char *id = json_string_value(json_object_get(body, "id"));

	if (ref != NULL && id != NULL)
		(void)graph_node_refresh(
		    r->app->g, ref, id,
		    /* a health reply's last_seen_at is the derived one, not the stored
		     * column the image holds: only a hand PUT refreshes that */
		    health ? NULL : json_string_value(json_object_get(body, "last_seen_at")),
		    health ? json_string_value(json_object_get(body, "health_at")) : NULL);
	return body;
}

static json_t *
refresh_after_put(struct http_req *r, json_t *body, int *status)
{
	(void)status;
	return refresh_node(r, body, false);
}

static json_t *
refresh_after_health(struct http_req *r, json_t *body, int *status)
{
	(void)status;
	return refresh_node(r, body, true);
}

static const struct jv_field node_put_fields[] = {
    {"attributes", JV_OBJECT, false},
    {"labels", JV_STRING_MAP, false},
    {NULL, JV_ANY, false},
};

void
api_node_put(struct http_req *r)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], source[80], ifm[32];
	const char *ifm_param;
	json_t *attrs, *labels;
	char *attrs_text = NULL, *labels_text = NULL;

	if (!api_query_only(r, no_params, NULL) || !api_path_ref(r, kind, name, NULL))
		return;
	if (!api_body_fields(r, node_put_fields))
		return;
	attrs = json_object_get(r->json, "attributes");
	labels = json_object_get(r->json, "labels");
	if (attrs != NULL && !api_check_attributes(r, attrs, "attributes"))
		return;
	if (labels != NULL && !api_check_attributes(r, labels, "labels"))
		return;
	if (!api_if_match(r, ifm, &ifm_param))
		return;
	if (!api_hand_source(r, source))
		return;
	attrs_text = attrs ? json_dumps(attrs, JSON_COMPACT) : NULL;
	labels_text = labels ? json_dumps(labels, JSON_COMPACT) : NULL;
	{
		const char *params[7] = {kind,	    name,	 attrs_text, labels_text,
					 ifm_param, r->tok.name, source};

		api_call_db(r, SQL_NODE_PUT, params, refresh_after_put);
	}
	free(attrs_text);
	free(labels_text);
}

void
api_node_delete(struct http_req *r)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], source[80], ifm[32];
	const char *ifm_param;

	if (!api_query_only(r, no_params, NULL) || !api_path_ref(r, kind, name, NULL))
		return;
	if (!api_if_match(r, ifm, &ifm_param))
		return;
	if (!api_hand_source(r, source))
		return;
	{
		const char *params[5] = {kind, name, ifm_param, r->tok.name, source};

		api_call_db(r, SQL_NODE_DELETE, params, NULL);
	}
}

/*
 * Adds "labels": {k: v, ...} to filter from every label=KEY:VALUE parameter (all
 * must match). Replies 400 and returns false on a malformed or contradictory one.
 */
static bool
label_filter(struct http_req *r, json_t *filter)
{
	struct evkeyval *kv;
	json_t *labels = NULL;

	TAILQ_FOREACH(kv, &r->query, next)
	{
		const char *colon, *have;
		size_t klen;

		if (strcmp(kv->key, "label") != 0)
			continue;
		klen = model_label_filter_key(kv->value);
		if (klen == 0) {
			http_reply_bad(r, "label", "must be KEY:VALUE");
			goto fail;
		}
		colon = kv->value + klen;
		if (labels == NULL && (labels = json_object()) == NULL)
			goto oom;
		{
			char *key = strndup(kv->value, (size_t)(colon - kv->value));

			if (key == NULL)
				goto oom;
			have = json_string_value(json_object_get(labels, key));
			if (have != NULL && strcmp(have, colon + 1) != 0) {
				http_reply_bad(r, "label",
					       "asks for %s twice with different values", key);
				free(key);
				goto fail;
			}
			json_object_set_new(labels, key, json_string(colon + 1));
			free(key);
		}
	}
	if (labels != NULL)
		json_object_set_new(filter, "labels", labels);
	return true;
oom:
	http_reply_nomem(r);
fail:
	json_decref(labels);
	return false;
}

void
api_node_list(struct http_req *r)
{
	static const char *const allowed[] = {"kind",	"label", "owner",  "q", "orphan",
					      "health", "limit", "cursor", NULL};
	static const char *const repeatable[] = {"label", NULL};
	const char *kind = http_query(r, "kind");
	const char *owner = http_query(r, "owner"), *q = http_query(r, "q");
	const char *health = http_query(r, "health"), *cursor = http_query(r, "cursor");
	json_t *filter;
	long limit;
	int orphan;
	char *text;

	if (!api_query_only(r, allowed, repeatable) ||
	    !api_query_long(r, "limit", 1, MODEL_PAGE_MAX, MODEL_PAGE_DEFAULT, &limit) ||
	    !api_query_bool(r, "orphan", -1, &orphan))
		return;
	if (kind != NULL && !model_kind_valid(kind)) {
		http_reply_bad(r, "kind", "must match " MODEL_KIND_PATTERN);
		return;
	}
	if (owner != NULL && model_ref_parse(owner, NULL, NULL) != NULL) {
		http_reply_bad(r, "owner", "%s", model_ref_parse(owner, NULL, NULL));
		return;
	}
	if (health != NULL && !model_health_valid(health)) {
		api_reply_not_allowed(r, "health", model_health_states, MODEL_HEALTH_COUNT,
				      "must be one of " MODEL_HEALTH_LIST);
		return;
	}
	if (q != NULL &&
	    (*q == '\0' || strlen(q) > MODEL_REF_MAX || !model_utf8_valid(q, strlen(q)))) {
		http_reply_bad(r, "q", "must be a non-empty prefix of at most %d bytes",
			       MODEL_REF_MAX);
		return;
	}
	if (cursor != NULL && (*cursor == '\0' || strlen(cursor) > MODEL_CURSOR_MAX)) {
		http_reply_bad(r, "cursor", "is not a cursor this server issued");
		return;
	}
	filter = json_pack("{s:I}", "limit", (json_int_t)limit);
	if (filter == NULL || !label_filter(r, filter)) {
		json_decref(filter);
		return;
	}
	if (kind)
		json_object_set_new(filter, "kind", json_string(kind));
	if (owner)
		json_object_set_new(filter, "owner", json_string(owner));
	if (q)
		json_object_set_new(filter, "q", json_string(q));
	if (health)
		json_object_set_new(filter, "health", json_string(health));
	if (cursor)
		json_object_set_new(filter, "cursor", json_string(cursor));
	if (orphan >= 0)
		json_object_set_new(filter, "orphan", json_boolean(orphan));
	text = json_dumps(filter, JSON_COMPACT);
	json_decref(filter);
	if (text == NULL) {
		http_reply_nomem(r);
		return;
	}
	{
		const char *params[1] = {text};

		api_call_db(r, SQL_NODE_LIST, params, NULL);
	}
	free(text);
}

void
api_node_edges(struct http_req *r)
{
	static const char *const allowed[] = {"direction", "type", "as_of", NULL};
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], ref[MODEL_REF_MAX + 2];
	graph *g;
	const char *dir = http_query(r, "direction"), *type = http_query(r, "type");

	if (!api_query_only(r, allowed, NULL) || !api_path_ref(r, kind, name, ref))
		return;
	if (dir == NULL)
		dir = "both";
	if (strcmp(dir, "in") != 0 && strcmp(dir, "out") != 0 && strcmp(dir, "both") != 0) {
		http_reply_bad(r, "direction", "must be in, out or both");
		return;
	}
	if (type != NULL && model_edge_type_index(type) < 0) {
		api_reply_not_allowed(r, "type", model_edge_types, MODEL_EDGE_TYPE_COUNT,
				      "must be one of " MODEL_EDGE_TYPES_LIST);
		return;
	}
	if (http_query(r, "as_of") != NULL) { /* SPEC §5: from the as-of graph and log */
		if ((g = history_graph(r, api_node_edges)) != NULL)
			api_history_node_edges(r, g, ref, dir, type);
		return;
	}
	{
		const char *params[4] = {kind, name, dir, type};

		api_call_db(r, SQL_NODE_EDGES, params, NULL);
	}
}

static const struct jv_field health_fields[] = {
    {"state", JV_STRING, true},
    {"reason", JV_STRING, false},
    {NULL, JV_ANY, false},
};

void
api_node_health(struct http_req *r)
{
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1], source[80];
	const char *state, *reason;

	if (!api_query_only(r, no_params, NULL) || !api_path_ref(r, kind, name, NULL))
		return;
	if (!api_body_fields(r, health_fields))
		return;
	state = json_string_value(json_object_get(r->json, "state"));
	reason = json_string_value(json_object_get(r->json, "reason"));
	if (!model_health_valid(state)) {
		api_reply_not_allowed(r, "state", model_health_states, MODEL_HEALTH_COUNT,
				      "must be one of " MODEL_HEALTH_LIST);
		return;
	}
	if (reason != NULL && strlen(reason) > MODEL_HEALTH_REASON_MAX) {
		http_reply_bad(r, "reason", "is longer than %d bytes", MODEL_HEALTH_REASON_MAX);
		return;
	}
	api_actor_source(r, source); /* status, not an assertion: any write token */
	{
		const char *params[6] = {kind, name, state, reason, r->tok.name, source};

		api_call_db(r, SQL_NODE_HEALTH, params, refresh_after_health);
	}
}
