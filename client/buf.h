/*
 * buf.h — a growable byte buffer (always NUL-terminated once written to).
 *
 * Used for building URLs, request text and table output. Allocation failure
 * is fatal: the CLI prints "cmdb: out of memory" and exits 4, so callers never
 * have to check. A zeroed struct buf (BUF_INIT) is a valid empty buffer.
 */
#ifndef CMDB_CLIENT_BUF_H
#define CMDB_CLIENT_BUF_H

#include <stddef.h>

struct buf {
	char *data; /* owned; NULL until the first append */
	size_t len; /* bytes used, excluding the terminating NUL */
	size_t cap; /* bytes allocated */
};

#define BUF_INIT                                                                                   \
	{                                                                                          \
		NULL, 0, 0                                                                         \
	}

/* Appends n bytes (may contain NULs). */
void cl_buf_append(struct buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string. */
void cl_buf_puts(struct buf *b, const char *s);
void cl_buf_putc(struct buf *b, char c);
void cl_buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Returns the contents as a malloc'd NUL-terminated string (never NULL) and
 * leaves b empty; the caller frees the result. */
char *cl_buf_detach(struct buf *b);
/* Returns the contents as a string that stays owned by b ("" when empty). */
const char *cl_buf_str(const struct buf *b);
void cl_buf_reset(struct buf *b);
void cl_buf_free(struct buf *b);

/* Allocation wrappers that exit(4) on failure. */
void *cl_xmalloc(size_t n);
void *cl_xrealloc(void *p, size_t n);
char *cl_xstrdup(const char *s);
char *cl_xstrndup(const char *s, size_t n);

#endif
