/*
 * fuzz_ref.c — identifier syntax and percent-decoding (cmdbd/model.c), the RFC 3339
 * check of manifest times, and the name tables of the graph (cmdbd/graph.c).
 *
 * The input is one string (a ref, a name, a path segment, a time). Each answer is
 * checked against an independent statement of the rule: UTF-8 validity against
 * jansson's, the kind/source alphabets written out again here, a parsed ref against
 * its input, a decoded segment against its re-encoding, and model.c's health and
 * edge-type tables against graph.c's.
 */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "manifest.h"
#include "model.h"
#include "fuzz.h"

static bool
in_set(const char *s, const char *first, const char *rest, size_t max)
{
	size_t n = strlen(s);

	if (n == 0 || n > max || strchr(first, s[0]) == NULL)
		return false;
	return strspn(s, rest) == n;
}

#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define DIGIT "0123456789"

/* The name rule restated: 1..255 bytes, UTF-8, no C0, DEL or C1 (U+0080..U+009F). */
static bool
name_rule(const char *s, size_t n)
{
	json_t *j;

	if (n == 0 || n > MODEL_NAME_MAX)
		return false;
	j = json_stringn(s, n); /* NULL: not UTF-8 */
	if (j == NULL)
		return false;
	json_decref(j);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f ||
		    (c == 0xc2 && i + 1 < n && (unsigned char)s[i + 1] >= 0x80 &&
		     (unsigned char)s[i + 1] <= 0x9f))
			return false;
	}
	return true;
}

static int
hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
		return (c | 0x20) - 'a' + 10;
	return -1;
}

static void
check_percent(const char *data, size_t size)
{
	size_t n = 0, n2 = 0;
	char *out = model_percent_decode(data, size, &n);
	bool want_ok = true;
	size_t want_len = 0;

	/* The rule: no NUL, every '%' followed by two hex digits, not %00. */
	for (size_t i = 0; i < size; i++, want_len++) {
		if (data[i] == '\0') {
			want_ok = false;
		} else if (data[i] == '%') {
			if (i + 2 >= size || hex(data[i + 1]) < 0 || hex(data[i + 2]) < 0 ||
			    (data[i + 1] == '0' && data[i + 2] == '0'))
				want_ok = false;
			i += 2;
		}
	}
	CHECK((out != NULL) == want_ok);
	if (out == NULL)
		return;
	CHECK(n == want_len && out[n] == '\0' && memchr(out, '\0', n) == NULL);

	/* Encoding every byte again and decoding gives the same bytes. */
	{
		char *enc = malloc(3 * n + 1), *back;

		CHECK(enc != NULL);
		for (size_t i = 0; i < n; i++)
			snprintf(enc + 3 * i, 4, "%%%02X", (unsigned char)out[i]);
		back = model_percent_decode(enc, 3 * n, &n2);
		CHECK(back != NULL && n2 == n && memcmp(back, out, n) == 0);
		free(back);
		free(enc);
	}
	free(out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	char kind[MODEL_KIND_MAX + 1], name[MODEL_NAME_MAX + 1];
	const char *why;
	size_t len;
	json_t *j;

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	len = strlen(s); /* identifiers arrive as C strings: up to the first NUL */

	/* UTF-8: model.c's decoder agrees with jansson's (overlongs, surrogates, range). */
	j = json_stringn((const char *)data, size);
	CHECK(model_utf8_valid((const char *)data, size) == (j != NULL));
	json_decref(j);

	CHECK(model_kind_valid(s) == in_set(s, LOWER, LOWER DIGIT "_", MODEL_KIND_MAX));
	CHECK(model_source_valid(s) ==
	      in_set(s, LOWER DIGIT, LOWER DIGIT "_.:-", MODEL_SOURCE_MAX));
	CHECK(model_name_valid(s, len) == name_rule(s, len));

	why = model_ref_parse(s, kind, name);
	if (why == NULL) {
		char joined[MODEL_REF_MAX + 2];

		CHECK(model_kind_valid(kind) && model_name_valid(name, strlen(name)));
		snprintf(joined, sizeof(joined), "%s/%s", kind, name);
		CHECK(strcmp(joined, s) == 0);
	} else {
		const char *slash = strchr(s, '/');

		CHECK(*why != '\0');
		if (slash != NULL) {
			char k[MODEL_REF_MAX + 2];

			snprintf(k, sizeof(k), "%.*s", (int)(slash - s), s);
			CHECK(!model_kind_valid(k) ||
			      !model_name_valid(slash + 1, strlen(slash + 1)));
		}
	}

	/* The two modules' tables agree. */
	CHECK(model_health_valid(s) == (graph_health_parse(s) >= 0));
	CHECK(model_edge_type_index(s) == graph_edge_type_parse(s));
	if (graph_edge_type_parse(s) >= 0)
		CHECK(strcmp(graph_edge_type_name(graph_edge_type_parse(s)), s) == 0);

	if (manifest_time_valid(s)) {
		int y, mo, d, h, mi, sec;

		CHECK(sscanf(s, "%4d-%2d-%2d%*1[Tt]%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) == 6);
		CHECK(mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && sec <= 59);
	}

	check_percent((const char *)data, size);
	free(s);
	return 0;
}
