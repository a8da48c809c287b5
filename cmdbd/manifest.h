/*
 * manifest.h — validation of deploy manifests (SPEC §3, schema/manifest-v1.schema.json).
 *
 * Pure: checks a parsed manifest against the format and the limits and names the
 * first violation by JSON path. Applying is the database's job
 * (cmdb_apply_manifest); everything it receives has passed through here.
 */
#ifndef CMDB_MANIFEST_H
#define CMDB_MANIFEST_H

#include "attrs.h"

#include <jansson.h>
#include <stdbool.h>

#include "jv.h"

#define MANIFEST_VERSION "cmdb/v1"

struct manifest_limits {
	long max_nodes;
	long max_edges;
};

/*
 * Returns true when m is a valid manifest v1 within lim. Otherwise false with
 * err filled: status 400 (format) or 413 (a count limit), path and message.
 */
CMDB_MUST_USE bool manifest_validate(const json_t *m, const struct manifest_limits *lim,
				     struct jv_err *err);

/*
 * The manifest's "ttl" (SPEC §5: "36h", "90m", "7d", "45s") in seconds; 0 when it has
 * none or it is malformed (manifest_validate refuses that).
 */
long long manifest_ttl(const json_t *m);

/* RFC 3339 date-time ("2026-11-21T10:00:00Z", fractions and offsets allowed). */
bool manifest_time_valid(const char *s);

/* Bytes of a fingerprint in hex, without the NUL. */
#define MANIFEST_FINGERPRINT_HEX 64

/*
 * The manifest's fingerprint, for the identical re-post (SPEC §3): SHA-256 over a
 * canonical, tagged encoding of the parsed JSON — object keys sorted by bytes, so key
 * order and whitespace do not matter; integers and reals as jansson holds them (a real
 * that differs only beyond double precision is the same). Streamed into the hash:
 * nothing is serialised. hex gets MANIFEST_FINGERPRINT_HEX + 1 bytes. Returns 0, or
 * -1 on ENOMEM (an object with many keys needs a sorted index) or nesting deeper than
 * jv allows.
 */
CMDB_MUST_USE int manifest_fingerprint(const json_t *m, char *hex);

#endif
