/*
 * check_e2e.c — suite "e2e": every end-to-end Python test (tests/e2e/test_*.py) and
 * every SQL test case (tests/sql/t_*.sql) as a Check test of its own.
 *
 * tests/e2e/runner.py does the work. When the suite is built, before srunner_run_all(),
 * it is started in the background: it prints the list of tests ("UNIT\tNAME": UNIT a
 * file such as test_auth.py, or "sql"; NAME a test such as Auth.test_expired or
 * t_01_nodes, or "(file)", the unit as a whole), closes its stdout, then runs the units
 * a few at a time, writing one JSON result per test, DIR/UNIT/NAME, into a directory
 * made here. Meanwhile Check runs the C suites. Each UNIT is a TCase of that name
 * (CK_RUN_CASE=test_auth.py picks one file) and each NAME a test that waits for its
 * result, prints "PASS test_auth.py::Auth.test_expired (0.12 s)" (or SKIP), or on
 * failure the test's output (bounded) and fails with a short message located in the
 * Python or SQL file: Check's list of failures then names it near the end of the output.
 *
 * The runner gets the runner's environment: CMDB_TEST_ADMIN_URL (a superuser conninfo of
 * a throwaway cluster), CMDBD_BIN, CMDB_BIN, CMDB_REPO, and CMDB_E2E_TESTS (selection:
 * see runner.py). It holds an exclusive flock on DIR/.lock while it lives, so a test
 * whose result never comes fails as soon as the runner is gone. It gets SIGTERM if this
 * process dies. Without CMDB_TEST_ADMIN_URL the suite holds no tests (`make check`);
 * with CK_RUN_SUITE naming another suite nothing is started.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define E2E_PYTHON "/usr/bin/python3"
/* How long one test may wait for its result. The runner times out each unit itself
 * (CMDB_E2E_TIMEOUT); this only bounds a runner that hangs. CK_TIMEOUT_MULTIPLIER
 * applies. */
#define E2E_WAIT_S 3600
#define E2E_POLL_US (50 * 1000)
/* What a failing test prints of its output (the runner bounds it too), and what goes
 * into Check's message (Check refuses messages over ~4 KiB). */
#define E2E_OUTPUT_MAX (64 * 1024)
#define E2E_MESSAGE_MAX 3000

struct e2e_test {
	char *unit;  /* "test_auth.py", "sql" */
	char *name;  /* "Auth.test_expired", "t_01_nodes", "(file)" */
	TTest ttest; /* what Check calls: e2e_wait under the name "name" */
	int index;   /* its place in its unit: Check's loop index */
};

/* Everything below is owned here and freed at exit by the process that made it. */
static struct e2e_test *e2e_tests;
static size_t e2e_ntests;
static char e2e_dir[256];     /* the results directory; "" when none */
static pid_t e2e_runner = -1; /* runner.py --results */
static pid_t e2e_owner = -1;  /* who made the above (Check forks a child per test) */
/* Why the tests could not be listed (a failing test reports it). */
static char e2e_error[4200];

