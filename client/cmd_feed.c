/*
 * cmd_feed.c — writers and the change feed: push (manifests) and changes
 * (one page, or --follow long-polling until interrupted).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "client.h"
#include "fmt.h"
#include "ref.h"
#include "table.h"

/* Manifests over this are refused locally; the server's own limit is lower. */
#define PUSH_MAX_BYTES ((size_t)64 * 1024 * 1024)

/* ----------------------------------------------------------------- push */

/* Reads all of path ("-" = stdin) into b. Returns 0 or an exit code. */
static int
read_input(struct cmdb *c, const char *path, struct buf *b)
{
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (f == NULL)
		return cmdb_usage(c, "cannot open %s: %s", path, strerror(errno));
	char chunk[65536];
	size_t n;
	int rc = 0;
	while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
		if (b->len + n > PUSH_MAX_BYTES) {
			rc = cmdb_usage(c, "%s is larger than %zu MiB", path, PUSH_MAX_BYTES >> 20);
			break;
		}
		cl_buf_append(b, chunk, n);
	}
	if (rc == 0 && ferror(f))
		rc = cmdb_usage(c, "cannot read %s: %s", path, strerror(errno));
	if (f != stdin)
		fclose(f);
	return rc;
}

/* "nodes:  1 created, 2 updated, 3 unchanged" for the members that exist. */
static void
print_counts(const char *label, const json_t *counts)
{
	static const char *const keys[] = {"created", "updated", "removed", "unchanged"};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		const json_t *v = json_object_get(counts, keys[i]);
		if (v == NULL)
			continue;
		char *text = cl_json_text(v);
		cl_buf_printf(&b, "%s%s %s", b.len ? ", " : "", text, keys[i]);
		free(text);
	}
	printf("%-12s%s\n", label, b.len ? cl_buf_str(&b) : "-");
	cl_buf_free(&b);
}

static int
print_push_report(const struct cmdb_reply *r, bool dry_run)
{
	const json_t *rep = r->json;
	const json_t *nodes = json_object_get(rep, "nodes"), *edges = json_object_get(rep, "edges");
	if (!json_is_object(nodes) || !json_is_object(edges))
		return cmdb_bad_reply(r, "the manifest report lacks \"nodes\" or \"edges\" counts");
	print_counts("nodes:", nodes);
	print_counts("edges:", edges);
	char *orphaned = cl_fmt_join(json_object_get(rep, "orphaned"), ", ");
	char *clean = cl_text_sanitize(orphaned[0] ? orphaned : "-");
	printf("%-12s%s\n", "orphaned:", clean);
	free(clean);
	free(orphaned);
	const json_t *dep = json_object_get(rep, "deployment_id");
	if (dep && !json_is_null(dep)) {
		char *id = cl_json_text(dep);
		printf("%-12s%s\n", "deployment:", id);
		free(id);
	}
	const json_t *seq = json_object_get(rep, "seq");
	if (seq && !json_is_null(seq)) {
		char *s = cl_json_text(seq);
		printf("%-12s%s\n", "seq:", s);
		free(s);
	}
	if (dry_run)
		puts("(dry run: nothing written)");
	return 0;
}

int
cmd_push(struct cmdb *c)
{
	struct buf body = BUF_INIT;
	bool dry_run = cl_args_has(c->args, "dry-run");
	const char *key = cl_args_get(c->args, "idempotency-key");
	int rc = read_input(c, c->args->pos[0], &body);
	if (rc != 0)
		goto out;
	if (key && (key[0] == '\0' || strlen(key) > 255)) {
		rc = cmdb_usage(c, "--idempotency-key must be 1-255 characters");
		goto out;
	}
	const char *hdrs[] = {"Idempotency-Key", key, NULL};
	struct cmdb_reply r;
	rc = cmdb_request(
	    c,
	    &(struct cmdb_call){.method = "POST",
				.target = dry_run ? "/v1/manifests?dry_run=true" : "/v1/manifests",
				.body = cl_buf_str(&body),
				.body_len = body.len,
				.headers = hdrs},
	    &r);
	if (rc != 0)
		goto out;
	if (c->json)
		cmdb_print_json(r.json);
	else
		rc = print_push_report(&r, dry_run);
	cmdb_reply_free(&r);
out:
	cl_buf_free(&body);
	return rc;
}

