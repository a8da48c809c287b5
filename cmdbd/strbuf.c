/*
 * strbuf.c — growable strings (strbuf.h): the graph's walk replies and Graphviz
 * output, and the loader's node images.
 */
#include "strbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void
strbuf_grow(struct strbuf *b, size_t more)
{
	if (b->failed || b->len + more + 1 <= b->cap)
		return;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap < b->len + more + 1)
		ncap *= 2;
	char *ns = realloc(b->s, ncap);
	if (ns == NULL) {
		b->failed = true;
		return;
	}
	b->s = ns;
	b->cap = ncap;
}

void
strbuf_puts(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
}

/* Whether p[0, n) holds no byte JSON escapes (below 0x20, '"', '\\'): eight
 * bytes at a time, by the bit tricks of "Bit Twiddling Hacks" (haszero,
 * hasless; exact as a yes/no answer). */
static bool
json_plain(const unsigned char *p, size_t n)
{
	const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		uint64_t w, q, bs;
		memcpy(&w, p + i, 8);
		q = w ^ (ones * '"');
		bs = w ^ (ones * '\\');
		if (((w - ones * 0x20) & ~w & highs) | ((q - ones) & ~q & highs) |
		    ((bs - ones) & ~bs & highs))
			return false;
	}
	for (; i < n; i++)
		if (p[i] < 0x20 || p[i] == '"' || p[i] == '\\')
			return false;
	return true;
}

void
strbuf_json_str(struct strbuf *b, const char *s)
{
	/* The characters with a short escape, and their escape letters. */
	static const char shorts[] = "\"\\\b\f\n\r\t", letters[] = "\"\\bfnrt";

	if (s == NULL) {
		strbuf_lit(b, "null");
		return;
	}
	/* Most strings (refs, type names) need no escape: one copy. */
	size_t n = strlen(s);
	if (json_plain((const unsigned char *)s, n)) {
		strbuf_grow(b, n + 2);
		if (b->failed)
			return;
		char *d = b->s + b->len;
		d[0] = '"';
		memcpy(d + 1, s, n);
		d[n + 1] = '"';
		d[n + 2] = '\0';
		b->len += n + 2;
		return;
	}
	strbuf_grow(b, strlen(s) + 2);
	strbuf_lit(b, "\"");
	const char *run = s;
	for (; *s; s++) {
		unsigned char u = (unsigned char)*s;
		if (u >= 0x20 && u != '"' && u != '\\')
			continue;
		strbuf_add(b, run, (size_t)(s - run));
		const char *sh = strchr(shorts, u);
		char esc[8];
		if (sh != NULL) {
			esc[0] = '\\';
			esc[1] = letters[sh - shorts];
			esc[2] = '\0';
		} else {
			snprintf(esc, sizeof esc, "\\u%04X", u);
		}
		strbuf_puts(b, esc);
		run = s + 1;
	}
	strbuf_add(b, run, (size_t)(s - run));
	strbuf_lit(b, "\"");
}

void
strbuf_uint(struct strbuf *b, uint64_t v)
{
	char num[24];
	size_t k = sizeof num;
	do {
		num[--k] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	strbuf_add(b, num + k, sizeof num - k);
}

void
strbuf_reset(struct strbuf *b)
{
	b->len = 0;
	b->failed = false;
	if (b->s != NULL)
		b->s[0] = '\0';
}

char *
strbuf_detach(struct strbuf *b, size_t *len)
{
	char *s = b->failed ? NULL : b->s;
	if (s == NULL)
		free(b->s);
	else if (len != NULL)
		*len = b->len;
	*b = (struct strbuf)STRBUF_INIT;
	return s;
}

void
strbuf_release(struct strbuf *b)
{
	if (b == NULL)
		return;
	free(b->s);
	*b = (struct strbuf)STRBUF_INIT;
}
