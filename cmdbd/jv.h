/*
 * jv.h — strict parsing and validation of untrusted JSON request bodies.
 *
 * A body must be exactly one JSON object: no duplicate keys, no NUL in strings, valid
 * UTF-8, no trailing bytes, nesting at most max_depth. Field checks reject unknown
 * fields and name the failing field by JSON path ("nodes[3].ref"). Pure functions;
 * the only allocation is the parsed value the caller receives and owns.
 */
#ifndef CMDB_JV_H
#define CMDB_JV_H

#include "attrs.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define JV_PATH_MAX 256
#define JV_MSG_MAX 512

/* What went wrong, ready to become an HTTP error (status 400, 413, or 503 out of memory). */
struct jv_err {
	int status;
	char path[JV_PATH_MAX];
	char msg[JV_MSG_MAX];
};

enum jv_type {
	JV_ANY,
	JV_STRING,
	JV_OBJECT,
	JV_ARRAY,
	JV_INTEGER,
	JV_NUMBER,
	JV_BOOL,
	JV_STRING_MAP, /* object whose values are all strings */
};

struct jv_field {
	const char *name;
	enum jv_type type;
	bool required;
};

/*
 * Parses buf[0..len) as one JSON object. Returns a new reference (caller owns) or
 * NULL with err filled (status 400).
 */
CMDB_MUST_USE json_t *jv_parse_object(const char *buf, size_t len, int max_depth,
				      struct jv_err *err);

/* Nesting depth of v: scalars 0, {} or [] 1, {"a":[]} 2. */
int jv_depth(const json_t *v);

/*
 * Checks that obj is an object holding only the listed fields (the list ends with a
 * NULL name), that required ones are present and all have the right type. path is
 * the object's own path ("" for the body). Returns false with err filled.
 */
CMDB_MUST_USE bool jv_check_object(const json_t *obj, const char *path,
				   const struct jv_field *fields, struct jv_err *err);

/* Fills err with status 503, "out of memory" (the error policy: never a 4xx). Returns false. */
bool jv_fail_nomem(struct jv_err *err);

/* Fills err with status 400, path = prefix + field, and a printf message. Returns false. */
bool jv_fail(struct jv_err *err, const char *prefix, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Joins prefix and field into out: "" + "ref" → "ref"; "nodes[3]" + "ref" → "nodes[3].ref". */
void jv_path_join(char *out, size_t size, const char *prefix, const char *field);

/* Size of v serialised compactly, or 0 when it cannot be serialised. */
size_t jv_serialized_size(const json_t *v);

#endif
