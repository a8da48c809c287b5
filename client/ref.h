/*
 * ref.h — node refs (KIND/NAME) and URL percent-encoding.
 *
 * Pure functions, no I/O: unit-tested by tests/check_client_ref.c.
 */
#ifndef CMDB_CLIENT_REF_H
#define CMDB_CLIENT_REF_H

#include <stdbool.h>
#include <stddef.h>

#include "../cmdbd/model.h" /* the vocabulary: its macros only */
#include "buf.h"

#define REF_KIND_MAX MODEL_KIND_MAX
#define REF_NAME_MAX MODEL_NAME_MAX

/* A split ref. `name` points into the ref string that was split (not owned). */
struct ref_parts {
	char kind[REF_KIND_MAX + 1];
	const char *name;
};

/* True when s[0..len) is a valid kind: MODEL_KIND_PATTERN. */
bool cl_ref_kind_valid(const char *s, size_t len);

/*
 * Splits `ref` at its first '/'. The kind must be valid and the name 1-255
 * bytes (the server checks the rest: UTF-8, control characters). Returns 0,
 * or -1 with a message in err.
 */
int cl_ref_split(const char *ref, struct ref_parts *out, char *err, size_t errlen);

/* Appends s percent-encoded: everything except the RFC 3986 unreserved
 * characters (A-Z a-z 0-9 - . _ ~) becomes %XX (upper-case hex). */
void cl_url_encode(struct buf *b, const char *s);

/*
 * Appends "/v1/nodes/KIND/NAME" (NAME percent-encoded) for `ref`.
 * Returns 0, or -1 with a message in err (nothing appended).
 */
int cl_ref_path(struct buf *b, const char *ref, char *err, size_t errlen);

/* Appends "?key=value" to b, or "&key=value" when b already holds a '?';
 * key and value are percent-encoded. */
void cl_query_add(struct buf *b, const char *key, const char *value);

#endif
