/*
 * table.h — aligned text tables for human output.
 *
 * Columns are separated by two spaces and padded to the widest cell
 * (counting UTF-8 code points, not bytes); the last column is not padded,
 * so lines carry no trailing blanks. Control characters in cells are shown
 * as '?' so server data can never move the cursor or forge lines.
 * Pure apart from cl_table_print: unit-tested by tests/check_client_table.c.
 */
#ifndef CMDB_CLIENT_TABLE_H
#define CMDB_CLIENT_TABLE_H

#include <stddef.h>
#include <stdio.h>

struct table;

/* Makes a table with `ncols` columns titled by headers[0..ncols). The header
 * strings are copied. */
struct table *cl_table_new(size_t ncols, const char *const *headers);
/* Adds a row; cells[0..ncols) are copied, a NULL cell prints as "-". */
void cl_table_add(struct table *t, const char *const *cells);
size_t cl_table_rows(const struct table *t);
/* Returns the rendered table (header line first) as a malloc'd string. */
char *cl_table_render(const struct table *t);
/* Writes the rendered table to f. Returns 0 or -1 (write error). */
int cl_table_print(const struct table *t, FILE *f);
/* NULL-safe. */
void cl_table_free(struct table *t);

/* Number of UTF-8 code points in s (continuation bytes are not counted). */
size_t cl_text_width(const char *s);
/* Returns a malloc'd copy of s with control characters replaced by '?'. */
char *cl_text_sanitize(const char *s);

#endif
