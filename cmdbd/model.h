/*
 * model.h — the syntax of the map's identifiers (SPEC §1), checked in one place.
 *
 * Pure functions, no allocation unless stated, no I/O. The database repeats these
 * rules as CHECK constraints; this module lets the server name the field that broke
 * them before anything reaches PostgreSQL.
 */
#ifndef CMDB_MODEL_H
#define CMDB_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#define MODEL_KIND_MAX 32
#define MODEL_NAME_MAX 255
#define MODEL_SOURCE_MAX 128
#define MODEL_REF_MAX (MODEL_KIND_MAX + 1 + MODEL_NAME_MAX)

/* [a-z][a-z0-9_]{0,31} */
bool model_kind_valid(const char *kind);

/* 1..255 bytes of valid UTF-8 without control characters (C0, DEL, C1). */
bool model_name_valid(const char *name, size_t len);

/* [a-z0-9][a-z0-9_.:-]{0,127} */
bool model_source_valid(const char *source);

/* Valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
bool model_utf8_valid(const char *s, size_t len);

/*
 * Splits "KIND/NAME" at its first '/' and validates both halves. On success copies
 * them into kind (MODEL_KIND_MAX + 1 bytes) and name (MODEL_NAME_MAX + 1 bytes) and
 * returns NULL; on failure returns a static message saying what is wrong.
 * Either output may be NULL when not needed.
 */
const char *model_ref_parse(const char *ref, char *kind, char *name);

/* The four health states; returns false for anything else. */
bool model_health_valid(const char *state);

/* The five edge types, in SPEC order. */
extern const char *const model_edge_types[5];
#define MODEL_EDGE_TYPES_LIST "depends_on, runs_on, connects_to, part_of, owned_by"

/* Index into model_edge_types, or -1. */
int model_edge_type_index(const char *type);

/*
 * Percent-decodes src (length len) into a new NUL-terminated malloc'd string.
 * Returns NULL on a malformed escape, an encoded NUL, or ENOMEM. '+' stays '+'
 * (path semantics). *out_len receives the decoded length when non-NULL.
 */
char *model_percent_decode(const char *src, size_t len, size_t *out_len);

/*
 * Query parameter values (the handlers' parsers, kept here so that they are pure and
 * fuzzed: tests/fuzz/fuzz_query.c).
 */

enum model_long_result { MODEL_LONG_OK, MODEL_LONG_SYNTAX, MODEL_LONG_RANGE };

/*
 * A decimal integer in [min, max]: an optional '-', digits, nothing else (no '+', no
 * spaces, no overflow). *out is set only on MODEL_LONG_OK.
 */
enum model_long_result model_parse_long(const char *v, long min, long max, long *out);

/* "true"/"1" → 1, "false"/"0" → 0, anything else (NULL too) → -1. */
int model_parse_bool(const char *v);

/*
 * A label=KEY:VALUE filter: valid UTF-8 with a ':' that is not the first byte.
 * Returns the length of KEY, or 0 when v is not of that form.
 */
size_t model_label_filter_key(const char *v);

#endif
