/*
 * fuzz_json.c — the JSON body checker (cmdbd/jv.c): every request body with a JSON
 * route goes through jv_parse_object(), then jv_check_object() against the route's
 * field list.
 *
 * Beyond "no crash, no leak, no UB" it checks what jv.h promises: an accepted body is
 * an object no deeper than the limit, with no duplicate keys (re-serialising and
 * re-parsing it strictly gives an equal value), and a refusal is a 400 whose message
 * is filled in.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"
#include "fuzz.h"

#define FUZZ_MAX_DEPTH 32 /* the default of --json-max-depth */

/* A node PUT body: the field list that exercises every jv_type. */
static const struct jv_field fields[] = {
    {"attributes", JV_OBJECT, false},
    {"labels", JV_STRING_MAP, false},
    {"health", JV_STRING, false},
    {"items", JV_ARRAY, false},
    {"max_depth", JV_INTEGER, false},
    {"weight", JV_NUMBER, false},
    {"dry_run", JV_BOOL, false},
    {"extra", JV_ANY, false},
    {NULL, JV_ANY, false},
};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jv_err err = {0};
	json_t *v, *again;
	char *text;

	v = jv_parse_object((const char *)data, size, FUZZ_MAX_DEPTH, &err);
	if (v == NULL) {
		CHECK(err.status == 400 && err.msg[0] != '\0');
		return 0;
	}
	CHECK(json_is_object(v) && jv_depth(v) <= FUZZ_MAX_DEPTH);

	/* Round trip: what was accepted serialises and parses back, strictly, equal. */
	text = json_dumps(v, JSON_COMPACT);
	CHECK(text != NULL && jv_serialized_size(v) == strlen(text));
	again = jv_parse_object(text, strlen(text), FUZZ_MAX_DEPTH, &err);
	CHECK(again != NULL && json_equal(v, again));
	json_decref(again);
	free(text);

	memset(&err, 0, sizeof(err));
	if (!jv_check_object(v, "", fields, &err))
		CHECK(err.status == 400 && err.msg[0] != '\0');
	/* Nested objects are checked with a path prefix, as the manifest's nodes are. */
	{
		const char *key;
		json_t *child;

		json_object_foreach(v, key, child)
		{
			char path[JV_PATH_MAX];

			jv_path_join(path, sizeof(path), "nodes[0]", key);
			memset(&err, 0, sizeof(err));
			if (json_is_object(child) && !jv_check_object(child, path, fields, &err))
				CHECK(err.status == 400 &&
				      strncmp(err.path, path, strlen(path)) == 0);
		}
	}
	json_decref(v);
	return 0;
}
