#!/usr/bin/python3
"""Migration 0005 (the vocabulary) on a database that carries data.

A database is brought to 0004 from the migration files (as production databases
are), filled through the 0004 SQL functions (manifests from two sources, hand edits
under an 'api:' source with upper case and '@', a health update, an orphan, names
holding '/' and ':'), and then `cmdbd migrate` takes it to the latest version. Then:
  - every node's new `ref` column is kind/name;
  - the replies of the read functions (every list page with its cursors, filtered
    lists, each node and its edges, the change feed, deployments) are the same
    before and after, byte for byte as jsonb;
  - edges, node_sources, edge_sources and source_state (and their indexes) were not
    rewritten: same relfilenodes (0005 retypes their columns without a rewrite);
  - the domains refuse what the CHECKs refused, through the functions (400 naming
    the domain's constraint) and through plain INSERTs;
  - writes after the migration keep refs right, and a real cmdbd serves the migrated
    map (its start-up load, GET, a walk, the list).

Run: /usr/bin/python3 tests/e2e/test_migrate_0005.py (needs CMDB_TEST_ADMIN_URL).
"""

import glob
import json
import os
import re
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

BEFORE = 5  # apply the migrations below this version from their files

MANIFEST_A = {
    "manifest": "cmdb/v1", "source": "deploy:billing", "generation": 1,
    "nodes": [
        {"ref": "service/billing-api", "attributes": {"port": 8080}, "labels": {"tier": "1"}},
        {"ref": "database/pg-main:5432"},
        {"ref": "storage/bucket/a", "attributes": {"region": "eu"}},
        {"ref": "host/web-01"},
        {"ref": "system/billing"},
        {"ref": "team/payments", "attributes": {"email": "pay@example.com"}},
        {"ref": "service/legacy"},
    ],
    "edges": [
        {"from": "service/billing-api", "type": "depends_on", "to": "database/pg-main:5432"},
        {"from": "service/billing-api", "type": "runs_on", "to": "host/web-01"},
        {"from": "service/billing-api", "type": "connects_to", "to": "storage/bucket/a"},
        {"from": "service/billing-api", "type": "part_of", "to": "system/billing"},
        {"from": "service/billing-api", "type": "owned_by", "to": "team/payments"},
        {"from": "service/legacy", "type": "depends_on", "to": "database/pg-main:5432"},
    ],
}
# The next generation drops service/legacy: it becomes an orphan, its edge goes.
MANIFEST_A2 = dict(MANIFEST_A, generation=2,
                   nodes=[n for n in MANIFEST_A["nodes"] if n["ref"] != "service/legacy"],
                   edges=[e for e in MANIFEST_A["edges"] if e["from"] != "service/legacy"])
MANIFEST_B = {
    "manifest": "cmdb/v1", "source": "observed:tempo",
    "nodes": [{"ref": "service/checkout"}],
    "edges": [{"from": "service/checkout", "type": "depends_on", "to": "service/billing-api"}],
}
HAND = "api:Admin@corp"  # a hand edit's source: upper case and '@' (cmdb_asserter)


def sql_lit(s):
    return "'" + s.replace("'", "''") + "'"


def jlit(v):
    return sql_lit(json.dumps(v)) + "::jsonb"


