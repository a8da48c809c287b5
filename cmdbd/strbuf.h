/*
 * strbuf.h — a growable byte string for building replies and images as text (the
 * shape of git's strbuf). Memory: the buffer owns `s` (malloc'd) until
 * strbuf_detach() hands it to the caller or strbuf_release() frees it.
 * Allocation failure latches `failed`: later appends do nothing, so a writer
 * checks once at the end. `s` is NUL-terminated whenever it is not NULL.
 * Pure: no global state, never blocks.
 */
#ifndef CMDBD_STRBUF_H
#define CMDBD_STRBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct strbuf {
	char *s;
	size_t len, cap;
	bool failed;
};

#define STRBUF_INIT                                                                                \
	{                                                                                          \
		NULL, 0, 0, false                                                                  \
	}

/* Room for `more` bytes (and the NUL) without another allocation. */
void strbuf_grow(struct strbuf *b, size_t more);

/* Appends n bytes (inline: a reply appends thousands of short pieces). */
static inline void
strbuf_add(struct strbuf *b, const void *s, size_t n)
{
	if (b->failed || b->len + n + 1 > b->cap) {
		strbuf_grow(b, n);
		if (b->failed)
			return;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}
void strbuf_puts(struct strbuf *b, const char *s);

/* Appends again the n bytes the buffer holds at offset `at` (at + n <= len). */
static inline void
strbuf_repeat(struct strbuf *b, size_t at, size_t n)
{
	strbuf_grow(b, n); /* first: it may move the bytes */
	if (!b->failed)
		strbuf_add(b, b->s + at, n);
}
#define strbuf_lit(b, lit) strbuf_add((b), (lit), sizeof(lit) - 1)

/*
 * A JSON string exactly as jansson's json_dumps writes it (without
 * JSON_ENSURE_ASCII or JSON_ESCAPE_SLASH): '"' and '\\' escaped, control
 * characters as \b \f \n \r \t or \u00XX (upper-case hex), all else verbatim
 * (s must be valid UTF-8). NULL gives null.
 */
void strbuf_json_str(struct strbuf *b, const char *s);

/* The decimal digits of v. */
void strbuf_uint(struct strbuf *b, uint64_t v);

/* Empties the buffer, keeping its memory (and clearing `failed`). */
void strbuf_reset(struct strbuf *b);

/* The string (the caller frees it) and its length, leaving b empty; NULL
 * when an append failed (everything is then freed). */
char *strbuf_detach(struct strbuf *b, size_t *len);

/* Frees the buffer; b is empty afterwards. NULL-safe. */
void strbuf_release(struct strbuf *b);

#endif
