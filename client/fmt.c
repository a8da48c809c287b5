/*
 * fmt.c — display text for server JSON and key=value argument parsing.
 */
#include "fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

const char *
cl_jstr(const json_t *obj, const char *key)
{
	if (!json_is_object(obj))
		return NULL;
	return json_string_value(json_object_get(obj, key));
}

char *
cl_json_text(const json_t *v)
{
	if (v == NULL || json_is_null(v))
		return cl_xstrdup("-");
	if (json_is_string(v))
		return cl_xstrndup(json_string_value(v), json_string_length(v));
	char *s = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
	if (s == NULL)
		return cl_xstrdup("?");
	char *copy = cl_xstrdup(s); /* json_dumps memory goes back via free() too,
				       but keep one allocator per owner */
	free(s);
	return copy;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

char *
cl_fmt_labels(const json_t *labels)
{
	struct buf b = BUF_INIT;
	size_t n = json_is_object(labels) ? json_object_size(labels) : 0;
	if (n == 0)
		return cl_buf_detach(&b);
	const char **keys = cl_xmalloc(n * sizeof *keys);
	size_t i = 0;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)labels, k, v) keys[i++] = k;
	qsort(keys, n, sizeof *keys, cmp_str);
	for (i = 0; i < n; i++) {
		char *text = cl_json_text(json_object_get(labels, keys[i]));
		cl_buf_printf(&b, "%s%s=%s", i ? "," : "", keys[i], text);
		free(text);
	}
	free(keys);
	return cl_buf_detach(&b);
}

char *
cl_fmt_contacts(const json_t *attributes)
{
	static const char *const contact_keys[] = {"email", "chat", "oncall", "phone"};
	struct buf b = BUF_INIT;
	for (size_t i = 0; i < sizeof contact_keys / sizeof *contact_keys; i++) {
		const json_t *v = json_is_object(attributes)
				      ? json_object_get(attributes, contact_keys[i])
				      : NULL;
		if (v == NULL || json_is_null(v))
			continue;
		char *text = cl_json_text(v);
		cl_buf_printf(&b, "%s%s=%s", b.len ? " " : "", contact_keys[i], text);
		free(text);
	}
	return cl_buf_detach(&b);
}

static const char *
or_q(const char *s)
{
	return s ? s : "?";
}

char *
cl_fmt_edge(const json_t *edge)
{
	struct buf b = BUF_INIT;
	cl_buf_printf(&b, "%s --%s--> %s", or_q(cl_jstr(edge, "from")), or_q(cl_jstr(edge, "type")),
		      or_q(cl_jstr(edge, "to")));
	return cl_buf_detach(&b);
}

char *
cl_fmt_join(const json_t *array, const char *sep)
{
	struct buf b = BUF_INIT;
	size_t i;
	json_t *v;
	if (json_is_array(array)) {
		json_array_foreach((json_t *)array, i, v)
		{
			if (i)
				cl_buf_puts(&b, sep);
			cl_buf_puts(&b, or_q(json_string_value(v)));
		}
	}
	return cl_buf_detach(&b);
}

int
cl_parse_kv(const char *arg, const char *what, int allow_json, char **key, json_t **value,
	    char *err, size_t errlen)
{
	const char *eq = strchr(arg, '=');
	if (eq == NULL || eq == arg) {
		snprintf(err, errlen, "%s wants KEY=VALUE%s (got '%s')", what,
			 allow_json ? " or KEY:=JSON" : "", arg);
		return -1;
	}
	int as_json = allow_json && eq[-1] == ':';
	size_t klen = (size_t)(eq - arg) - (as_json ? 1 : 0);
	if (klen == 0) {
		snprintf(err, errlen, "%s: empty key in '%s'", what, arg);
		return -1;
	}
	json_t *v;
	if (as_json) {
		json_error_t jerr;
		v = json_loads(eq + 1, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
		if (v == NULL) {
			snprintf(err, errlen, "%s: value of '%.*s' is not valid JSON: %s", what,
				 (int)klen, arg, jerr.text);
			return -1;
		}
	} else {
		v = json_string(eq + 1);
		if (v == NULL) {
			snprintf(err, errlen, "%s: value of '%.*s' is not valid UTF-8", what,
				 (int)klen, arg);
			return -1;
		}
	}
	*key = cl_xstrndup(arg, klen);
	*value = v;
	return 0;
}