/* -------------------------------------------------------------- changes */

/* Prints one change as "seq at actor op ref" (or compact JSON with --json). */
static void
print_change(const struct cmdb *c, const json_t *ch)
{
	if (c->json) {
		char *s = cmdb_dump(ch);
		puts(s);
		free(s);
		return;
	}
	static const char *const keys[] = {"seq", "at", "actor", "op", "ref"};
	struct buf line = BUF_INIT;
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		char *text = cl_json_text(json_object_get(ch, keys[i]));
		cl_buf_printf(&line, "%s%s", i ? " " : "", text);
		free(text);
	}
	char *clean = cl_text_sanitize(cl_buf_str(&line));
	puts(clean);
	free(clean);
	cl_buf_free(&line);
}

/* Fetches one batch after *since, prints it and advances *since. */
static int
changes_batch(struct cmdb *c, long long *since, long long wait, long long limit)
{
	struct buf t = BUF_INIT;
	struct cmdb_reply r;
	char num[32];
	cl_buf_puts(&t, "/v1/changes");
	snprintf(num, sizeof num, "%lld", *since);
	cl_query_add(&t, "since", num);
	if (limit > 0) {
		snprintf(num, sizeof num, "%lld", limit);
		cl_query_add(&t, "limit", num);
	}
	if (wait > 0) {
		snprintf(num, sizeof num, "%lld", wait);
		cl_query_add(&t, "wait", num);
	}
	/* a long poll may legitimately take `wait` seconds before any byte arrives */
	int timeout = wait > 0 ? (int)(wait * 1000) + c->timeout_ms : 0;
	int rc = cmdb_request(
	    c,
	    &(struct cmdb_call){.method = "GET", .target = cl_buf_str(&t), .timeout_ms = timeout},
	    &r);
	cl_buf_free(&t);
	if (rc != 0)
		return rc;
	const json_t *changes = json_object_get(r.json, "changes");
	const json_t *next = json_object_get(r.json, "next");
	if (!json_is_array(changes) || !json_is_integer(next)) {
		rc = cmdb_bad_reply(&r, "expected {\"changes\": [...], \"next\": SEQ}");
	} else if (c->json && wait == 0) {
		cmdb_print_json(r.json);
		*since = json_integer_value(next);
	} else {
		size_t i;
		json_t *ch;
		json_array_foreach((json_t *)changes, i, ch) print_change(c, ch);
		if (json_integer_value(next) > *since)
			*since = json_integer_value(next);
	}
	cmdb_reply_free(&r);
	return rc;
}

int
cmd_changes(struct cmdb *c)
{
	long long since = 0, limit = 0, wait = 30;
	if (cmdb_number(c, "since", 0, 0x7fffffffffffffffLL, &since) < 0 ||
	    cmdb_number(c, "limit", 1, 100000, &limit) < 0 ||
	    cmdb_number(c, "wait", 1, 60, &wait) < 0)
		return CMDB_EXIT_USAGE;
	if (!cl_args_has(c->args, "follow"))
		return changes_batch(c, &since, 0, limit);

	/* Follow until killed (SIGINT, or SIGPIPE when the reader goes away).
	 * Network trouble and 5xx are retried with backoff; anything else
	 * (auth, bad arguments) will not get better and ends the loop. */
	unsigned backoff = 1;
	c->json_errors = false; /* stdout is a stream of change objects */
	for (;;) {
		int rc = changes_batch(c, &since, wait, limit);
		if (fflush(stdout) != 0)
			return CMDB_EXIT_OK; /* the reader went away */
		if (rc == 0) {
			backoff = 1;
			continue;
		}
		if (rc != CMDB_EXIT_SERVER || (c->last_status != 0 && c->last_status < 500))
			return rc;
		fprintf(stderr, "cmdb: retrying in %u s (from seq %lld)\n", backoff, since);
		sleep(backoff);
		backoff = backoff >= 16 ? 30 : backoff * 2;
	}
}
