/*
 * table.c — renders rows of strings as an aligned plain-text table.
 * The table owns copies of every cell; cl_table_free releases them all.
 */
#include "table.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"

struct table {
	size_t ncols;
	size_t nrows; /* data rows; row 0 of `cells` is the header */
	char **cells; /* (nrows + 1) * ncols owned strings */
};

size_t
cl_text_width(const char *s)
{
	size_t w = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p & 0xC0) != 0x80)
			w++;
	return w;
}

char *
cl_text_sanitize(const char *s)
{
	char *copy = cl_xstrdup(s);
	for (unsigned char *p = (unsigned char *)copy; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			*p = '?';
	return copy;
}

static void
add_row(struct table *t, const char *const *cells)
{
	size_t row = t->nrows + (t->cells != NULL); /* header goes in row 0 */
	t->cells = cl_xrealloc(t->cells, (row + 1) * t->ncols * sizeof *t->cells);
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[row * t->ncols + c] = cl_text_sanitize(cells[c] ? cells[c] : "-");
}

struct table *
cl_table_new(size_t ncols, const char *const *headers)
{
	struct table *t = cl_xmalloc(sizeof *t);
	t->ncols = ncols;
	t->nrows = 0;
	t->cells = NULL;
	add_row(t, headers);
	return t;
}

void
cl_table_add(struct table *t, const char *const *cells)
{
	add_row(t, cells);
	t->nrows++;
}

size_t
cl_table_rows(const struct table *t)
{
	return t->nrows;
}

char *
cl_table_render(const struct table *t)
{
	size_t *width = cl_xmalloc(t->ncols * sizeof *width);
	for (size_t c = 0; c < t->ncols; c++) {
		width[c] = 0;
		for (size_t r = 0; r <= t->nrows; r++) {
			size_t w = cl_text_width(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	}
	struct buf out = BUF_INIT;
	for (size_t r = 0; r <= t->nrows; r++) {
		size_t line_start = out.len;
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			cl_buf_puts(&out, cell);
			if (c + 1 < t->ncols) {
				for (size_t pad = cl_text_width(cell); pad < width[c] + 2; pad++)
					cl_buf_putc(&out, ' ');
			}
		}
		/* empty trailing cells would leave padding behind: trim it */
		while (out.len > line_start && out.data[out.len - 1] == ' ')
			out.len--;
		cl_buf_putc(&out, '\n');
	}
	free(width);
	return cl_buf_detach(&out);
}

int
cl_table_print(const struct table *t, FILE *f)
{
	char *s = cl_table_render(t);
	int rc = fputs(s, f) == EOF ? -1 : 0;
	free(s);
	return rc;
}

void
cl_table_free(struct table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < (t->nrows + 1) * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}
