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
strbuf_add(struct strbuf *b, const void *s, size_t n)
{
	strbuf_grow(b, n);
	if (b->failed)
		return;
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

void
strbuf_puts(struct strbuf *b, const char *s)
{
	strbuf_add(b, s, strlen(s));
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
