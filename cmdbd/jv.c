/*
 * jv.c — strict JSON body parsing and field validation (see jv.h).
 */
#include "jv.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void
jv_path_join(char *out, size_t size, const char *prefix, const char *field)
{
	if (prefix == NULL || *prefix == '\0')
		snprintf(out, size, "%s", field ? field : "");
	else if (field == NULL || *field == '\0')
		snprintf(out, size, "%s", prefix);
	else if (field[0] == '[')
		snprintf(out, size, "%s%s", prefix, field);
	else
		snprintf(out, size, "%s.%s", prefix, field);
}

bool
jv_fail_nomem(struct jv_err *err)
{
	err->status = 503;
	err->path[0] = '\0';
	snprintf(err->msg, sizeof(err->msg), "out of memory");
	return false;
}

bool
jv_fail(struct jv_err *err, const char *prefix, const char *field, const char *fmt, ...)
{
	va_list ap;

	err->status = 400;
	jv_path_join(err->path, sizeof(err->path), prefix, field);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return false;
}

int
jv_depth(const json_t *v)
{
	int max = 0;

	if (json_is_object(v)) {
		const char *k;
		json_t *child;

		json_object_foreach((json_t *)v, k, child)
		{
			int d = jv_depth(child);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	if (json_is_array(v)) {
		size_t i;
		json_t *child;

		json_array_foreach(v, i, child)
		{
			int d = jv_depth(child);
			if (d > max)
				max = d;
		}
		return max + 1;
	}
	return 0;
}

json_t *
jv_parse_object(const char *buf, size_t len, int max_depth, struct jv_err *err)
{
	json_error_t jerr;
	json_t *v;

	if (len == 0) {
		jv_fail(err, "", "", "request body is empty; a JSON object is required");
		return NULL;
	}
	/*
	 * jansson rejects duplicate keys (flag), trailing data, invalid UTF-8 and
	 * \u0000 (unless JSON_ALLOW_NUL, which we do not pass); JSON_DECODE_ANY is
	 * off so scalars fail here and "null" is caught below with arrays.
	 */
	v = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (v == NULL) {
		switch (json_error_code(&jerr)) {
		case json_error_null_character:
			jv_fail(err, "", "",
				"strings must not contain NUL (\\u0000) (line %d, column %d)",
				jerr.line, jerr.column);
			break;
		case json_error_duplicate_key:
			jv_fail(err, "", "", "duplicate object key (line %d, column %d)", jerr.line,
				jerr.column);
			break;
		case json_error_end_of_input_expected:
			jv_fail(err, "", "",
				"trailing data after the JSON object (line %d, column %d)",
				jerr.line, jerr.column);
			break;
		default:
			jv_fail(err, "", "",
				"request body is not valid JSON: %s (line %d, column %d)",
				jerr.text, jerr.line, jerr.column);
		}
		return NULL;
	}
	if (!json_is_object(v)) {
		json_decref(v);
		jv_fail(err, "", "", "request body must be a JSON object");
		return NULL;
	}
	if (jv_depth(v) > max_depth) {
		json_decref(v);
		jv_fail(err, "", "", "JSON nesting is deeper than the limit of %d", max_depth);
		return NULL;
	}
	return v;
}

static const char *
type_name(enum jv_type t)
{
	switch (t) {
	case JV_STRING:
		return "a string";
	case JV_OBJECT:
		return "an object";
	case JV_ARRAY:
		return "an array";
	case JV_INTEGER:
		return "an integer";
	case JV_NUMBER:
		return "a number";
	case JV_BOOL:
		return "a boolean";
	case JV_STRING_MAP:
		return "an object of strings";
	case JV_ANY:
		break;
	}
	return "a value";
}

static bool
type_ok(const json_t *v, enum jv_type t, const char *path, struct jv_err *err)
{
	const char *k;
	json_t *child;

	switch (t) {
	case JV_ANY:
		return true;
	case JV_STRING:
		return json_is_string(v);
	case JV_OBJECT:
		return json_is_object(v);
	case JV_ARRAY:
		return json_is_array(v);
	case JV_INTEGER:
		return json_is_integer(v);
	case JV_NUMBER:
		return json_is_number(v);
	case JV_BOOL:
		return json_is_boolean(v);
	case JV_STRING_MAP:
		if (!json_is_object(v))
			return false;
		json_object_foreach((json_t *)v, k, child)
		{
			if (!json_is_string(child)) {
				jv_fail(err, path, k, "must be a string");
				return false;
			}
		}
		return true;
	}
	return false;
}

bool
jv_check_object(const json_t *obj, const char *path, const struct jv_field *fields,
		struct jv_err *err)
{
	const char *key;
	json_t *value;

	if (!json_is_object(obj))
		return jv_fail(err, path, "", "must be an object");
	json_object_foreach((json_t *)obj, key, value)
	{
		const struct jv_field *f = fields;
		char fpath[JV_PATH_MAX];

		while (f->name != NULL && strcmp(f->name, key) != 0)
			f++;
		if (f->name == NULL)
			return jv_fail(err, path, key, "unknown field");
		jv_path_join(fpath, sizeof(fpath), path, key);
		err->status = 0;
		if (!type_ok(value, f->type, fpath, err)) {
			if (err->status == 0)
				jv_fail(err, path, key, "must be %s", type_name(f->type));
			return false;
		}
	}
	for (const struct jv_field *f = fields; f->name != NULL; f++)
		if (f->required && json_object_get(obj, f->name) == NULL)
			return jv_fail(err, path, f->name, "is required");
	return true;
}

static int
count_cb(const char *buf, size_t size, void *data)
{
	(void)buf;
	*(size_t *)data += size;
	return 0;
}

size_t
jv_serialized_size(const json_t *v)
{
	size_t n = 0;

	if (json_dump_callback(v, count_cb, &n, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
		return 0;
	return n;
}
