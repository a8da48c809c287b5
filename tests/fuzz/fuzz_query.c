/*
 * fuzz_query.c — the query string as the handlers read it: libevent's
 * evhttp_parse_query_str() (as handle_request() calls it), then every value through
 * the parsers the handlers use for their parameters: integers (limit, depth, since,
 * wait), booleans (orphan, dry_run), label=KEY:VALUE, types=, direction=, and refs
 * (from, to, root, owner, node).
 *
 * Each parser is checked against a statement of its rule written out here: an
 * integer is accepted exactly when it is [-]digits within range and its value is the
 * decimal one; a types mask is non-empty, impact types only, and parses back from
 * the names of its bits.
 */
#include <sys/queue.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "model.h"
#include "fuzz.h"

/* The ranges the handlers pass (api_changes.c, api_graph.c, api_nodes.c). */
static const long ranges[][2] = {
    {0, LONG_MAX - 1}, {1, 1000}, {0, 60}, {0, 100000}, {1, 100000}, {LONG_MIN, LONG_MAX},
};

/* [-]digits, value by hand with overflow detection. */
static enum model_long_result
long_rule(const char *v, long min, long max, long *out)
{
	const char *p = v;
	bool neg = *p == '-';
	unsigned long mag = 0, limit;

	if (neg)
		p++;
	if (*p == '\0')
		return MODEL_LONG_SYNTAX;
	limit = neg ? (unsigned long)LONG_MAX + 1 : (unsigned long)LONG_MAX;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return MODEL_LONG_SYNTAX;
		if (mag > (limit - (unsigned long)(*p - '0')) / 10)
			return MODEL_LONG_SYNTAX; /* overflow */
		mag = mag * 10 + (unsigned long)(*p - '0');
	}
	*out = neg ? (mag == (unsigned long)LONG_MAX + 1 ? LONG_MIN : -(long)mag) : (long)mag;
	return *out < min || *out > max ? MODEL_LONG_RANGE : MODEL_LONG_OK;
}

static void
check_value(const char *key, const char *v)
{
	unsigned mask;
	size_t klen;

	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		long got = 12345, want = 0;
		enum model_long_result r = model_parse_long(v, ranges[i][0], ranges[i][1], &got);

		CHECK(r == long_rule(v, ranges[i][0], ranges[i][1], &want));
		if (r == MODEL_LONG_OK)
			CHECK(got == want);
		else
			CHECK(got == 12345); /* untouched */
	}

	{
		int b = model_parse_bool(v);

		CHECK(b == -1 || b == 0 || b == 1);
		CHECK((b == 1) == (strcmp(v, "true") == 0 || strcmp(v, "1") == 0));
		CHECK((b == 0) == (strcmp(v, "false") == 0 || strcmp(v, "0") == 0));
	}

	klen = model_label_filter_key(v);
	if (klen > 0) {
		CHECK(klen < strlen(v) && v[klen] == ':' && memchr(v, ':', klen) == NULL);
		CHECK(model_utf8_valid(v, strlen(v)));
	} else {
		CHECK(v[0] == ':' || strchr(v, ':') == NULL || !model_utf8_valid(v, strlen(v)));
	}

	if (graph_impact_mask_parse(v, &mask) == 0) {
		char names[128] = "";
		unsigned again = 0;

		CHECK(mask != 0 && (mask & ~GRAPH_IMPACT_MASK) == 0);
		for (int t = 0; t < GRAPH_EDGE_TYPES; t++)
			if (mask & GRAPH_TYPE_BIT(t)) {
				if (names[0])
					strcat(names, ",");
				strcat(names, graph_edge_type_name(t));
			}
		CHECK(graph_impact_mask_parse(names, &again) == 0 && again == mask);
	}

	{
		int d = graph_direction_parse(v);

		CHECK(d == -1 || d == GRAPH_DIR_DEPENDENTS || d == GRAPH_DIR_DEPENDENCIES ||
		      d == GRAPH_DIR_BOTH);
	}
	/* Refs and kinds as filters: the rules are fuzz_ref's; here, that values from a
	 * query string reach them safely. */
	if (model_ref_parse(v, NULL, NULL) == NULL)
		CHECK(strchr(v, '/') != NULL);
	(void)model_kind_valid(v);
	(void)model_health_valid(v);
	(void)key;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *q = malloc(size + 1);
	struct evkeyvalq params;
	struct evkeyval *kv;

	if (q == NULL)
		return 0;
	memcpy(q, data, size);
	q[size] = '\0';
	TAILQ_INIT(&params);
	if (evhttp_parse_query_str(q, &params) == 0) {
		TAILQ_FOREACH(kv, &params, next)
		{
			CHECK(kv->key != NULL && kv->value != NULL);
			check_value(kv->key, kv->value);
		}
	}
	evhttp_clear_headers(&params);
	free(q);
	return 0;
}
