/*
 * fuzz_manifest.c — manifest validation (cmdbd/manifest.c) as POST /v1/manifests
 * runs it: the strict body parse, manifest_validate() within the default limits,
 * and the fingerprint of what passed.
 *
 * Checks beyond "no crash, no leak, no UB": a refusal names a status (400 or 413)
 * and a message; an accepted manifest keeps validating, with the same fingerprint,
 * after a round trip through text with its keys in another order (the identical
 * re-post is recognised whatever the key order and whitespace); within smaller limits
 * the only new refusal is a 413 on the count.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "jv.h"
#include "manifest.h"
#include "fuzz.h"

#define FUZZ_MAX_DEPTH 32 /* the defaults of --json-max-depth and the manifest limits */

static const struct manifest_limits limits = {10000, 10000};
static const struct manifest_limits small = {3, 3};

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jv_err err = {0};
	char fp[MANIFEST_FINGERPRINT_HEX + 1], fp2[MANIFEST_FINGERPRINT_HEX + 1];
	json_t *m, *again;
	char *text;

	m = jv_parse_object((const char *)data, size, FUZZ_MAX_DEPTH, &err);
	if (m == NULL)
		return 0;
	if (!manifest_validate(m, &limits, &err)) {
		CHECK((err.status == 400 || err.status == 413) && err.msg[0] != '\0');
		json_decref(m);
		return 0;
	}
	CHECK(manifest_fingerprint(m, fp) == 0 && strlen(fp) == MANIFEST_FINGERPRINT_HEX);

	/* Within smaller limits it passes too, or fails on a count with 413. */
	if (!manifest_validate(m, &small, &err))
		CHECK(err.status == 413 &&
		      (strcmp(err.path, "nodes") == 0 || strcmp(err.path, "edges") == 0));

	/* Sorted keys and indentation: another text of the same manifest. */
	text = json_dumps(m, JSON_SORT_KEYS | JSON_INDENT(1));
	CHECK(text != NULL);
	again = jv_parse_object(text, strlen(text), FUZZ_MAX_DEPTH, &err);
	CHECK(again != NULL && manifest_validate(again, &limits, &err));
	CHECK(manifest_fingerprint(again, fp2) == 0 && strcmp(fp, fp2) == 0);
	json_decref(again);
	free(text);

	/* A changed generation is a different manifest: another fingerprint. */
	json_object_set_new(m, "generation",
			    json_integer(json_integer_value(json_object_get(m, "generation")) ^ 1));
	CHECK(manifest_fingerprint(m, fp2) == 0 && strcmp(fp, fp2) != 0);
	json_decref(m);
	return 0;
}
