#!/usr/bin/env python3
"""The SQL-level tests of the migrations' functions (tests/sql/), run in make test.

tests/sql/run.sh applies every migration to an empty database and runs each
tests/sql/t_*.sql (assertions RAISE); this wraps it so its verdict counts in the
Check summary. It needs the throwaway cluster's superuser (dblink sessions).
"""
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

ADMIN = os.environ.get("CMDB_TEST_ADMIN_URL")


@unittest.skipUnless(ADMIN, "CMDB_TEST_ADMIN_URL is not set: no PostgreSQL to test against")
class SqlFunctions(unittest.TestCase):
    def test_sql_suite(self):
        dbname = "sqltest_%d" % os.getpid()
        lib.psql(ADMIN, 'CREATE DATABASE "%s"' % dbname)
        try:
            run = subprocess.run(
                ["sh", os.path.join(lib.REPO, "tests", "sql", "run.sh"),
                 lib.with_dbname(ADMIN, dbname)],
                capture_output=True, text=True, timeout=600)
            print(run.stdout, end="")
            self.assertEqual(run.returncode, 0, "tests/sql failed:\n%s%s" % (run.stdout, run.stderr))
            self.assertIn("ok", run.stdout)
            self.assertNotIn("FAIL", run.stdout)
        finally:
            lib.psql(ADMIN, 'DROP DATABASE IF EXISTS "%s"' % dbname)


if __name__ == "__main__":
    unittest.main()
