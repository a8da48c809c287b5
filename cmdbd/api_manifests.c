/*
 * api_manifests.c — POST /v1/manifests (apply or plan a deploy manifest) and
 * GET /v1/deployments.
 *
 * The manifest is validated here (manifest.c), the token's source glob is checked,
 * and then the whole apply is one call of cmdb_post_manifest(): one transaction,
 * all or nothing, with idempotency, generations and dry runs handled inside it. An
 * identical re-post is recognised there by the fingerprint computed here, without
 * PostgreSQL parsing the body.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "manifest.h"
#include "metrics.h"
#include "model.h"
#include "app.h"
#include "sql.h"

#define IDEMPOTENCY_KEY_MAX 255

static json_t *
count_outcome(struct http_req *r, json_t *body, int *status)
{
	(void)r;
	(void)status;
	if (json_is_null(json_object_get(body, "deployment_id")))
		metrics_count_manifest("dry_run");
	else if (json_is_null(json_object_get(body, "seq")))
		metrics_count_manifest("noop");
	else
		metrics_count_manifest("applied");
	return body;
}

static bool
idempotency_key_valid(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > IDEMPOTENCY_KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return false;
	return true;
}

/* One call of cmdb_post_manifest(): the fast no-op when the fingerprint matches the
 * source's last manifest, else the whole apply. The deployment and extensions go
 * separately so the no-op can record the deployment without the body. */
static void
post_manifest(struct http_req *r, const char *source, const char *key, int dry_run)
{
	const json_t *gen = json_object_get(r->json, "generation");
	const json_t *dep = json_object_get(r->json, "deployment");
	const json_t *ext = json_object_get(r->json, "extensions");
	char hex[MANIFEST_FINGERPRINT_HEX + 1], gen_text[24], ttl_text[24];
	long long ttl = manifest_ttl(r->json);
	char *dep_text = NULL, *ext_text = NULL;

	if (ttl > 0)
		snprintf(ttl_text, sizeof(ttl_text), "%lld", ttl);
	if (json_is_integer(gen))
		snprintf(gen_text, sizeof(gen_text), "%" JSON_INTEGER_FORMAT,
			 json_integer_value(gen));
	if (manifest_fingerprint(r->json, hex) != 0 ||
	    (dep != NULL && (dep_text = json_dumps(dep, JSON_COMPACT)) == NULL) ||
	    (ext != NULL && (ext_text = json_dumps(ext, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)) {
		http_reply_nomem(r);
		goto out;
	}
	{
		const char *params[11] = {r->body,
					  source,
					  r->tok.name,
					  r->tok.name,
					  key,
					  dry_run ? "true" : "false",
					  hex,
					  json_is_integer(gen) ? gen_text : NULL,
					  dep_text,
					  ext_text,
					  ttl > 0 ? ttl_text : NULL};

		api_call_db(r, SQL_MANIFEST_APPLY, params, count_outcome);
	}
out:
	free(dep_text);
	free(ext_text);
}

void
api_manifest_post(struct http_req *r)
{
	static const char *const allowed[] = {"dry_run", NULL};
	const struct cfg *cfg = r->app->cfg;
	struct manifest_limits lim = {cfg->manifest_max_nodes, cfg->manifest_max_edges};
	struct jv_err err = {0};
	const char *source, *key = http_header(r, "Idempotency-Key");
	int dry_run;

	if (!api_query_only(r, allowed, NULL) || !api_query_bool(r, "dry_run", 0, &dry_run))
		return;
	if (key != NULL && !idempotency_key_valid(key)) {
		http_reply_bad(r, "Idempotency-Key",
			       "must be 1-%d printable ASCII characters without spaces",
			       IDEMPOTENCY_KEY_MAX);
		return;
	}
	if (!manifest_validate(r->json, &lim, &err)) {
		metrics_count_manifest("rejected");
		if (err.status == 503)
			http_reply_nomem(r);
		else if (err.status == 413)
			http_reply_error(r, 413, "payload_too_large",
					 json_pack("{s:s}", "field", err.path), "%s: %s", err.path,
					 err.msg);
		else
			http_reply_bad(r, err.path, "%s", err.msg);
		return;
	}
	source = json_string_value(json_object_get(r->json, "source"));
	if (!auth_source_allowed(&r->tok, source)) {
		metrics_count_manifest("rejected");
		http_reply_error(
		    r, 403, "forbidden",
		    json_pack("{s:s,s:s}", "source", source, "allowed", r->tok.source_glob),
		    "token %s may not write source %s (allowed: %s)", r->tok.name, source,
		    r->tok.source_glob);
		return;
	}
	post_manifest(r, source, key, dry_run);
}

void
api_deployments(struct http_req *r)
{
	static const char *const allowed[] = {"node", "limit", "cursor", NULL};
	const char *node = http_query(r, "node"), *cursor = http_query(r, "cursor");
	char limit_text[16];
	long limit;

	if (!api_query_only(r, allowed, NULL) ||
	    !api_query_long(r, "limit", 1, MODEL_PAGE_MAX, MODEL_PAGE_DEFAULT, &limit))
		return;
	if (node != NULL && model_ref_parse(node, NULL, NULL) != NULL) {
		http_reply_bad(r, "node", "%s", model_ref_parse(node, NULL, NULL));
		return;
	}
	if (cursor != NULL && (*cursor == '\0' || strlen(cursor) > MODEL_CURSOR_MAX)) {
		http_reply_bad(r, "cursor", "is not a cursor this server issued");
		return;
	}
	snprintf(limit_text, sizeof(limit_text), "%ld", limit);
	{
		const char *params[3] = {node, limit_text, cursor};

		api_call_db(r, SQL_DEPLOYMENTS, params, NULL);
	}
}
