/*
 * check_main.c — the one Check runner: every suite in tests/check_*.c.
 *
 * The list of suites is generated from the file names (build/gen/suites.h, one
 * SUITE(x) per tests/check_x.c, where check_x.c defines `Suite *suite_x(void)` whose
 * suite is named "x"). Check's environment knobs work as usual: CK_RUN_SUITE=x or
 * CK_RUN_CASE=y to run a part, CK_FORK=no to debug in gdb, CK_VERBOSITY=verbose.
 *
 * The e2e suite (check_e2e.c) is built first and run last: it starts tests/e2e/runner.py,
 * which runs the end-to-end and SQL tests while the C suites run.
 *
 * Output ends with Check's summary line ("100%: Checks: N, Failures: 0, Errors: 0");
 * the exit status is non-zero when any test failed or errored.
 */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

int
main(void)
{
	SRunner *sr = srunner_create(NULL);
	const char *v;
	bool listed, quiet;
	int failed;

	/* Built first, run last: building it starts the end-to-end tests in the background
	 * (check_e2e.c), so they run while Check works through the other suites. */
	Suite *e2e = suite_e2e();

#define SUITE(name)                                                                                \
	if (strcmp(#name, "e2e") != 0)                                                             \
		srunner_add_suite(sr, suite_##name());
#include "suites.h"
	srunner_add_suite(sr, e2e);

	srunner_run_all(sr, CK_ENV);
	failed = srunner_ntests_failed(sr);
	/* With failures (or CK_VERBOSITY=verbose) Check lists the results after its summary
	 * line; repeat the summary so that it is the last line either way. */
	v = getenv("CK_VERBOSITY");
	listed = failed > 0 || (v != NULL && strcmp(v, "verbose") == 0);
	quiet = v != NULL && (strcmp(v, "silent") == 0 || strcmp(v, "minimal") == 0);

	if (listed && !quiet)
		srunner_print(sr, CK_MINIMAL);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
