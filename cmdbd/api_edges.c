/*
 * api_edges.c — PUT /v1/edges and DELETE /v1/edges?from=&type=&to=.
 */
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "jv.h"
#include "model.h"
#include "sql.h"

/* Validates from/type/to; replies 400 and returns false on the first bad one. */
static bool
check_triple(struct http_req *r, const char *from, const char *type, const char *to)
{
	const char *why;

	if ((why = model_ref_parse(from, NULL, NULL)) != NULL) {
		http_reply_bad(r, "from", "%s", why);
		return false;
	}
	if (model_edge_type_index(type) < 0) {
		api_reply_not_allowed(r, "type", model_edge_types, MODEL_EDGE_TYPE_COUNT,
				      "must be one of " MODEL_EDGE_TYPES_LIST);
		return false;
	}
	if ((why = model_ref_parse(to, NULL, NULL)) != NULL) {
		http_reply_bad(r, "to", "%s", why);
		return false;
	}
	if (strcmp(from, to) == 0) {
		http_reply_error(r, 422, "unprocessable", NULL,
				 "an edge cannot connect %s to itself", from);
		return false;
	}
	return true;
}

static const struct jv_field edge_fields[] = {
    {"from", JV_STRING, true},	      {"type", JV_STRING, true}, {"to", JV_STRING, true},
    {"attributes", JV_OBJECT, false}, {NULL, JV_ANY, false},
};

void
api_edge_put(struct http_req *r)
{
	static const char *const no_params[] = {NULL};
	const char *from, *type, *to;
	json_t *attrs;
	char source[80], *attrs_text = NULL;

	if (!api_query_only(r, no_params, NULL))
		return;
	if (!api_body_fields(r, edge_fields))
		return;
	from = json_string_value(json_object_get(r->json, "from"));
	type = json_string_value(json_object_get(r->json, "type"));
	to = json_string_value(json_object_get(r->json, "to"));
	attrs = json_object_get(r->json, "attributes");
	if (!check_triple(r, from, type, to))
		return;
	if (attrs != NULL && !api_check_attributes(r, attrs, "attributes"))
		return;
	if (!api_hand_source(r, source))
		return;
	attrs_text = attrs ? json_dumps(attrs, JSON_COMPACT) : NULL;
	{
		const char *params[6] = {from, type, to, attrs_text, r->tok.name, source};

		api_call_db(r, SQL_EDGE_PUT, params, NULL);
	}
	free(attrs_text);
}

void
api_edge_delete(struct http_req *r)
{
	static const char *const allowed[] = {"from", "type", "to", NULL};
	const char *from = http_query(r, "from"), *type = http_query(r, "type");
	const char *to = http_query(r, "to");
	char source[80];

	if (!api_query_only(r, allowed, NULL))
		return;
	if (from == NULL || type == NULL || to == NULL) {
		http_reply_bad(r,
			       from == NULL   ? "from"
			       : type == NULL ? "type"
					      : "to",
			       "is required");
		return;
	}
	if (!check_triple(r, from, type, to))
		return;
	if (!api_hand_source(r, source))
		return;
	{
		const char *params[5] = {from, type, to, r->tok.name, source};

		api_call_db(r, SQL_EDGE_DELETE, params, NULL);
	}
}
