/*
 * model.c — the vocabulary's checks: kinds, names, refs, sources, health states,
 * edge types (the lists themselves are the X-lists of model.h).
 */
#include "model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MODEL_X_STR_ITEM(id, name) [MODEL_EDGE_##id] = #name,
const char *const model_edge_types[MODEL_EDGE_TYPE_COUNT] = {MODEL_EDGE_TYPES(MODEL_X_STR_ITEM, )};
#undef MODEL_X_STR_ITEM

#define MODEL_X_STR_ITEM(id, name) [MODEL_HEALTH_##id] = #name,
const char *const model_health_states[MODEL_HEALTH_COUNT] = {
    MODEL_HEALTH_STATES(MODEL_X_STR_ITEM, )};
#undef MODEL_X_STR_ITEM

/* The index of s in names[0..n), or -1. */
static int
name_index(const char *const *names, int n, const char *s)
{
	if (s == NULL)
		return -1;
	for (int i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static bool
is_lower_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool
model_kind_valid(const char *kind)
{
	size_t n = 0;

	if (kind == NULL || !(kind[0] >= 'a' && kind[0] <= 'z'))
		return false;
	for (const char *p = kind; *p; p++, n++)
		if (!(is_lower_digit(*p) || *p == '_'))
			return false;
	return n <= MODEL_KIND_MAX;
}

bool
model_source_valid(const char *source)
{
	size_t n = 0;

	if (source == NULL || !is_lower_digit(source[0]))
		return false;
	for (const char *p = source; *p; p++, n++)
		if (!(is_lower_digit(*p) || *p == '_' || *p == '.' || *p == ':' || *p == '-'))
			return false;
	return n <= MODEL_SOURCE_MAX;
}

bool
model_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		unsigned cp;
		size_t need;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (len - i <= need)
			return false;
		for (size_t k = 1; k <= need; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

bool
model_name_valid(const char *name, size_t len)
{
	const unsigned char *p = (const unsigned char *)name;

	if (name == NULL || len == 0 || len > MODEL_NAME_MAX || !model_utf8_valid(name, len))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f)
			return false;
		/* C1 controls U+0080..U+009F are encoded as C2 80..C2 9F. */
		if (p[i] == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f)
			return false;
	}
	return true;
}

const char *
model_ref_parse(const char *ref, char *kind, char *name)
{
	const char *slash;
	size_t klen, nlen;
	char kbuf[MODEL_KIND_MAX + 2];

	if (ref == NULL || *ref == '\0')
		return "a ref is KIND/NAME";
	slash = strchr(ref, '/');
	if (slash == NULL)
		return "a ref is KIND/NAME (no '/' found)";
	klen = (size_t)(slash - ref);
	if (klen == 0 || klen > MODEL_KIND_MAX)
		return "kind must match " MODEL_KIND_PATTERN;
	memcpy(kbuf, ref, klen);
	kbuf[klen] = '\0';
	if (!model_kind_valid(kbuf))
		return "kind must match " MODEL_KIND_PATTERN;
	nlen = strlen(slash + 1);
	if (!model_name_valid(slash + 1, nlen))
		return "name must be " MODEL_NAME_RULE;
	if (kind != NULL)
		memcpy(kind, kbuf, klen + 1);
	if (name != NULL)
		memcpy(name, slash + 1, nlen + 1);
	return NULL;
}

int
model_edge_type_index(const char *type)
{
	return name_index(model_edge_types, MODEL_EDGE_TYPE_COUNT, type);
}

int
model_health_index(const char *state)
{
	return name_index(model_health_states, MODEL_HEALTH_COUNT, state);
}

const char *
model_edge_type_name(int type)
{
	return type >= 0 && type < MODEL_EDGE_TYPE_COUNT ? model_edge_types[type] : NULL;
}

const char *
model_health_name(int state)
{
	return state >= 0 && state < MODEL_HEALTH_COUNT ? model_health_states[state] : NULL;
}

bool
model_health_valid(const char *state)
{
	return model_health_index(state) >= 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char *
model_percent_decode(const char *src, size_t len, size_t *out_len)
{
	char *out = malloc(len + 1);
	size_t o = 0;

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		if (src[i] == '%') {
			int hi, lo;

			if (i + 2 >= len)
				goto bad;
			hi = hexval(src[i + 1]);
			lo = hexval(src[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				goto bad;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (src[i] == '\0') {
			goto bad;
		} else {
			out[o++] = src[i];
		}
	}
	out[o] = '\0';
	if (out_len != NULL)
		*out_len = o;
	return out;
bad:
	free(out);
	return NULL;
}

enum model_long_result
model_parse_long(const char *v, long min, long max, long *out)
{
	char *end;
	long n;

	if (v == NULL || !((*v >= '0' && *v <= '9') || *v == '-'))
		return MODEL_LONG_SYNTAX;
	errno = 0;
	n = strtol(v, &end, 10);
	if (end == v || *end != '\0' || errno != 0)
		return MODEL_LONG_SYNTAX;
	if (n < min || n > max)
		return MODEL_LONG_RANGE;
	*out = n;
	return MODEL_LONG_OK;
}

int
model_parse_bool(const char *v)
{
	if (v == NULL)
		return -1;
	if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		return 1;
	if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		return 0;
	return -1;
}

size_t
model_label_filter_key(const char *v)
{
	const char *colon = v ? strchr(v, ':') : NULL;

	if (colon == NULL || colon == v || !model_utf8_valid(v, strlen(v)))
		return 0;
	return (size_t)(colon - v);
}
