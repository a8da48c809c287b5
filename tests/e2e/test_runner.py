#!/usr/bin/env python3
"""The test runner itself: build/check_cmdb reports every end-to-end and SQL test by name.

Runs the Check runner (CK_RUN_SUITE=e2e) on fixture units written to a temporary
directory (CMDB_E2E_DIR, CMDB_SQL_DIR): passing, failing, erroring, skipped tests, a
failing subtest, a broken setUpClass and tearDownClass, a file that does not import, a
process that dies in a test, one that hangs, one that runs last (E2E_RUN_LAST), SQL
cases that pass and fail; and checks
the lines by name, the bounded output of failures, Check's failure list near the end
(located in the fixture files), and the summary line, last, counting every test.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

CHECK_BIN = os.environ.get("CMDB_CHECK_BIN") or os.path.join(lib.REPO, "build", "check_cmdb")
SLOW = float(os.environ.get("CK_TIMEOUT_MULTIPLIER") or 1)

FIXTURES = {
    "e2e/test_fx.py": '''
        import os, sys, unittest
        sys.path.insert(0, os.environ["CMDB_REPO"] + "/tests/e2e")
        import lib

        class A(unittest.TestCase):
            def test_error(self):
                raise RuntimeError("boom")

            def test_fail(self):
                print("output of the failing test")
                print("x" * 200000)
                self.assertEqual(1, 2, "one is not two")

            def test_pass(self):
                print("output of a passing test")

            @unittest.skip("not today")
            def test_skip(self):
                pass

            def test_sub(self):
                for i in range(3):
                    with self.subTest(i=i):
                        self.assertLess(i, 2)

        class BadSetup(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                raise RuntimeError("setup broke")

            def test_a(self):
                pass

        class BadTeardown(unittest.TestCase):
            @classmethod
            def tearDownClass(cls):
                raise AssertionError("teardown broke")

            def test_ok(self):
                pass
        ''',
    "e2e/test_crash.py": '''
        import os, unittest

        class C(unittest.TestCase):
            def test_1_fine(self):
                pass

            def test_2_dies(self):
                os._exit(7)

            def test_3_never(self):
                pass
        ''',
    "e2e/test_syntax.py": '''
        import unittest
        class S(unittest.TestCase:
            pass
        ''',
    "e2e/test_hang.py": '''
        import time, unittest

        class H(unittest.TestCase):
            def test_hangs(self):
                time.sleep(1000)
        ''',
    "e2e/test_rl_first.py": '''
        import os, time, unittest

        class First(unittest.TestCase):
            def test_writes_last(self):
                time.sleep(1.5)
                open(os.path.join(os.environ["CMDB_API_RECORD_DIR"], "first-done"),
                     "w").close()
        ''',
    "e2e/test_rl_last.py": '''
        import os, unittest
        E2E_RUN_LAST = True

        class Last(unittest.TestCase):
            def test_runs_after_the_others(self):
                d = os.environ["CMDB_API_RECORD_DIR"]
                self.assertTrue(os.path.exists(os.path.join(d, "first-done")), d)
        ''',
    "sql/t_1_ok.sql": '''
        SELECT cmdb_test.reset();
        DO $$ BEGIN PERFORM cmdb_test.ok(true, 'fine'); END $$;
        ''',
    "sql/t_2_bad.sql": '''
        SELECT cmdb_test.reset();
        DO $$ BEGIN PERFORM cmdb_test.eq(1, 2, 'one is two'); END $$;
        ''',
}


class Runner(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lib.admin_url()
        lib.require_binaries((CHECK_BIN, "CMDB_CHECK_BIN"))
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-runner-")
        for path, text in FIXTURES.items():
            os.makedirs(os.path.join(cls.tmp, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(cls.tmp, path), "w") as f:
                f.write(textwrap.dedent(text).lstrip())

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def run_check(self, tests=None, timeout=30):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CK_") and k not in ("CMDB_E2E_TESTS", "CMDB_E2E_TIMEOUT")}
        env.update(CK_RUN_SUITE="e2e", CMDB_E2E_DIR=os.path.join(self.tmp, "e2e"),
                   CMDB_SQL_DIR=os.path.join(self.tmp, "sql"),
                   CMDB_E2E_TIMEOUT=str(timeout))
        if "CK_TIMEOUT_MULTIPLIER" in os.environ:
            env["CK_TIMEOUT_MULTIPLIER"] = os.environ["CK_TIMEOUT_MULTIPLIER"]
        if tests:
            env["CMDB_E2E_TESTS"] = tests
        p = subprocess.run([CHECK_BIN], env=env, cwd=lib.REPO, capture_output=True,
                           text=True, errors="replace", timeout=120 * SLOW)
        # Check's stdout and the tests' stderr: as make test prints them, roughly.
        return p.returncode, p.stderr, p.stdout

    def test_every_test_by_name(self):
        rc, err, out = self.run_check(
            "test_fx test_crash test_syntax sql test_nope.py::X.test_x")
        ctx = "\n--- stderr:\n%s\n--- stdout:\n%s" % (lib.clip(err, 20000), out)
        self.assertNotEqual(rc, 0, ctx)
        for line in ("PASS  test_fx.py::A.test_pass (", "SKIP  test_fx.py::A.test_skip (",
                     "PASS  test_fx.py::BadTeardown.test_ok (",
                     "PASS  test_crash.py::C.test_1_fine (", "PASS  sql::t_1_ok (",
                     "PASS  sql::(file) (", "FAIL  test_fx.py::A.test_fail (",
                     "ERROR test_fx.py::A.test_error (", "FAIL  test_fx.py::A.test_sub (",
                     "FAIL  sql::t_2_bad ("):
            self.assertIn("\n" + line, "\n" + err, ctx)
        # A failure's output, bounded: its beginning and its end, not all 200 KB.
        self.assertIn("output of the failing test", err, ctx)
        self.assertIn("AssertionError: 1 != 2 : one is not two", err, ctx)
        self.assertLess(len(err), 150000, "a failing test's output is bounded")
        self.assertNotIn("output of a passing test", err, "a passing test is one line")

        lines = out.rstrip("\n").splitlines()
        # 7 + (file) in test_fx, 3 + (file) in test_crash, (file) in test_syntax, 2 +
        # (file) in sql, one "(selection)": 17 checks; 6 pass: A.test_pass, A.test_skip,
        # BadTeardown.test_ok, C.test_1_fine, t_1_ok, sql's (file).
        self.assertEqual(lines[-1], "35%: Checks: 17, Failures: 11, Errors: 0",
                         "the summary line is last and counts every test" + ctx)
        fails = "\n".join(lines)
        # Check's list of failures, near the end: names, located in the fixture files.
        for pattern in (
                r"test_fx\.py:\d+:F:test_fx\.py:A\.test_fail:\d+: FAIL AssertionError: 1 != 2"
                r" : one is not two",
                r"test_fx\.py:\d+:F:test_fx\.py:A\.test_error:\d+: ERROR RuntimeError: boom",
                r":F:test_fx\.py:A\.test_sub:\d+: FAIL \(i=2\) AssertionError",
                r":F:test_fx\.py:BadSetup\.test_a:\d+: ERROR not run: setUpClass "
                r"\(test_fx\.BadSetup\) failed: RuntimeError: setup broke",
                r":F:test_fx\.py:\(file\):\d+: FAIL setUpClass .*\n\(and 1 more",
                r":F:test_crash\.py:C\.test_2_dies:\d+: ERROR test_crash\.py exited with "
                r"status 7 while this test ran",
                r":F:test_crash\.py:C\.test_3_never:\d+: ERROR not run: test_crash\.py",
                r":F:test_crash\.py:\(file\):\d+: FAIL test_crash\.py exited with status 7",
                r":F:test_syntax\.py:\(file\):\d+: FAIL test_syntax\.py exited with status 3"
                r" \(SyntaxError",
                r"t_2_bad\.sql:2:F:sql:t_2_bad:\d+: FAIL .*FAILED: one is two\nDETAIL:  got:  1",
                r":F:\(selection\):test_nope\.py::X\.test_x:\d+: ERROR .*matches no test"):
            self.assertRegex(fails, pattern, ctx)
        self.assertNotIn("test_hang.py::", err, "CMDB_E2E_TESTS selects units")
        self.assertNotIn(":test_hang.py:", out, "CMDB_E2E_TESTS selects units")

    def test_one_test_by_name(self):
        rc, err, out = self.run_check("test_fx.py::A.test_pass")
        ctx = "\n--- stderr:\n%s\n--- stdout:\n%s" % (err, out)
        self.assertEqual(rc, 0, ctx)
        self.assertEqual(re.findall(r"^(PASS|FAIL|ERROR|SKIP) +(\S+)", err, re.M),
                         [("PASS", "test_fx.py::A.test_pass"), ("PASS", "test_fx.py::(file)")],
                         ctx)
        self.assertEqual(out.rstrip("\n").splitlines()[-1],
                         "100%: Checks: 2, Failures: 0, Errors: 0", ctx)

    def test_run_last_waits_for_the_others(self):
        """A unit with E2E_RUN_LAST starts after the others end (two at a time would
        start both at once), and every unit gets CMDB_API_RECORD_DIR, the same one."""
        rc, err, out = self.run_check("test_rl_last test_rl_first")
        ctx = "\n--- stderr:\n%s\n--- stdout:\n%s" % (err, out)
        self.assertEqual(rc, 0, ctx)
        self.assertIn("PASS  test_rl_last.py::Last.test_runs_after_the_others", err, ctx)

    def test_a_unit_that_hangs_is_stopped(self):
        rc, err, out = self.run_check("test_hang", timeout=2)
        ctx = "\n--- stderr:\n%s\n--- stdout:\n%s" % (err, out)
        self.assertNotEqual(rc, 0, ctx)
        self.assertRegex(out, r":F:test_hang\.py:\(file\):\d+: FAIL test_hang\.py timed out "
                              r"after \d+ s", ctx)
        self.assertRegex(out, r":F:test_hang\.py:H\.test_hangs:\d+: ERROR", ctx)
        self.assertEqual(out.rstrip("\n").splitlines()[-1],
                         "0%: Checks: 2, Failures: 2, Errors: 0", ctx)


if __name__ == "__main__":
    unittest.main()
