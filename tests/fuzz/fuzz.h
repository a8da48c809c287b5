/*
 * fuzz.h — what the libFuzzer targets in tests/fuzz/ share: the entry point libFuzzer
 * calls, and CHECK(), which aborts (a crash libFuzzer records, with the input) when a
 * property the target states does not hold.
 */
#ifndef CMDB_FUZZ_H
#define CMDB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#endif
