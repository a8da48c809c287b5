/*
 * ref.c — splitting refs and percent-encoding path segments and query
 * parameters, exactly as SPEC §2 wants them on the wire.
 */
#include "ref.h"

#include <stdio.h>
#include <string.h>

bool
cl_ref_kind_valid(const char *s, size_t len)
{
	if (len < 1 || len > REF_KIND_MAX || !(s[0] >= 'a' && s[0] <= 'z'))
		return false;
	for (size_t i = 1; i < len; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return true;
}

int
cl_ref_split(const char *ref, struct ref_parts *out, char *err, size_t errlen)
{
	const char *slash = strchr(ref, '/');
	if (slash == NULL) {
		snprintf(err, errlen, "invalid ref '%s': expected KIND/NAME", ref);
		return -1;
	}
	size_t klen = (size_t)(slash - ref);
	if (!cl_ref_kind_valid(ref, klen)) {
		snprintf(err, errlen, "invalid ref '%s': kind must match " MODEL_KIND_PATTERN, ref);
		return -1;
	}
	size_t nlen = strlen(slash + 1);
	if (nlen < 1 || nlen > REF_NAME_MAX) {
		snprintf(err, errlen, "invalid ref '%s': name must be 1-%d bytes", ref,
			 REF_NAME_MAX);
		return -1;
	}
	memcpy(out->kind, ref, klen);
	out->kind[klen] = '\0';
	out->name = slash + 1;
	return 0;
}

static bool
is_unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

void
cl_url_encode(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (is_unreserved(*p)) {
			cl_buf_putc(b, (char)*p);
		} else {
			char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
			cl_buf_append(b, esc, 3);
		}
	}
}

int
cl_ref_path(struct buf *b, const char *ref, char *err, size_t errlen)
{
	struct ref_parts rp;
	if (cl_ref_split(ref, &rp, err, errlen) < 0)
		return -1;
	cl_buf_puts(b, "/v1/nodes/");
	cl_buf_puts(b, rp.kind); /* a valid kind needs no encoding */
	cl_buf_putc(b, '/');
	cl_url_encode(b, rp.name);
	return 0;
}

void
cl_query_add(struct buf *b, const char *key, const char *value)
{
	bool has_query = b->len > 0 && memchr(b->data, '?', b->len) != NULL;
	cl_buf_putc(b, has_query ? '&' : '?');
	cl_url_encode(b, key);
	cl_buf_putc(b, '=');
	cl_url_encode(b, value);
}
