/*
 * api_sources.c — GET /v1/sources (every manifest source, its TTL and whether it has
 * expired) and GET /v1/drift (observed against declared edges), SPEC §5.
 *
 * Both are one call of a SQL function of migrations/0007_sources.sql; this file only
 * validates the query parameters. The sweeper that expires sources is sweeper.c.
 */
#include <stdio.h>
#include <string.h>

#include "api.h"
#include "model.h"
#include "app.h"
#include "sql.h"

#define SOURCES_LIMIT_MAX 1000
#define SOURCES_LIMIT_DEFAULT 100
#define DRIFT_TYPES_DEFAULT "depends_on,connects_to"
#define OBSERVED_PREFIX "observed:"

void
api_sources(struct http_req *r)
{
	static const char *const allowed[] = {"limit", "cursor", NULL};
	const char *cursor = http_query(r, "cursor");
	char limit_text[16], ttl_text[24];
	long limit;
	long ttl = r->app->cfg->source_ttl;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "limit", 1, SOURCES_LIMIT_MAX, SOURCES_LIMIT_DEFAULT, &limit))
		return;
	if (cursor != NULL && (*cursor == '\0' || strlen(cursor) > 2 * MODEL_SOURCE_MAX)) {
		http_reply_bad(r, "cursor", "is not a cursor this server issued");
		return;
	}
	snprintf(limit_text, sizeof(limit_text), "%ld", limit);
	snprintf(ttl_text, sizeof(ttl_text), "%ld", ttl);
	{
		/* The server's --source-ttl applies to sources whose manifest sets none. */
		const char *params[3] = {ttl > 0 ? ttl_text : NULL, limit_text, cursor};

		api_call_db(r, SQL_SOURCES, params, NULL);
	}
}

/*
 * Checks a comma list of edge types ("depends_on,connects_to") and copies it into out
 * for string_to_array. Returns false when it is too long, empty, or names something
 * else (an empty item included).
 */
static bool
types_parse(const char *list, char *out, size_t size)
{
	char item[32];

	if (*list == '\0' || strlen(list) >= size)
		return false;
	for (const char *p = list;; p++) {
		size_t n = strcspn(p, ",");

		if (n >= sizeof(item))
			return false;
		memcpy(item, p, n);
		item[n] = '\0';
		if (model_edge_type_index(item) < 0)
			return false;
		p += n;
		if (*p == '\0')
			break;
	}
	strcpy(out, list);
	return true;
}

void
api_drift(struct http_req *r)
{
	static const char *const allowed[] = {"observer", "types", NULL};
	const char *observer = http_query(r, "observer"), *types = http_query(r, "types");
	char list[128];

	if (!api_query_only(r, allowed, NULL))
		return;
	if (observer != NULL &&
	    (!model_source_valid(observer) ||
	     strncmp(observer, OBSERVED_PREFIX, strlen(OBSERVED_PREFIX)) != 0)) {
		http_reply_bad(r, "observer",
			       "must be an observed source: observed: and then [a-z0-9_.:-] "
			       "(got \"%.60s\")",
			       observer);
		return;
	}
	if (!types_parse(types != NULL ? types : DRIFT_TYPES_DEFAULT, list, sizeof(list))) {
		http_reply_bad(r, "types", "must be a comma list of " MODEL_EDGE_TYPES_LIST);
		return;
	}
	{
		const char *params[2] = {observer, list};

		api_call_db(r, SQL_DRIFT, params, NULL);
	}
}
