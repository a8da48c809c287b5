/*
 * model.h — the map's vocabulary (SPEC §1, §2), listed once: the syntax of its
 * identifiers, the edge types, the health states and the limits of the API.
 *
 * Every other spelling derives from this file: the server's checks and error
 * messages, the in-memory graph's enums (graph.h), the client's help text
 * (client/ includes this header for its macros only, never its functions).
 * The database repeats the rules once, as domains and CHECK constraints
 * (migrations/0005_vocabulary.sql); this module lets the server name the field
 * that broke them before anything reaches PostgreSQL.
 *
 * Pure functions, no allocation unless stated, no I/O.
 */
#ifndef CMDB_MODEL_H
#define CMDB_MODEL_H

#include <stdbool.h>
#include <stddef.h>

/* ---- Identifiers ----------------------------------------------------------
 * Each length sits beside the pattern that spells it; check_model.c checks
 * that they agree. */

#define MODEL_KIND_MAX 32
#define MODEL_KIND_PATTERN "[a-z][a-z0-9_]{0,31}"
#define MODEL_NAME_MAX 255
#define MODEL_NAME_RULE "1-255 bytes of UTF-8 without control characters"
#define MODEL_REF_MAX (MODEL_KIND_MAX + 1 + MODEL_NAME_MAX)
/* A manifest source. Hand edits assert as "api:<token name>" (token.h). */
#define MODEL_SOURCE_MAX 128
#define MODEL_SOURCE_PATTERN "[a-z0-9][a-z0-9_.:-]{0,127}"

/* MODEL_KIND_PATTERN */
bool model_kind_valid(const char *kind);

/* MODEL_NAME_RULE: no C0, DEL or C1 controls. */
bool model_name_valid(const char *name, size_t len);

/* MODEL_SOURCE_PATTERN */
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

/* ---- Edge types and health states -----------------------------------------
 *
 * X-lists: LIST(X, SEP) expands X(ID, name) once per member, SEP between two.
 * Enums pass an empty SEP, strings a literal one:
 *
 *     MODEL_EDGE_TYPES(MODEL_X_STR, ", ")  ->  "depends_on" ", " "runs_on" ...
 *
 * The four impact types come first, in SPEC order; owned_by carries no impact.
 */
#define MODEL_IMPACT_TYPES(X, SEP)                                                                 \
	X(DEPENDS_ON, depends_on) SEP X(RUNS_ON, runs_on)                                          \
	SEP X(CONNECTS_TO, connects_to)                                                            \
	SEP X(PART_OF, part_of)
#define MODEL_EDGE_TYPES(X, SEP) MODEL_IMPACT_TYPES(X, SEP) SEP X(OWNED_BY, owned_by)

/* SPEC order. A node nobody has reported on is unknown. */
#define MODEL_HEALTH_STATES(X, SEP)                                                                \
	X(OK, ok) SEP X(DEGRADED, degraded)                                                        \
	SEP X(DOWN, down)                                                                          \
	SEP X(UNKNOWN, unknown)

/* X helpers: a member's name as a string literal; one; an enumerator. */
#define MODEL_X_STR(id, name) #name
#define MODEL_X_ONE(id, name) +1
#define MODEL_X_EDGE_ENUM(id, name) MODEL_EDGE_##id,
#define MODEL_X_HEALTH_ENUM(id, name) MODEL_HEALTH_##id,

enum model_edge_type { MODEL_EDGE_TYPES(MODEL_X_EDGE_ENUM, ) MODEL_EDGE_TYPE_COUNT };
enum model_health { MODEL_HEALTH_STATES(MODEL_X_HEALTH_ENUM, ) MODEL_HEALTH_COUNT };
/* The impact types are model_edge_types[0 .. MODEL_IMPACT_TYPE_COUNT). */
#define MODEL_IMPACT_TYPE_COUNT (0 MODEL_IMPACT_TYPES(MODEL_X_ONE, ))

/* For messages: "depends_on, runs_on, connects_to, part_of, owned_by", ... */
#define MODEL_EDGE_TYPES_LIST MODEL_EDGE_TYPES(MODEL_X_STR, ", ")
#define MODEL_IMPACT_TYPES_LIST MODEL_IMPACT_TYPES(MODEL_X_STR, ", ")
#define MODEL_HEALTH_LIST MODEL_HEALTH_STATES(MODEL_X_STR, ", ")

/* The names, indexed by the enums. */
extern const char *const model_edge_types[MODEL_EDGE_TYPE_COUNT];
extern const char *const model_health_states[MODEL_HEALTH_COUNT];

/* Index into model_edge_types / model_health_states, or -1 (NULL, unknown). */
int model_edge_type_index(const char *type);
int model_health_index(const char *state);

/* The name of an index, or NULL when it is out of range. */
const char *model_edge_type_name(int type);
const char *model_health_name(int state);

/* model_health_index(state) >= 0 */
bool model_health_valid(const char *state);

/* ---- Limits of the API (SPEC §2) ------------------------------------------ */

/* Lists (nodes, deployments, changes): `limit` default and maximum. */
#define MODEL_PAGE_DEFAULT 100
#define MODEL_PAGE_MAX 1000
/* dependents / dependencies: `limit` default and maximum. */
#define MODEL_WALK_DEFAULT 1000
#define MODEL_WALK_MAX 100000
/* Longest cursor a list issues: the hex of its longest key, a ref (a deployment's
 * key, "<time> <uuid>", is shorter). Longer ones are refused without a query. */
#define MODEL_CURSOR_MAX (2 * MODEL_REF_MAX)
/* A node's or an edge's attributes, serialised. */
#define MODEL_ATTRIBUTES_MAX 65536
/* A health update's reason. */
#define MODEL_HEALTH_REASON_MAX 4096

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