class Migrate0005(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.admin = lib.admin_url()
        lib.require_binaries((lib.CMDBD_BIN, "CMDBD_BIN"))
        cls.srv = lib.Server("mig5")
        cls.db = cls.srv.db_url
        lib.psql(cls.admin, 'CREATE DATABASE "%s"' % cls.srv.dbname)
        files = sorted(glob.glob(os.path.join(lib.REPO, "migrations", "[0-9]" * 4 + "_*.sql")))
        old = [f for f in files if int(os.path.basename(f)[:4]) < BEFORE]
        if len(old) != BEFORE - 1 or not any(os.path.basename(f).startswith("0005_") for f in files):
            raise AssertionError("expected migrations 0001-0005, found %s" % files)
        for f in old:
            p = subprocess.run([lib.PSQL, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cls.db,
                                "-f", f], capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise AssertionError("%s: %s" % (f, p.stderr))
        # What `cmdbd migrate` records, so that it applies only what follows.
        rows = ",".join("(%d, %s)" % (int(os.path.basename(f)[:4]),
                                      sql_lit(os.path.basename(f)[5:-4])) for f in old)
        lib.psql(cls.db, "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                         " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
                         " INSERT INTO schema_migrations (version, name) VALUES " + rows)
        cls.fill()
        cls.before = cls.snapshot()
        cls.files_before = cls.filenodes()
        p = cls.srv.cmdbd("migrate")
        cls.migrate_out = p.stdout + p.stderr
        if p.returncode != 0:
            raise AssertionError("cmdbd migrate failed (%d): %s" % (p.returncode, cls.migrate_out))
        cls.after = cls.snapshot()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    # -- helpers

    @classmethod
    def q(cls, sql):
        out = lib.psql(cls.db, "SELECT to_json((" + sql + "))").strip()
        return json.loads(out) if out else None

    @classmethod
    def ok(cls, sql, status=(200, 201, 204)):
        r = cls.q(sql)
        if r is None or r.get("status") not in status:
            raise AssertionError("%s -> %s" % (sql, r))
        return r

    @classmethod
    def fill(cls):
        ok = cls.ok
        ok("SELECT cmdb_apply_manifest(%s, 'deployer', 'deployer', NULL, false)" % jlit(MANIFEST_A))
        ok("SELECT cmdb_apply_manifest(%s, 'tempo', 'tempo', NULL, false)" % jlit(MANIFEST_B))
        ok("SELECT cmdb_node_put('service', 'hand/made:1', %s, %s, NULL, 'Admin@corp', %s)"
           % (jlit({"a": 1}), jlit({"k": "v"}), sql_lit(HAND)))
        ok("SELECT cmdb_edge_put('service/hand/made:1', 'depends_on', 'service/billing-api', NULL,"
           " 'Admin@corp', %s)" % sql_lit(HAND))
        ok("SELECT cmdb_node_health('database', 'pg-main:5432', 'down', 'disk full', 'Admin@corp',"
           " %s)" % sql_lit(HAND))
        ok("SELECT cmdb_apply_manifest(%s, 'deployer', 'deployer', NULL, false)" % jlit(MANIFEST_A2))

    @classmethod
    def refs(cls):
        return cls.q("SELECT json_agg(kind || '/' || name ORDER BY (kind || '/' || name)"
                     " COLLATE \"C\") FROM nodes")

    @classmethod
    def snapshot(cls):
        """The replies of the read functions, keyed by the call."""
        calls = []
        cursor = None
        for _ in range(100):  # every page of two, following the cursors
            f = {"limit": 2}
            if cursor is not None:
                f["cursor"] = cursor
            call = "cmdb_node_list(%s)" % jlit(f)
            calls.append(call)
            cursor = cls.q(call)["body"]["next_cursor"]
            if cursor is None:
                break
        for f in ({}, {"q": "service/b"}, {"q": "bucket"}, {"health": "down"}, {"kind": "service"},
                  {"owner": "team/payments"}, {"orphan": True}, {"labels": {"tier": "1"}}):
            calls.append("cmdb_node_list(%s)" % jlit(f))
        for ref in cls.refs():
            kind, name = ref.split("/", 1)
            calls.append("cmdb_node_get(%s, %s)" % (sql_lit(kind), sql_lit(name)))
            calls.append("cmdb_node_edges(%s, %s, 'both', NULL)" % (sql_lit(kind), sql_lit(name)))
        calls.append("cmdb_node_edges('service', 'billing-api', 'out', 'runs_on')")
        calls.append("cmdb_changes(0, 1000)")
        calls.append("cmdb_deployments(NULL, 100, NULL)")
        return {c: cls.q("SELECT " + c) for c in calls}

    @classmethod
    def filenodes(cls):
        """relfilenode of the tables 0005 must not rewrite, and of their indexes."""
        return cls.q(
            "SELECT json_object_agg(c.relname, c.relfilenode) FROM pg_class c"
            " WHERE c.oid IN (SELECT unnest(ARRAY['edges', 'node_sources', 'edge_sources',"
            "                                     'source_state']::regclass[]))"
            "    OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = ANY (ARRAY["
            "       'edges', 'node_sources', 'edge_sources', 'source_state']::regclass[]))")

    # -- the tests

    def test_migrate_applied_0005_only(self):
        self.assertIn("event=migration_applied version=5 name=vocabulary", self.migrate_out)
        self.assertNotIn("version=4 ", self.migrate_out)

    def test_ref_column(self):
        rows = self.q("SELECT json_agg(json_build_array(kind, name, ref)) FROM nodes")
        self.assertGreaterEqual(len(rows), 9)
        for kind, name, ref in rows:
            self.assertEqual(ref, kind + "/" + name)
        self.assertIn(["storage", "bucket/a", "storage/bucket/a"], rows)
        # Byte order: the column's collation is "C".
        self.assertEqual(self.q("SELECT json_agg(ref ORDER BY ref) FROM nodes"), self.refs())

    def test_reads_unchanged(self):
        self.assertEqual(set(self.before), set(self.after))
        pages = [c for c in self.before if '"limit": 2' in c]
        self.assertGreaterEqual(len(pages), 4, "the list must span several pages")
        for call, reply in self.before.items():
            self.assertEqual(reply.get("status"), 200, call)
            self.assertEqual(self.after[call], reply, call)

    def test_no_rewrite_of_edges_and_sources(self):
        self.assertEqual(len(self.files_before), 4 + 9, self.files_before)  # 4 tables, 9 indexes
        self.assertEqual(self.filenodes(), self.files_before)

    def test_domains(self):
        cols = self.q("SELECT json_object_agg(table_name || '.' || column_name, domain_name)"
                      " FROM information_schema.columns WHERE domain_name LIKE 'cmdb_%'")
        self.assertEqual(cols, {"nodes.health": "cmdb_health", "edges.type": "cmdb_edge_type",
                                "node_sources.source": "cmdb_asserter",
                                "edge_sources.source": "cmdb_asserter",
                                "source_state.source": "cmdb_source"})
        # The per-column CHECKs they replace are gone; the rules live in the domains.
        left = self.q("SELECT json_agg(conname) FROM pg_constraint WHERE conname IN"
                      " ('nodes_health_check', 'edges_type_check', 'node_sources_source_check',"
                      "  'edge_sources_source_check', 'source_state_source_check')")
        self.assertIsNone(left)

    def test_functions_refuse_what_the_domains_refuse(self):
        # The constraint's name rides in error.log (0006, the error policy): cmdbd logs it
        # with the request id and never sends it.
        r = self.q("SELECT cmdb_node_health('database', 'pg-main:5432', 'purple', NULL, 'x', %s)"
                   % sql_lit(HAND))
        self.assertEqual(r["status"], 400, r)
        self.assertEqual(r["error"]["log"], "violates cmdb_health_check")
        r = self.q("SELECT cmdb_edge_put('service/checkout', 'uses', 'team/payments', NULL, 'x', %s)"
                   % sql_lit(HAND))
        self.assertEqual(r["status"], 400, r)
        self.assertEqual(r["error"]["log"], "violates cmdb_edge_type_check")
        r = self.q("SELECT cmdb_node_put('service', 'x', NULL, NULL, NULL, 'x', 'Bad Source')")
        self.assertEqual(r["status"], 400, r)
        self.assertEqual(r["error"]["log"], "violates cmdb_asserter_check")
        # Nothing of those was written.
        self.assertEqual(self.q("SELECT count(*) FROM nodes WHERE kind = 'service' AND name = 'x'"), 0)
        self.assertEqual(self.q("SELECT health FROM nodes WHERE ref = 'database/pg-main:5432'"), "down")

    def test_inserts_refused(self):
        nid = self.q("SELECT to_json(id) FROM nodes WHERE ref = 'service/checkout'")
        eid = self.q("SELECT min(id) FROM edges")
        for sql, constraint in (
                ("UPDATE nodes SET health = 'fine' WHERE ref = 'service/checkout'", "cmdb_health_check"),
                ("UPDATE edges SET type = 'uses' WHERE id = %d" % eid, "cmdb_edge_type_check"),
                ("INSERT INTO node_sources (node_id, source) VALUES ('%s', 'api:a b')" % nid,
                 "cmdb_asserter_check"),
                ("INSERT INTO edge_sources (edge_id, source) VALUES (%d, '%s')" % (eid, "s" * 129),
                 "cmdb_asserter_check"),
                ("INSERT INTO source_state (source, manifest_hash, last_report)"
                 " VALUES ('api:x', 'h', '{}')", "source_state_not_api"),
                ("INSERT INTO source_state (source, manifest_hash, last_report)"
                 " VALUES ('Upper', 'h', '{}')", "cmdb_source_check"),
                ("UPDATE nodes SET ref = 'a/b' WHERE ref = 'service/checkout'", "ref")):
            with self.assertRaises(RuntimeError, msg=sql) as cm:
                lib.psql(self.db, sql)
            self.assertIn(constraint, str(cm.exception), sql)
        # The longest manifest source and an 'api:' hand-edit source still pass.
        self.assertEqual(self.q("SELECT %s::cmdb_source" % sql_lit("s" * 128)), "s" * 128)
        self.assertEqual(self.q("SELECT 'api:A.b@c-d'::cmdb_asserter"), "api:A.b@c-d")

    def test_writes_after_migration_then_a_server(self):
        self.ok("SELECT cmdb_node_put('queue', 'jobs/high', NULL, NULL, NULL, 'Admin@corp', %s)"
                % sql_lit(HAND))
        m = {"manifest": "cmdb/v1", "source": "deploy:jobs", "nodes": [{"ref": "service/worker"}],
             "edges": [{"from": "service/worker", "type": "depends_on", "to": "queue/jobs/high"},
                       {"from": "service/worker", "type": "part_of", "to": "system/billing"}]}
        r = self.ok("SELECT cmdb_apply_manifest(%s, 'jobs', 'jobs', NULL, false)" % jlit(m))
        self.assertEqual(r["body"]["nodes"]["created"], 1, r)
        self.assertEqual(self.q("SELECT ref FROM nodes WHERE kind = 'queue'"), "queue/jobs/high")
        # Edge endpoints are found by ref (cmdb_edge_endpoints): a missing one is named.
        r = self.q("SELECT cmdb_edge_put('service/worker', 'runs_on', 'host/nope', NULL, 'x', %s)"
                   % sql_lit(HAND))
        self.assertEqual(r["status"], 422, r)
        self.assertIn("host/nope", json.dumps(r))
        listed = []
        cursor = None
        while True:
            f = {"limit": 3}
            if cursor:
                f["cursor"] = cursor
            body = self.q("SELECT cmdb_node_list(%s)" % jlit(f))["body"]
            listed += [n["ref"] for n in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(listed, self.refs())

        # A real server on the migrated database: its start-up load reads the new
        # schema, and it answers as the functions do.
        srv = self.srv
        srv.create_token("admin", "admin")
        srv._spawn(lib.free_port())
        st, _, body = srv.get("/readyz", token=None)
        self.assertEqual(st, 200, body)
        st, _, body = srv.get("/v1/nodes?limit=1000")
        self.assertEqual(st, 200, body)
        self.assertEqual([n["ref"] for n in body["items"]], listed)
        for ref in ("database/pg-main:5432", "storage/bucket/a", "service/hand/made:1"):
            st, _, got = srv.get(lib.node_path(ref))
            self.assertEqual(st, 200, got)
            self.assertIsInstance(got.pop("owners"), list)  # the server adds them
            kind, name = ref.split("/", 1)
            want = self.q("SELECT cmdb_node_get(%s, %s)" % (sql_lit(kind), sql_lit(name)))["body"]
            self.assertEqual(got, want, ref)
        st, _, body = srv.get("/v1/nodes/database/pg-main%3A5432/dependents")
        self.assertEqual(st, 200, body)
        self.assertEqual(sorted(n["ref"] for n in body["nodes"]),
                         ["service/billing-api", "service/checkout", "service/hand/made:1",
                          "system/billing"])
        st, _, body = srv.get("/v1/nodes?health=down")
        self.assertEqual([n["ref"] for n in body["items"]], ["database/pg-main:5432"])


if __name__ == "__main__":
    unittest.main()
