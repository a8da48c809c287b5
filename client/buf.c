/*
 * buf.c — growable byte buffer and the fatal-on-failure allocators the
 * client uses everywhere (a CLI has nothing better to do on ENOMEM).
 */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
out_of_memory(void)
{
	fputs("cmdb: out of memory\n", stderr);
	exit(4);
}

void *
cl_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

void *
cl_xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (q == NULL)
		out_of_memory();
	return q;
}

char *
cl_xstrndup(const char *s, size_t n)
{
	char *p = cl_xmalloc(n + 1);
	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

char *
cl_xstrdup(const char *s)
{
	return cl_xstrndup(s, strlen(s));
}

/* Makes room for at least `extra` more bytes plus the terminating NUL. */
static void
buf_grow(struct buf *b, size_t extra)
{
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < need) {
		if (cap > ((size_t)-1) / 2)
			out_of_memory();
		cap *= 2;
	}
	b->data = cl_xrealloc(b->data, cap);
	b->cap = cap;
}

void
cl_buf_append(struct buf *b, const void *p, size_t n)
{
	buf_grow(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
cl_buf_puts(struct buf *b, const char *s)
{
	cl_buf_append(b, s, strlen(s));
}

void
cl_buf_putc(struct buf *b, char c)
{
	cl_buf_append(b, &c, 1);
}

void
cl_buf_printf(struct buf *b, const char *fmt, ...)
{
	/* Most lines fit the stack buffer: one formatting pass, and no vsnprintf(NULL, 0)
	 * (which GCC's sanitizer build flags as a null format string). */
	char small[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_grow(b, (size_t)n);
	if ((size_t)n < sizeof(small)) {
		memcpy(b->data + b->len, small, (size_t)n + 1);
	} else {
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += (size_t)n;
}

char *
cl_buf_detach(struct buf *b)
{
	char *s = b->data ? b->data : cl_xstrdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return s;
}

const char *
cl_buf_str(const struct buf *b)
{
	return b->data ? b->data : "";
}

void
cl_buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
cl_buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