/* --- results directory ------------------------------------------------------------ */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* At exit of the process that started the runner: stop it, delete the results. */
static void
e2e_cleanup(void)
{
	size_t i;

	if (getpid() != e2e_owner)
		return;
	if (e2e_runner > 0) {
		/* Normally it is done (every result was read); it may still be writing the
		 * last unit's "(file)" result, or a selection left results unread. */
		int status;
		for (int tries = 0; tries < 100; tries++) {
			if (waitpid(e2e_runner, &status, WNOHANG) != 0)
				break;
			if (tries == 20)
				kill(e2e_runner, SIGTERM);
			usleep(E2E_POLL_US);
		}
		e2e_runner = -1;
	}
	if (e2e_dir[0] != '\0' && getenv("CMDB_E2E_KEEP_LOGS") == NULL)
		nftw(e2e_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	for (i = 0; i < e2e_ntests; i++) {
		free(e2e_tests[i].unit);
		free(e2e_tests[i].name);
	}
	free(e2e_tests);
	e2e_tests = NULL;
	e2e_ntests = 0;
}

/* The repository root: $CMDB_REPO, else the current directory. */
static const char *
repo_dir(void)
{
	const char *repo = getenv("CMDB_REPO");

	return repo != NULL && repo[0] != '\0' ? repo : ".";
}

/* --- the runner --------------------------------------------------------------------- */

/* Start runner.py --results e2e_dir with its stdout on a pipe; returns the read end or
 * -1 (e2e_error says why). */
static int
start_runner(void)
{
	char script[4096];
	int fds[2];
	pid_t parent = getpid();

	snprintf(script, sizeof(script), "%s/tests/e2e/runner.py", repo_dir());
	if (pipe(fds) != 0) {
		snprintf(e2e_error, sizeof(e2e_error), "pipe: %s", strerror(errno));
		return -1;
	}
	fflush(NULL);
	e2e_runner = fork();
	if (e2e_runner < 0) {
		snprintf(e2e_error, sizeof(e2e_error), "fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (e2e_runner == 0) {
		char *argv[] = {E2E_PYTHON, script, "--results", e2e_dir, NULL};

		/* Dies with us; if we are already gone, do not start at all. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(1);
		dup2(fds[1], STDOUT_FILENO);
		close(fds[0]);
		close(fds[1]);
		setenv("PYTHONUNBUFFERED", "1", 1);
		setenv("PYTHONDONTWRITEBYTECODE", "1", 1);
		execv(argv[0], argv);
		fprintf(stderr, "e2e: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	return fds[0];
}

/* Add one "UNIT\tNAME" line to e2e_tests. */
static void
add_listed(char *line)
{
	char *tab = strchr(line, '\t');
	struct e2e_test *t, *grown;

	if (tab == NULL || tab == line || tab[1] == '\0' || strchr(tab + 1, '/') != NULL)
		return;
	*tab = '\0';
	grown = realloc(e2e_tests, (e2e_ntests + 1) * sizeof(*e2e_tests));
	if (grown == NULL)
		return;
	e2e_tests = grown;
	t = &e2e_tests[e2e_ntests];
	t->unit = strdup(line);
	t->name = strdup(tab + 1);
	if (t->unit == NULL || t->name == NULL) {
		free(t->unit);
		free(t->name);
		return;
	}
	t->index = e2e_ntests > 0 && strcmp(e2e_tests[e2e_ntests - 1].unit, t->unit) == 0
		       ? e2e_tests[e2e_ntests - 1].index + 1
		       : 0;
	e2e_ntests++;
}

/* Read the runner's list of tests until it closes its stdout. */
static void
read_listing(int fd)
{
	FILE *f = fdopen(fd, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (f == NULL) {
		close(fd);
		return;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] == '\n')
			line[n - 1] = '\0';
		add_listed(line);
	}
	free(line);
	fclose(f);
}

/* Is the runner gone (its lock free)? */
static bool
runner_gone(void)
{
	char path[512];
	int fd;
	bool gone;

	snprintf(path, sizeof(path), "%s/.lock", e2e_dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return true;
	gone = flock(fd, LOCK_SH | LOCK_NB) == 0;
	close(fd);
	return gone;
}

/* The last max bytes of the file at path, as a NUL-terminated malloc'd string. */
static char *
file_tail(const char *path, size_t max)
{
	FILE *f = fopen(path, "r");
	char *buf;
	long size;
	size_t n;

	if (f == NULL)
		return strdup("(no such file)");
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	if (size > (long)max)
		fseek(f, size - (long)max, SEEK_SET);
	else
		fseek(f, 0, SEEK_SET);
	buf = malloc(max + 1);
	if (buf == NULL) {
		fclose(f);
		return NULL;
	}
	n = fread(buf, 1, max, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* --- one test ------------------------------------------------------------------------ */

/* Copy s into out (size max + 1), cut at a UTF-8 character boundary if longer. */
static void
clip_utf8(char *out, const char *s, size_t max)
{
	size_t n = strlen(s);

	if (n > max) {
		n = max;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(out, s, n);
	out[n] = '\0';
}

/* Report the result in the JSON file at path (see lib.write_result). */
static void
report(const struct e2e_test *t, const char *path)
{
	json_error_t jerr;
	json_t *doc = json_load_file(path, 0, &jerr);
	const char *status, *message, *output, *file;
	double secs;
	int line;
	static char where[512], kind[16], msg[E2E_MESSAGE_MAX + 1];

	if (doc == NULL)
		ck_abort_msg("%s::%s: unreadable result %s: %s", t->unit, t->name, path, jerr.text);
	status = json_string_value(json_object_get(doc, "status"));
	message = json_string_value(json_object_get(doc, "message"));
	output = json_string_value(json_object_get(doc, "output"));
	file = json_string_value(json_object_get(doc, "file"));
	secs = json_number_value(json_object_get(doc, "seconds"));
	line = (int)json_integer_value(json_object_get(doc, "line"));
	if (status == NULL)
		status = "ERROR";
	if (message == NULL)
		message = "";

	if (strcmp(status, "PASS") == 0 || strcmp(status, "SKIP") == 0) {
		fprintf(stderr, "%-5s %s::%s (%.2f s)%s%s\n", status, t->unit, t->name, secs,
			message[0] != '\0' ? ": " : "", message);
		json_decref(doc);
		return;
	}
	if (output != NULL && output[0] != '\0') {
		size_t len = strlen(output);
		const char *from = len > E2E_OUTPUT_MAX ? output + len - E2E_OUTPUT_MAX : output;
		fprintf(
		    stderr,
		    "----- %s %s::%s (%.2f s), its output: -----\n%s%s----- end of %s::%s -----\n",
		    status, t->unit, t->name, secs, from,
		    from[strlen(from) - 1] != '\n' ? "\n" : "", t->unit, t->name);
	}
	fprintf(stderr, "%-5s %s::%s (%.2f s)\n", status, t->unit, t->name, secs);
	/* Static: a failed assertion does not return, so nothing may be left to free. */
	snprintf(where, sizeof(where), "%s", file != NULL ? file : "");
	snprintf(kind, sizeof(kind), "%s", status);
	clip_utf8(msg, message, E2E_MESSAGE_MAX);
	json_decref(doc);
	/* Located in the Python or SQL file when the runner knows where. */
	if (where[0] != '\0')
		_ck_assert_failed(where, line, NULL, "%s %s", kind, msg);
	ck_abort_msg("%s %s", kind, msg);
}

/* Check calls this for every listed test. tcase_name() is the running test's name, the
 * very string given in its TTest (names repeat across units: "(file)"); _i is its index
 * in its unit. */
static void
e2e_wait(int _i)
{
	const char *name = tcase_name();
	const struct e2e_test *t = NULL;
	char path[1024];
	struct stat st;
	size_t i;

	for (i = 0; i < e2e_ntests && t == NULL; i++) {
		if (e2e_tests[i].name == name && e2e_tests[i].index == _i)
			t = &e2e_tests[i];
	}
	ck_assert_msg(t != NULL, "no e2e test %d named %s", _i, name);
	snprintf(path, sizeof(path), "%s/%s/%s", e2e_dir, t->unit, t->name);
	while (stat(path, &st) != 0) {
		if (runner_gone() && stat(path, &st) != 0) {
			char log[512];
			char *tail;

			snprintf(log, sizeof(log), "%s/runner.log", e2e_dir);
			tail = file_tail(log, 8 * 1024);
			fprintf(stderr,
				"----- tests/e2e/runner.py stopped; runner.log: -----\n%s\n",
				tail != NULL ? tail : "");
			free(tail);
			ck_abort_msg("%s::%s: tests/e2e/runner.py stopped without a result",
				     t->unit, t->name);
		}
		usleep(E2E_POLL_US);
	}
	report(t, path);
}

START_TEST(test_e2e_listing)
{
	ck_abort_msg("%s", e2e_error);
}
END_TEST

/* --- the suite ---------------------------------------------------------------------- */

Suite *
suite_e2e(void)
{
	Suite *s = suite_create("e2e");
	const char *admin_url = getenv("CMDB_TEST_ADMIN_URL");
	const char *only = getenv("CK_RUN_SUITE");
	const char *tmp = getenv("TMPDIR");
	TCase *tc = NULL;
	int fd, status;
	size_t i;

	if (admin_url == NULL || admin_url[0] == '\0') {
		fputs("e2e: skipped: CMDB_TEST_ADMIN_URL is not set (make test sets it)\n", stderr);
		return s;
	}
	if (only != NULL && only[0] != '\0' && strcmp(only, "e2e") != 0)
		return s;

	e2e_owner = getpid();
	atexit(e2e_cleanup);
	snprintf(e2e_dir, sizeof(e2e_dir), "%s/cmdb-e2e-results.XXXXXX",
		 tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp");
	if (mkdtemp(e2e_dir) == NULL) {
		snprintf(e2e_error, sizeof(e2e_error), "mkdtemp %s: %s", e2e_dir, strerror(errno));
		e2e_dir[0] = '\0';
	} else if ((fd = start_runner()) >= 0) {
		read_listing(fd);
		if (e2e_ntests == 0) {
			/* Nothing listed: a selection that matches nothing, or the runner failed.
			 */
			if (waitpid(e2e_runner, &status, 0) == e2e_runner) {
				e2e_runner = -1;
				if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
					snprintf(
					    e2e_error, sizeof(e2e_error),
					    "tests/e2e/runner.py listed no tests and %s %d (its "
					    "errors are above)",
					    WIFEXITED(status) ? "exited with status"
							      : "died of signal",
					    WIFEXITED(status) ? WEXITSTATUS(status)
							      : WTERMSIG(status));
			}
		}
	}

	if (e2e_error[0] != '\0') {
		tc = tcase_create("listing");
		tcase_add_test(tc, test_e2e_listing);
		suite_add_tcase(s, tc);
		return s;
	}
	for (i = 0; i < e2e_ntests; i++) {
		struct e2e_test *t = &e2e_tests[i];

		if (t->index == 0) {
			tc = tcase_create(t->unit);
			tcase_set_timeout(tc, E2E_WAIT_S);
			suite_add_tcase(s, tc);
		}
		t->ttest.name = t->name;
		t->ttest.fn = e2e_wait;
		t->ttest.file = __FILE__;
		t->ttest.line = __LINE__;
		/* What tcase_add_loop_test() expands to, with our own TTest: one iteration,
		 * numbered by the test's place in its unit. */
		_tcase_add_test(tc, &t->ttest, 0, 0, t->index, t->index + 1);
	}
	return s;
}
