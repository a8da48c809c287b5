/*
 * noop.h — identical re-posts (SPEC §3's no-op) without a commit each.
 *
 * A commit costs a flush of the WAL, so one commit per re-post caps them at what the
 * disk flushes per second. Two parts, both on the loop thread:
 *
 *   - The memory: per source, the fingerprint (manifest_fingerprint) of the manifest
 *     it applied last, as far as this process knows — learned from the replies of its
 *     own manifest posts (noop_learn) and from the tailer's poll of source_state,
 *     which sees other processes' applies (and forgets a source found stale). It is a
 *     hint only: the database decides every no-op again.
 *   - The batcher: a re-post whose fingerprint matches the memory is queued here
 *     (noop_submit) and sent with the others queued, in one call of
 *     cmdb_manifest_noop_batch() (migrations/0010): one statement, one transaction,
 *     one commit. While NOOP_INFLIGHT_MAX batches are out, new items wait for the next
 *     one — a group commit with no timer: the busier it is, the more share a commit.
 *     Items queued in one turn of the loop go together (the send is deferred to the
 *     end of the turn).
 *
 * Each item's callback runs exactly once, from the loop (never inside noop_submit),
 * after the batch's commit: with the item's reply (the jsonb text
 * cmdb_post_manifest_ttl() gives a fast no-op), or with NULL when the database did
 * not take it as a no-op (another fingerprint, a stale or expired source, the row
 * busy in another transaction: post it alone, which decides in full), or with the
 * failed batch's result (never a success: nothing of the batch committed, or it is
 * unknown whether it did).
 */
#ifndef CMDB_NOOP_H
#define CMDB_NOOP_H

#include "attrs.h"

#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "db.h"

/* Items in one batch (one statement); more wait for the next. */
#define NOOP_BATCH_MAX 128
/*
 * Batches out at once. One: the items that arrive while it commits make the next,
 * bigger one. Two batches out (one filling while the other commits) gave smaller
 * batches and 1.2-1.5x fewer re-posts a second on the 2-core machine, where CPU, not
 * the disk, is the limit (the statement's fixed cost is paid per batch).
 */
#define NOOP_INFLIGHT_MAX 1

struct noop;

/* stmt: SQL_MANIFEST_NOOP_BATCH (one parameter: the items as a JSON array). NULL on ENOMEM. */
CMDB_MUST_USE struct noop *noop_new(struct event_base *base, struct db *db, int stmt);

/*
 * Frees it. Call after db_free() (which answers the batches out, so their items
 * come back as failed); items still queued are answered as failed with
 * DB_UNAVAILABLE. NULL-safe.
 */
void noop_free(struct noop *n);

/* One re-post: cmdb_post_manifest_ttl()'s arguments for it, as text (NULL = none). */
struct noop_item {
	const char *source, *fp, *actor;
	const char *generation; /* decimal */
	const char *deployment; /* JSON object text */
	const char *extensions; /* JSON text */
	const char *ttl;	/* decimal seconds */
	bool by_bytes;		/* known by its bytes (noop_body_item): counted */
};

/* ---- The memory (fingerprints are MANIFEST_FINGERPRINT_HEX hex digits) ---- */

/*
 * The source applied the manifest of fingerprint fp (NULL: it is stale, nothing is
 * known) as of at (an RFC 3339 time of graph.h's fixed format: the apply's
 * transaction time). Ignored when the memory holds a later at for the source, so a
 * poll answered from an older snapshot does not undo what a reply taught.
 */
void noop_learn(struct noop *n, const char *source, const char *fp, const char *at);

/* Forgets source's fingerprint if it is still fp (the database refused it). */
void noop_forget(struct noop *n, const char *source, const char *fp);

/* Is fp the fingerprint the memory holds for source? */
bool noop_known(const struct noop *n, const char *source, const char *fp);

/* ---- Bodies: a re-post known by its bytes, without parsing it ---- */

#define NOOP_BODY_HASH 32 /* bytes of a body's hash (SHA-256) */

/* The hash of a raw request body. */
void noop_body_hash(const char *body, size_t len, unsigned char out[NOOP_BODY_HASH]);

/*
 * The body of hash `hash` was applied (or was a no-op) for it->source, as the
 * manifest of fingerprint it->fp; a re-post of the very bytes becomes `it` (its
 * actor aside). One body per source: it replaces the source's previous one.
 * Strings are copied; on ENOMEM nothing is remembered.
 */
void noop_remember_body(struct noop *n, const unsigned char hash[NOOP_BODY_HASH],
			const struct noop_item *it);

/*
 * The item a body of this hash becomes, when the memory still holds its fingerprint
 * as its source's last: the same bytes, so the same manifest, valid as before and
 * with the same fingerprint — a candidate no-op without parsing. NULL otherwise.
 * Valid until the memory next changes (the caller copies what it keeps); actor NULL.
 */
const struct noop_item *noop_body_item(const struct noop *n,
				       const unsigned char hash[NOOP_BODY_HASH]);

/* ---- The batcher ---- */

/* See above: exactly one of reply and failed is non-NULL, or neither (refused). */
typedef void (*noop_cb)(void *arg, const char *reply, const struct db_result *failed);

/* Queues it (its strings are copied). 0, or -1 on ENOMEM (cb will not run). */
CMDB_MUST_USE int noop_submit(struct noop *n, const struct noop_item *it, noop_cb cb, void *arg);

/* Figures for /metrics. */
struct noop_stats {
	unsigned long batches; /* statements sent */
	unsigned long items;   /* re-posts in them */
	unsigned long refused; /* items the database did not take as no-ops */
	unsigned long failed;  /* items of batches that failed */
	unsigned long sources; /* sources whose fingerprint the memory holds */
	unsigned long bodies;  /* re-posts known by their bytes (item.by_bytes) */
};
void noop_get_stats(const struct noop *n, struct noop_stats *out);

#endif
