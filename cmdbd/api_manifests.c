/*
 * api_manifests.c — POST /v1/manifests (apply or plan a deploy manifest) and
 * GET /v1/deployments.
 *
 * The manifest is validated here (manifest.c), the token's source glob is checked,
 * and then the whole apply is one call of cmdb_post_manifest(): one transaction,
 * all or nothing, with idempotency, generations and dry runs handled inside it. An
 * identical re-post is recognised there by the fingerprint computed here, without
 * PostgreSQL parsing the body — or, when this process already knows the fingerprint
 * as the source's last (noop.h), sent with the other such re-posts in one batch, one
 * commit for all; the database checks each and refuses what is not a no-op, which
 * then goes alone.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "manifest.h"
#include "metrics.h"
#include "model.h"
#include "app.h"
#include "noop.h"
#include "sql.h"

#define IDEMPOTENCY_KEY_MAX 255

/* A manifest on its way to the database: r->state from api_manifest_post() on. */
struct post {
	char *source;	 /* owned */
	const char *key; /* Idempotency-Key, or NULL */
	bool dry_run;
	bool hashed;   /* body_hash is the raw body's (no key, not a dry run) */
	bool by_bytes; /* known by its bytes: not parsed */
	unsigned char body_hash[NOOP_BODY_HASH];
	char fp[MANIFEST_FINGERPRINT_HEX + 1];
	char gen[24], ttl[24]; /* decimal; "" = none */
	char *dep, *ext;       /* the deployment and extensions as JSON text, or NULL */
};

static void
post_free(void *arg)
{
	struct post *p = arg;

	free(p->source);
	free(p->dep);
	free(p->ext);
	free(p);
}

/* The post as a batch item (noop.h); actor the caller's. */
static struct noop_item
post_item(const struct http_req *r, const struct post *p)
{
	struct noop_item it = {.source = p->source,
			       .fp = p->fp,
			       .actor = r->tok.name,
			       .generation = p->gen[0] ? p->gen : NULL,
			       .deployment = p->dep,
			       .extensions = p->ext,
			       .ttl = p->ttl[0] ? p->ttl : NULL,
			       .by_bytes = p->by_bytes};

	return it;
}

/* Counts the outcome; a real apply or no-op (not a replay: no key) teaches the no-op
 * memory that the source's manifest is now this one, and these bytes. */
