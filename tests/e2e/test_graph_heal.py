#!/usr/bin/python3
"""The in-memory map never drifts from PostgreSQL silently (issue 8, item 3).

- A change row the tailer cannot apply (fed through SQL as a superuser: an edge to a
  node that does not exist) is counted in /metrics, turns /readyz and the graph
  queries into 503 "reloading" while the whole map is reloaded in the background,
  and the map comes back equal to the database (GET /v1/admin/verify says ok). A
  write acknowledged during the reload is in the reloaded map. The reload is held
  up on purpose (a lock on `edges`) so the 503 can be seen.
- The database changed behind cmdbd's back (UPDATE/DELETE/INSERT as a superuser,
  which writes no change row): the verification, over HTTP and as `cmdbd verify`,
  names exactly the nodes that differ (and the node whose edges differ), and a
  repair (?repair=true / --repair) reloads the map, which then answers as the
  database does.

Run: /usr/bin/python3 tests/e2e/test_graph_heal.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import os
import re
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import ServerTestCase, node_path  # noqa: E402

RECOVER_SECONDS = 15.0


def poll(fn, pred, seconds):
    return lib.poll(fn, pred, seconds, every=0.05)


class HealMixin:
    def metric(self, name):
        st, _, text = self.srv.get("/metrics", token=None)
        self.assertEqual(st, 200)
        m = re.search(r"(?m)^%s (\d+)$" % re.escape(name), text)
        self.assertIsNotNone(m, "%s is in /metrics" % name)
        return int(m.group(1))

    def verify(self, query="", token="admin"):
        return self.srv.get("/v1/admin/verify" + query, token=token)

    def assertVerified(self, what):
        report = self.assertStatus(self.verify(), 200, what)
        self.assertTrue(report["ok"], "%s: the map equals the database: %r" % (what, report))
        return report

    def wait_ready(self, what):
        r = poll(lambda: self.srv.get("/readyz", token=None), lambda r: r[0] == 200,
                 RECOVER_SECONDS)
        self.assertStatus(r, 200, what)

    def dependents(self, ref):
        body = self.assertStatus(self.srv.get(node_path(ref) + "/dependents"), 200)
        return sorted(n["ref"] for n in body["nodes"])


class BadChangeRow(HealMixin, ServerTestCase):
    server_name = "heal_bad_row"

    def insert_bad_row(self):
        """An edge.created row naming a node nobody created, numbered and announced as
        cmdb_commit_changes() would (a superuser can write the log directly)."""
        self.srv.psql(
            "WITH s AS (UPDATE change_seq SET last = last + 1 RETURNING last) "
            "INSERT INTO changes (seq, actor, source, op, ref, before, after) "
            "SELECT last, 'test', 'test', 'edge.created', "
            "'service/heal-a depends_on service/ghost', NULL, "
            "'{\"from\": \"service/heal-a\", \"type\": \"depends_on\", "
            "\"to\": \"service/ghost\", \"attributes\": {}, \"sources\": []}' FROM s; "
            "SELECT pg_notify('cmdb_changes', last::text) FROM change_seq")
        return int(self.srv.psql("SELECT last FROM change_seq").strip())

    def test_bad_row_reloads_the_map(self):
        s = self.srv
        for ref in ("service/heal-a", "host/heal-h", "service/heal-b"):
            self.assertStatus(s.put_node(ref, {"n": 1}), 201)
        self.assertStatus(s.put_edge("service/heal-a", "runs_on", "host/heal-h"), 201)
        self.assertStatus(s.put_edge("service/heal-b", "depends_on", "service/heal-a"), 201)
        self.assertVerified("before the bad row")
        self.assertEqual(self.metric("cmdb_graph_apply_failures_total"), 0)
        self.assertEqual(self.metric("cmdb_graph_reloads_total"), 0)

        # Hold the reload up: its COPY of edges waits for this lock.
        locker = subprocess.Popen([lib.PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                                   s.db_url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        released = False
        writer = None
        try:
            locker.stdin.write("BEGIN; LOCK TABLE edges IN ACCESS EXCLUSIVE MODE;\n")
            locker.stdin.flush()
            held = poll(lambda: s.psql(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE c.relname = 'edges' AND l.mode = 'AccessExclusiveLock' "
                "AND l.granted").strip(), lambda v: v == "1", 10)
            self.assertEqual(held, "1", "the test holds the lock on edges")

            bad_seq = self.insert_bad_row()
            n = poll(lambda: self.metric("cmdb_graph_apply_failures_total"),
                     lambda v: v >= 1, 10)
            self.assertEqual(n, 1, "the failed row is counted")
            self.assertIn("event=tailer_apply_failed seq=%d" % bad_seq, s.log_tail(80))

            # The map is being reloaded: not ready, graph queries 503 like at start.
            r = s.get("/readyz", token=None)
            self.assertError(r, 503, "reloading", ("reload",), "/readyz during the reload")
            r = s.get(node_path("host/heal-h") + "/dependents")
            self.assertError(r, 503, "reloading", (), "a graph query during the reload")
            self.assertEqual(r[1].get("retry-after"), "1")
            self.assertError(s.get(node_path("host/heal-h")), 503, "reloading")
            self.assertEqual(self.metric("cmdb_graph_ready"), 0)

            # A write acknowledged while the map reloads is in the reloaded map.
            result = {}

            def write():
                result["resp"] = s.put_node("service/heal-during", {"n": 2})

            writer = threading.Thread(target=write)
            writer.start()
            time.sleep(0.5)
            locker.stdin.write("ROLLBACK;\n")
            locker.stdin.close()
            locker.wait(10)
            released = True
        finally:
            if not released:
                locker.kill()
                locker.wait()
            locker.stderr.close()
            if writer is not None:
                writer.join(30)

        self.assertStatus(result["resp"], 201, "the write during the reload")
        self.wait_ready("/readyz after the reload")
        self.assertEqual(self.metric("cmdb_graph_reloads_total"), 1)
        self.assertEqual(self.metric("cmdb_graph_apply_failures_total"), 1)
        self.assertEqual(self.metric("cmdb_graph_ready"), 1)
        report = self.assertVerified("after the reload")
        self.assertGreaterEqual(report["seq"], bad_seq)
        self.assertEqual(report["nodes"]["memory"], 4)
        self.assertEqual(report["edges"]["memory"], 2)
        self.assertEqual(self.dependents("host/heal-h"), ["service/heal-a", "service/heal-b"])
        self.assertStatus(s.get(node_path("service/heal-during")), 200)
        self.assertError(s.get(node_path("service/ghost")), 404)
        # And it follows the log again.
        self.assertStatus(s.put_edge("service/heal-during", "depends_on", "service/heal-b"),
                          201)
        self.assertEqual(self.dependents("host/heal-h"),
                         ["service/heal-a", "service/heal-b", "service/heal-during"])
        self.assertVerified("after a write that followed the reload")


class DriftBehindTheBack(HealMixin, ServerTestCase):
    server_name = "heal_drift"

    def cmdbd_verify(self, *args, token="admin"):
        env = {"CMDB_URL": self.srv.url + "/", "CMDB_TOKEN": self.srv.token(token)}
        return self.srv.cmdbd("verify", *args, env=env, timeout=60)

    def test_verify_names_what_differs_and_repair_heals(self):
        s = self.srv
        refs = ("service/drift-a", "service/drift-b", "host/drift-h", "team/drift-t",
                "service/drift-alone")
        for ref in refs:
            self.assertStatus(s.put_node(ref, {"ratio": 1.50, "text": "é \u001f \"q\""},
                                         {"tier": "1"}), 201)
        self.assertStatus(s.put_edge("service/drift-a", "runs_on", "host/drift-h"), 201)
        self.assertStatus(s.put_edge("service/drift-a", "owned_by", "team/drift-t"), 201)
        self.assertStatus(s.put_edge("service/drift-b", "runs_on", "host/drift-h"), 201)
        self.assertStatus(s.put_node("service/drift-b", labels={"tier": "2"}), 200)
        self.assertStatus(s.put("/v1/nodes/service/drift-b/health",
                                {"state": "down", "reason": "r"}), 200)
        # A GET rewrites the node's image in memory: the digest must not change.
        self.assertStatus(s.get(node_path("service/drift-a")), 200)
        report = self.assertVerified("before any drift")
        self.assertEqual((report["nodes"]["memory"], report["nodes"]["database"]), (5, 5))
        self.assertEqual((report["edges"]["memory"], report["edges"]["database"]), (3, 3))
        p = self.cmdbd_verify()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('"ok": true', p.stdout)

        # Behind cmdbd's back: no change row, no NOTIFY.
        changes = s.psql("SELECT last FROM change_seq").strip()
        s.psql("UPDATE nodes SET labels = '{\"tier\": \"3\"}' "
               "WHERE kind = 'service' AND name = 'drift-b'")
        s.psql("DELETE FROM edges WHERE type = 'owned_by'")
        s.psql("DELETE FROM nodes WHERE kind = 'service' AND name = 'drift-alone'")
        s.psql("INSERT INTO nodes (id, kind, name, sources) "
               "VALUES (gen_random_uuid(), 'service', 'drift-new', '[]')")
        self.assertEqual(s.psql("SELECT last FROM change_seq").strip(), changes)

        report = self.assertStatus(self.verify(), 200)
        self.assertFalse(report["ok"], report)
        self.assertEqual(report["nodes"]["differ"],
                         ["service/drift-alone", "service/drift-b", "service/drift-new"])
        self.assertEqual(report["nodes"]["differ_count"], 3)
        self.assertEqual((report["nodes"]["memory"], report["nodes"]["database"]), (5, 5))
        self.assertEqual(report["edges"]["differ"], ["service/drift-a"])
        self.assertEqual((report["edges"]["memory"], report["edges"]["database"]), (3, 2))
        # A plain verification changes nothing.
        self.assertEqual(self.metric("cmdb_graph_reloads_total"), 0)
        self.assertEqual(self.assertStatus(s.get(node_path("service/drift-b")), 200)["labels"],
                         {"tier": "2"})
        # limit caps the list, not the count.
        report = self.assertStatus(self.verify("?limit=1"), 200)
        self.assertEqual(report["nodes"]["differ"], ["service/drift-alone"])
        self.assertEqual(report["nodes"]["differ_count"], 3)
        # Admin scope only; bad parameters are 400s naming them.
        self.assertError(self.verify(token="read"), 403)
        self.assertError(self.verify(token="write"), 403)
        self.assertError(self.verify("?limit=0"), 400, None, ("limit",))
        self.assertError(self.verify("?repair=maybe"), 400, None, ("repair",))
        self.assertError(self.verify("?bogus=1"), 400, None, ("bogus",))

        p = self.cmdbd_verify("--limit", "2")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn('"service/drift-b"', p.stdout)
        self.assertNotIn('"service/drift-new"', p.stdout)
        p = self.cmdbd_verify(token="read")
        self.assertEqual(p.returncode, 3, p.stdout + p.stderr)

        # Repair: the map is reloaded and then answers as the database does.
        p = self.cmdbd_verify("--repair")
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn('"repair": "reloading"', p.stdout)
        self.wait_ready("/readyz after the repair")
        self.assertEqual(self.metric("cmdb_graph_reloads_total"), 1)
        report = self.assertVerified("after the repair")
        self.assertEqual((report["nodes"]["memory"], report["edges"]["memory"]), (5, 2))
        self.assertEqual(self.assertStatus(s.get(node_path("service/drift-b")), 200)["labels"],
                         {"tier": "3"})
        self.assertError(s.get(node_path("service/drift-alone")), 404)
        self.assertStatus(s.get(node_path("service/drift-new")), 200)
        owners = self.assertStatus(s.get(node_path("service/drift-a") + "/owners"), 200)
        self.assertEqual(owners["owners"], [])
        self.assertEqual(self.dependents("host/drift-h"), ["service/drift-a", "service/drift-b"])
        report = self.assertStatus(self.verify("?repair=true"), 200)
        self.assertTrue(report["ok"], report)
        self.assertEqual(report["repair"], "not_needed")
        p = self.cmdbd_verify()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)


class PeriodicVerify(HealMixin, ServerTestCase):
    """--verify-interval: the server checks itself and repairs what differs."""
    server_name = "heal_periodic"
    server_args = ("--verify-interval", "1")

    def test_periodic_verification_repairs(self):
        s = self.srv
        self.assertStatus(s.put_node("service/per-a", {"v": 1}), 201)
        s.psql("UPDATE nodes SET attributes = '{\"v\": 2}' WHERE name = 'per-a'")
        got = poll(lambda: s.get(node_path("service/per-a")),
                   lambda r: r[0] == 200 and r[2]["attributes"] == {"v": 2}, RECOVER_SECONDS)
        self.assertEqual(self.assertStatus(got, 200)["attributes"], {"v": 2},
                         "the periodic verification repaired the map")
        self.assertGreaterEqual(self.metric('cmdb_graph_verifications_total{result="differ"}'),
                                1)
        self.assertIn("event=verify_differs", s.log_tail(200))


if __name__ == "__main__":
    unittest.main()
