/*
 * fmt.h — turning pieces of the server's JSON into display text, and
 * parsing "key=value" arguments into JSON. Pure (no I/O); every function
 * tolerates missing or wrongly-typed fields (they print as "-" or "?"),
 * because odd server replies must never crash the CLI.
 * Unit-tested by tests/check_client_fmt.c.
 */
#ifndef CMDB_CLIENT_FMT_H
#define CMDB_CLIENT_FMT_H

#include <jansson.h>
#include <stddef.h>

/* obj[key] when obj is an object and the member is a string, else NULL.
 * The result is borrowed from obj. */
const char *cl_jstr(const json_t *obj, const char *key);

/* Display text for any JSON value: strings unquoted, numbers and booleans
 * as written, null as "-", arrays and objects as compact JSON with sorted
 * keys. NULL gives "-". Returns a malloc'd string. */
char *cl_json_text(const json_t *v);

/* "k1=v1,k2=v2" sorted by key for a labels object ("" when empty or not an
 * object). Returns a malloc'd string. */
char *cl_fmt_labels(const json_t *labels);

/* The contact attributes (email, chat, oncall, phone, in that order) that
 * are present, as "email=x oncall=y"; "" when none. Malloc'd. */
char *cl_fmt_contacts(const json_t *attributes);

/* "FROM --TYPE--> TO" for an edge object ("?" for missing parts). Malloc'd. */
char *cl_fmt_edge(const json_t *edge);

/* The string members of an array joined by sep (non-strings as "?"); ""
 * for an empty array or a non-array. Malloc'd. */
char *cl_fmt_join(const json_t *array, const char *sep);

/*
 * Parses a "key=value" argument. With allow_json, "key:=JSON" parses the
 * value as JSON (numbers, booleans, objects ...); otherwise values are
 * strings. Sets *key (malloc'd) and *value (a new reference). Returns 0, or
 * -1 with a message in err (`what` names the option, e.g. "--attr").
 */
int cl_parse_kv(const char *arg, const char *what, int allow_json, char **key, json_t **value,
		char *err, size_t errlen);

#endif
