#!/usr/bin/python3
"""Black-box tests of the cmdb CLI (SPEC §4): commands, --json anywhere, exit codes
(0 ok, 1 not found, 2 usage, 3 auth, 4 server or network error)."""

import json
import os
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, free_port, node_path  # noqa: E402


class Cli(ServerTestCase):
    server_name = "cli"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        s = cls.srv
        for ref, labels in (("service/cli-web", {"env": "prod"}),
                            ("service/cli-api", {"env": "dev"}),
                            ("host/cli-h1", {"env": "prod"}),
                            ("database/cli-db:5432", {}),
                            ("team/cli-team", {})):
            st = s.put_node(ref, {"note": "from e2e"}, labels)[0]
            assert st == 201, (ref, st)
        for f, t, to in (("service/cli-web", "runs_on", "host/cli-h1"),
                         ("service/cli-web", "depends_on", "service/cli-api"),
                         ("service/cli-api", "depends_on", "database/cli-db:5432"),
                         ("service/cli-web", "owned_by", "team/cli-team")):
            st = s.put_edge(f, t, to)[0]
            assert st == 201, (f, t, to, st)

    def run_ok(self, *args, **kw):
        p = self.srv.cmdb(*args, **kw)
        self.assertEqual(p.returncode, 0, "cmdb %s → %d\nstdout: %s\nstderr: %s"
                         % (" ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
        return p

    def run_json(self, *args, **kw):
        p = self.run_ok(*args, **kw)
        try:
            return json.loads(p.stdout)
        except ValueError:
            self.fail("cmdb %s: stdout is not JSON: %r" % (" ".join(args), p.stdout[:500]))

    def assertExit(self, code, *args, **kw):
        p = self.srv.cmdb(*args, **kw)
        self.assertEqual(p.returncode, code, "cmdb %s → exit %d, expected %d\nstdout: %s\n"
                         "stderr: %s" % (" ".join(map(str, args)), p.returncode, code,
                                         p.stdout, p.stderr))
        return p

    # -- get

    def test_get(self):
        p = self.run_ok("get", "service/cli-web")
        self.assertIn("service/cli-web", p.stdout)
        p = self.run_ok("get", "database/cli-db:5432")
        self.assertIn("database/cli-db:5432", p.stdout)

    def test_get_json_anywhere(self):
        for args in (("get", "service/cli-web", "--json"), ("--json", "get", "service/cli-web"),
                     ("get", "--json", "service/cli-web")):
            with self.subTest(args=args):
                node = self.run_json(*args)
                self.assertEqual(node["ref"], "service/cli-web")
                self.assertEqual(node["labels"], {"env": "prod"})
                self.assertEqual(node["edges"], {"in": 0, "out": 3})

    def test_get_not_found_exit_1(self):
        p = self.assertExit(1, "get", "service/cli-nope")
        self.assertIn("service/cli-nope", p.stderr + p.stdout)
        self.assertExit(1, "get", "service/cli-nope", "--json")

    # -- ls

    def ls_refs(self, *args):
        body = self.run_json("ls", *args, "--json")
        self.assertIn("items", body)
        return [n["ref"] for n in body["items"]]

    def test_ls_kind(self):
        self.assertEqual(self.ls_refs("--kind", "service"), ["service/cli-api", "service/cli-web"])
        p = self.run_ok("ls", "--kind", "service")
        self.assertIn("service/cli-api", p.stdout)
        self.assertIn("service/cli-web", p.stdout)
        self.assertNotIn("host/cli-h1", p.stdout)

    def test_ls_label(self):
        self.assertEqual(self.ls_refs("--label", "env=prod"), ["host/cli-h1", "service/cli-web"])
        self.assertEqual(self.ls_refs("--kind", "host", "--label", "env=prod"), ["host/cli-h1"])
        p = self.run_ok("ls", "--label", "env=dev")
        self.assertIn("service/cli-api", p.stdout)
        self.assertNotIn("service/cli-web", p.stdout)

    def test_ls_owner(self):
        self.assertEqual(self.ls_refs("--owner", "team/cli-team"), ["service/cli-web"])
        p = self.run_ok("--json", "ls", "--owner", "team/cli-team")
        self.assertEqual([n["ref"] for n in json.loads(p.stdout)["items"]], ["service/cli-web"])

    def test_ls_all(self):
        refs = self.ls_refs()
        for ref in ("service/cli-web", "host/cli-h1", "database/cli-db:5432", "team/cli-team"):
            self.assertIn(ref, refs)

    # -- other commands, lightly (the graph semantics are tested elsewhere)

    def test_owners(self):
        p = self.run_ok("owners", "service/cli-web")
        self.assertIn("team/cli-team", p.stdout)
        body = self.run_json("owners", "service/cli-web", "--json")
        self.assertEqual([o["ref"] for o in body["owners"]], ["team/cli-team"])

    def test_dependencies_and_dependents(self):
        body = self.run_json("dependencies", "service/cli-web", "--json")
        refs = [n["ref"] for n in body["nodes"]]
        self.assertIn("service/cli-api", refs)
        self.assertIn("database/cli-db:5432", refs)
        body = self.run_json("--json", "dependents", "database/cli-db:5432", "--depth", "1")
        self.assertEqual([n["ref"] for n in body["nodes"]], ["service/cli-api"])

    def test_health(self):
        self.assertStatus(self.srv.put_node("probe/cli-hl"), 201)
        self.run_ok("health", "probe/cli-hl", "down", "--reason", "disk full")
        node = self.srv.get(node_path("probe/cli-hl"))[2]
        self.assertEqual((node["health"], node["health_reason"]), ("down", "disk full"))
        self.assertExit(2, "health", "probe/cli-hl", "broken")
        self.assertExit(1, "health", "service/cli-nope", "ok")

    def test_push_file_and_stdin(self):
        m = {"manifest": "cmdb/v1", "source": "e2e:cli-push",
             "nodes": [{"ref": "job/cli-pushed"}],
             "edges": [{"from": "job/cli-pushed", "type": "depends_on",
                        "to": "service/cli-api"}]}
        body = self.run_json("push", "-", "--dry-run", "--json", input=json.dumps(m))
        self.assertEqual(body["nodes"]["created"], 1)
        self.assertEqual(self.srv.get(node_path("job/cli-pushed"))[0], 404, "dry run")
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump(m, f)
        try:
            self.run_ok("push", f.name)
        finally:
            os.unlink(f.name)
        self.assertEqual(self.srv.get(node_path("job/cli-pushed"))[0], 200)
        p = self.srv.cmdb("push", "/nonexistent/manifest.json")
        self.assertIn(p.returncode, (1, 2), "a missing manifest file: %d %s"
                      % (p.returncode, p.stderr))

    def test_changes(self):
        body = self.run_json("changes", "--since", "0", "--json")
        self.assertIn("changes", body)
        self.assertTrue(any(c["ref"] == "service/cli-web" for c in body["changes"]))

    # -- exit codes

    def test_usage_exit_2(self):
        for args in ((), ("bogus-command",), ("get",), ("get", "a", "b"),
                     ("ls", "--kind"), ("ls", "--no-such-flag"), ("dependents", "service/x",
                                                                  "--depth", "abc"),
                     ("health", "service/cli-web"), ("path", "service/cli-web")):
            with self.subTest(args=args):
                p = self.assertExit(2, *args)
                self.assertTrue(p.stderr.strip(), "a usage error says something on stderr")

    def test_auth_exit_3(self):
        self.assertExit(3, "get", "service/cli-web", token="not-a-token")
        self.assertExit(3, "get", "service/cli-web", token=None)
        self.assertExit(3, "health", "service/cli-web", "ok", token="read")

    def test_network_error_exit_4(self):
        url = "http://127.0.0.1:%d" % free_port()
        self.assertExit(4, "get", "service/cli-web", env={"CMDB_URL": url})
        self.assertExit(4, "ls", "--json", env={"CMDB_URL": url})


if __name__ == "__main__":
    unittest.main()
