/*
 * check_e2e.c — suite "e2e": every tests/e2e/test_*.py, one Check test each.
 *
 * The scripts (Python standard library, Debian's /usr/bin/python3) drive the real
 * binaries. They get the runner's environment: CMDB_TEST_ADMIN_URL (a superuser
 * conninfo of a throwaway cluster), CMDBD_BIN, CMDB_BIN, CMDB_REPO. A script passes when
 * it exits 0; otherwise its output is printed and the test fails. The list is gathered
 * when the suite is built, before srunner_run_all(). Without CMDB_TEST_ADMIN_URL the
 * suite holds no tests (`make check`).
 */
#include <check.h>
#include <errno.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define E2E_PYTHON "/usr/bin/python3"
#define E2E_TIMEOUT_S 600 /* per script */
/* Keep at most this much of a script's output (its end: where failures are). */
#define E2E_OUTPUT_MAX (256 * 1024)

/* The scripts, absolute paths, sorted; owned here, freed at exit. */
static glob_t e2e_scripts;
/* Why the scripts could not be listed (a failing test reports it). */
static char e2e_error[4200];

static void
free_scripts(void)
{
	globfree(&e2e_scripts);
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash != NULL ? slash + 1 : path;
}

/* The repository root: $CMDB_REPO, else the current directory. */
static const char *
repo_dir(void)
{
	const char *repo = getenv("CMDB_REPO");

	return repo != NULL && repo[0] != '\0' ? repo : ".";
}

/* Append data (n <= E2E_OUTPUT_MAX) to a buffer that keeps the last E2E_OUTPUT_MAX
 * bytes. */
static void
keep_tail(char *buf, size_t *len, const char *data, size_t n)
{
	if (*len + n > E2E_OUTPUT_MAX) {
		size_t drop = *len + n - E2E_OUTPUT_MAX;
		memmove(buf, buf + drop, *len - drop);
		*len -= drop;
	}
	memcpy(buf + *len, data, n);
	*len += n;
}

/* Run argv (argv[0] an absolute path) with stdout and stderr into one pipe; returns the
 * wait status and the output's tail in out (NUL-terminated; E2E_OUTPUT_MAX + 1 bytes). */
static int
run_program(char *const argv[], char *out)
{
	int fds[2];
	pid_t pid;
	size_t len = 0;
	char chunk[8192]; /* <= E2E_OUTPUT_MAX, as keep_tail needs */
	int status = 0;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fds[1], STDOUT_FILENO);
		dup2(fds[1], STDERR_FILENO);
		close(fds[0]);
		close(fds[1]);
		setenv("PYTHONUNBUFFERED", "1", 1);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execv(argv[0], argv);
		fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t n = read(fds[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		keep_tail(out, &len, chunk, (size_t)n);
	}
	out[len] = '\0';
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR)
			ck_abort_msg("waitpid: %s", strerror(errno));
	}
	return status;
}

/* Run argv; pass when it exits 0, else print its output and fail naming it. */
static void
expect_success(const char *name, char *const argv[])
{
	char *out = malloc(E2E_OUTPUT_MAX + 1);
	struct timespec t0, t1;
	double secs;
	int status;

	ck_assert_ptr_nonnull(out);
	fprintf(stderr, "e2e: %s ...\n", name);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	status = run_program(argv, out);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		fprintf(stderr, "e2e: %s ok (%.1f s)\n", name, secs);
		free(out);
		return;
	}
	fprintf(stderr,
		"----- %s failed after %.1f s; its output: -----\n%s%s----- end of %s -----\n",
		name, secs, out, out[0] != '\0' && out[strlen(out) - 1] != '\n' ? "\n" : "", name);
	free(out);
	if (WIFSIGNALED(status))
		ck_abort_msg("%s killed by signal %d", name, WTERMSIG(status));
	ck_abort_msg("%s exited with status %d", name, WEXITSTATUS(status));
}

START_TEST(test_e2e_script)
{
	char *script = e2e_scripts.gl_pathv[_i];
	char *argv[] = {E2E_PYTHON, script, NULL};

	expect_success(base_name(script), argv);
}
END_TEST

START_TEST(test_e2e_listing)
{
	ck_abort_msg("%s", e2e_error);
}
END_TEST

Suite *
suite_e2e(void)
{
	Suite *s = suite_create("e2e");
	TCase *tc;
	const char *admin_url = getenv("CMDB_TEST_ADMIN_URL");
	char pattern[4096];
	int rc;

	if (admin_url == NULL || admin_url[0] == '\0') {
		fputs("e2e: skipped: CMDB_TEST_ADMIN_URL is not set (make test sets it)\n", stderr);
		return s;
	}
	snprintf(pattern, sizeof(pattern), "%s/tests/e2e/test_*.py", repo_dir());
	rc = glob(pattern, 0, NULL, &e2e_scripts);
	if (rc == GLOB_NOMATCH) {
		fprintf(stderr, "e2e: no scripts match %s\n", pattern);
		return s;
	}
	tc = tcase_create("scripts");
	tcase_set_timeout(tc, E2E_TIMEOUT_S);
	if (rc != 0) {
		snprintf(e2e_error, sizeof(e2e_error), "cannot list %s (glob error %d)", pattern,
			 rc);
		tcase_add_test(tc, test_e2e_listing);
	} else {
		atexit(free_scripts);
		tcase_add_loop_test(tc, test_e2e_script, 0, (int)e2e_scripts.gl_pathc);
	}
	suite_add_tcase(s, tc);
	return s;
}