static json_t *
count_outcome(struct http_req *r, json_t *body, int *status)
{
	const struct post *p = r->state;
	struct noop_item it;

	(void)status;
	if (json_is_null(json_object_get(body, "deployment_id"))) {
		metrics_count_manifest("dry_run");
		return body;
	}
	if (json_is_null(json_object_get(body, "seq")))
		metrics_count_manifest("noop");
	else
		metrics_count_manifest("applied");
	if (p->hashed) {
		noop_learn(r->app->noop, p->source, p->fp,
			   graph_source_seen_at(r->app->g, p->source));
		it = post_item(r, p);
		noop_remember_body(r->app->noop, p->body_hash, &it);
	}
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

static void
apply_done(void *arg, const struct db_result *res)
{
	api_reply_db(arg, res, count_outcome);
}

/* One call of cmdb_post_manifest_ttl(): the fast no-op when the fingerprint matches the
 * source's last manifest, else the whole apply. The deployment and extensions go
 * separately so the no-op can record the deployment without the body. */
static void
apply_alone(struct http_req *r)
{
	const struct post *p = r->state;
	const char *params[11] = {r->body,
				  p->source,
				  r->tok.name,
				  r->tok.name,
				  p->key,
				  p->dry_run ? "true" : "false",
				  p->fp,
				  p->gen[0] ? p->gen : NULL,
				  p->dep,
				  p->ext,
				  p->ttl[0] ? p->ttl : NULL};

	if (db_query(r->app->db, SQL_MANIFEST_APPLY, params, apply_done, r) != 0)
		http_reply_nomem(r);
}

/* The batcher's answer (noop.h): the no-op's reply, or post it alone. */
static void
noop_done(void *arg, const char *reply, const struct db_result *failed)
{
	struct http_req *r = arg;
	const struct post *p = r->state;

	if (reply != NULL) {
		api_reply_db_text(r, reply, count_outcome);
		return;
	}
	/* The batch's fate is unknown (connection lost, shutting down): as for one post. */
	if (failed != NULL && failed->status == DB_UNAVAILABLE) {
		api_reply_db_error(r, failed);
		return;
	}
	/* Not a no-op after all (another process applied something newer, the source is
	 * stale or expired, its row busy), or the batch failed: the full path decides. */
	if (failed == NULL)
		noop_forget(r->app->noop, p->source, p->fp);
	apply_alone(r);
}

/* To the next no-op batch (noop.h), or, out of memory there, alone. */
static void
submit(struct http_req *r)
{
	const struct noop_item it = post_item(r, r->state);

	if (noop_submit(r->app->noop, &it, noop_done, r) != 0)
		apply_alone(r);
}

/*
 * A re-post of the very bytes this process saw applied last for their source: the
 * same manifest, valid and of the same fingerprint, so no parse, validation or
 * fingerprint — the bytes' hash and a look-up (noop.h). False when it is not one
 * (nothing replied yet).
 */
static bool
post_known_bytes(struct http_req *r, struct post *p)
{
	const struct noop_item *it = noop_body_item(r->app->noop, p->body_hash);

	/* The token may write it (else the full path answers 403 as it always did). */
	if (it == NULL || !auth_source_allowed(&r->tok, it->source))
		return false;
	p->source = strdup(it->source);
	p->dep = it->deployment ? strdup(it->deployment) : NULL;
	p->ext = it->extensions ? strdup(it->extensions) : NULL;
	if (p->source == NULL || (it->deployment && !p->dep) || (it->extensions && !p->ext)) {
		http_reply_nomem(r);
		return true;
	}
	snprintf(p->fp, sizeof(p->fp), "%s", it->fp);
	snprintf(p->gen, sizeof(p->gen), "%s", it->generation ? it->generation : "");
	snprintf(p->ttl, sizeof(p->ttl), "%s", it->ttl ? it->ttl : "");
	p->by_bytes = true;
	submit(r);
	return true;
}

/*
 * The parsed manifest: its arguments, then an identical re-post of the manifest the
 * memory holds for the source (no key, not a dry run) joins the next no-op batch
 * (noop.h); everything else, and a re-post the batch refuses, is one call of
 * cmdb_post_manifest_ttl().
 */
static void
post_manifest(struct http_req *r, struct post *p, const char *source)
{
	const json_t *gen = json_object_get(r->json, "generation");
	const json_t *dep = json_object_get(r->json, "deployment");
	const json_t *ext = json_object_get(r->json, "extensions");
	long long ttl = manifest_ttl(r->json);

	if (ttl > 0)
		snprintf(p->ttl, sizeof(p->ttl), "%lld", ttl);
	if (json_is_integer(gen))
		snprintf(p->gen, sizeof(p->gen), "%" JSON_INTEGER_FORMAT, json_integer_value(gen));
	if ((p->source = strdup(source)) == NULL || manifest_fingerprint(r->json, p->fp) != 0 ||
	    (dep != NULL && (p->dep = json_dumps(dep, JSON_COMPACT)) == NULL) ||
	    (ext != NULL && (p->ext = json_dumps(ext, JSON_COMPACT | JSON_ENCODE_ANY)) == NULL)) {
		http_reply_nomem(r);
		return;
	}
	if (p->hashed && noop_known(r->app->noop, source, p->fp))
		submit(r);
	else
		apply_alone(r);
}

void
api_manifest_post(struct http_req *r)
{
	static const char *const allowed[] = {"dry_run", NULL};
	const struct cfg *cfg = r->app->cfg;
	struct manifest_limits lim = {cfg->manifest_max_nodes, cfg->manifest_max_edges};
	struct jv_err err = {0};
	const char *source, *key = http_header(r, "Idempotency-Key");
	struct post *p;
	int dry_run;

	if (!api_query_only(r, allowed, NULL) || !api_query_bool(r, "dry_run", 0, &dry_run))
		return;
	if (key != NULL && !idempotency_key_valid(key)) {
		http_reply_bad(r, "Idempotency-Key",
			       "must be 1-%d printable ASCII characters without spaces",
			       IDEMPOTENCY_KEY_MAX);
		return;
	}
	if ((p = calloc(1, sizeof(*p))) == NULL) {
		http_reply_nomem(r);
		return;
	}
	r->state = p;
	r->state_free = post_free;
	p->key = key;
	p->dry_run = dry_run != 0;
	/* A plan or a keyed post is never a batched no-op (both take the full path). */
	if (key == NULL && !dry_run) {
		noop_body_hash(r->body, r->body_len, p->body_hash);
		p->hashed = true;
		if (post_known_bytes(r, p))
			return;
	}
	if (!http_parse_json(r))
		return;
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
	post_manifest(r, p, source);
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
