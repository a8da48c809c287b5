#!/usr/bin/python3
"""The error policy (cmdbd/DESIGN.md, "Errors"): when PostgreSQL refuses a statement,
its own text (which names tables, constraints and SQL) goes to the server log beside
the request id, and the client gets a short factual JSON error without SQL internals.

The refusal is real: the test adds a CHECK constraint to the nodes table behind
cmdbd's back (as the cluster superuser), so a hand edit that breaks it fails inside
PostgreSQL, not in cmdbd's own validation."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402

SQL_WORDS = ("constraint", "violates", "relation", "nodes_", "cmdb_", "sql", "pl/pgsql",
             "e2e_trap")


class DatabaseRefusals(ServerTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv.psql("ALTER TABLE nodes ADD CONSTRAINT e2e_trap_name "
                     "CHECK (name <> 'forbidden-by-check')")

    def refused(self, resp, status, code):
        err = self.assertError(resp, status, code)
        text = (err["message"] + " " + str(err["details"])).lower()
        for w in SQL_WORDS:
            self.assertNotIn(w, text, "PostgreSQL internals reach the client" + self.ctx(resp))
        return err

    def test_check_violation_is_400_without_sql_text(self):
        resp = self.srv.put(node_path("service/forbidden-by-check"), {"attributes": {}})
        err = self.refused(resp, 400, "bad_request")
        # The log has PostgreSQL's words, with this request's id on the same line.
        lines = [ln for ln in open(self.srv.log_path, errors="replace")
                 if err["request_id"] in ln and "e2e_trap_name" in ln]
        self.assertTrue(lines, "the log names the constraint next to the request id; tail:\n"
                        + self.srv.log_tail(20))
        self.assertIn("event=db_refused", lines[0])
        # Nothing was written.
        self.assertStatus(self.srv.get(node_path("service/forbidden-by-check")), 404)

    def test_manifest_refused_the_same_way(self):
        m = {"manifest": "cmdb/v1", "source": "ci:trap", "nodes": [{"ref": "service/forbidden-by-check"}]}
        resp = self.srv.post("/v1/manifests", m)
        self.refused(resp, 400, "bad_request")
        self.assertStatus(self.srv.get(node_path("service/forbidden-by-check")), 404)
        # The source is untouched: a good manifest from it still applies from scratch.
        ok = self.srv.post("/v1/manifests", {"manifest": "cmdb/v1", "source": "ci:trap",
                                             "nodes": [{"ref": "service/fine"}]})
        self.assertStatus(ok, (200, 201))

    def test_other_requests_unaffected(self):
        self.assertStatus(self.srv.put(node_path("service/allowed"), {"attributes": {}}),
                          (200, 201))


if __name__ == "__main__":
    unittest.main()
