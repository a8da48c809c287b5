#!/usr/bin/python3
"""The CLI's manifest and feed commands (SPEC §4): `cmdb push FILE|- [--dry-run]`,
`cmdb changes [--since N] [--follow]`, `--json`, and the exit codes (0 ok, 1 not found,
2 usage or a 400, 3 auth, 4 server or network error).

Run: /usr/bin/python3 tests/e2e/test_cli_feed.py
"""

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import CMDB_BIN, ServerTestCase, node_path, require_binaries  # noqa: E402


def manifest(source, gen, refs, edges=()):
    return {"manifest": "cmdb/v1", "source": source, "generation": gen,
            "nodes": [{"ref": r, "attributes": {"gen": gen}} for r in refs],
            "edges": [{"from": f, "type": t, "to": to} for f, t, to in edges]}


def counts_in(text, word):
    """Every number printed next to word ('3 created' or 'created: 3')."""
    return [int(x) for x in re.findall(r"(\d+)\s+%s\b" % word, text)] + \
           [int(x) for x in re.findall(r"\b%s:?\s+(\d+)" % word, text)]


class CliFeed(ServerTestCase):
    server_name = "clifeed"

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cmdb-clifeed-")
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def write(self, name, obj):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(obj if isinstance(obj, str) else json.dumps(obj))
        return path

    def run_cli(self, *args, code=0, **kw):
        p = self.srv.cmdb(*args, **kw)
        self.assertEqual(p.returncode, code, "cmdb %s → exit %d, expected %d\nstdout: %s\nstderr: %s"
                         % (" ".join(map(str, args)), p.returncode, code, p.stdout, p.stderr))
        return p

    def max_seq(self):
        since = 0
        while True:
            st, _, body = self.srv.get("/v1/changes?since=%d&limit=1000" % since)
            self.assertEqual(st, 200)
            if not body["changes"]:
                return since
            since = body["next"]

    # -- push

    def test_push_file_and_stdin(self):
        m1 = manifest("ci:cf-push", 1, ["service/cf-a", "host/cf-h"],
                      [("service/cf-a", "runs_on", "host/cf-h"),
                       ("service/cf-a", "depends_on", "database/cf-db")])
        p = self.run_cli("push", self.write("m1.json", m1))
        out = p.stdout
        self.assertIn(3, counts_in(out, "created"), "3 nodes created:\n" + out)
        self.assertIn(2, counts_in(out, "created"), "2 edges created:\n" + out)
        self.assertNotIn("dry run", out.lower())
        st, _, n = self.srv.get(node_path("database/cf-db"))
        self.assertEqual(st, 200, "pushed for real")
        self.assertEqual(n["sources"], ["ci:cf-push"])
        # From stdin: drop an edge, orphan database/cf-db.
        m2 = manifest("ci:cf-push", 2, ["service/cf-a", "host/cf-h"],
                      [("service/cf-a", "runs_on", "host/cf-h")])
        p = self.run_cli("push", "-", input=json.dumps(m2))
        self.assertIn(1, counts_in(p.stdout, "removed"), p.stdout)
        self.assertIn("database/cf-db", p.stdout, "the orphaned ref is printed")
        self.assertTrue(self.srv.get(node_path("database/cf-db"))[2]["orphan"])

    def test_push_dry_run(self):
        self.run_cli("push", self.write("base.json", manifest(
            "ci:cf-dry", 1, ["service/cf-dry"], [("service/cf-dry", "depends_on", "service/cf-dry-old")])))
        m = manifest("ci:cf-dry", 2, ["service/cf-dry", "service/cf-dry-n1", "service/cf-dry-n2"],
                     [("service/cf-dry", "depends_on", "service/cf-dry-n1")])
        path = self.write("next.json", m)
        seq = self.max_seq()
        plan = self.srv.post("/v1/manifests?dry_run=true", m)[2]
        self.assertEqual(plan["nodes"], {"created": 2, "updated": 1, "unchanged": 0}, plan)
        p = self.run_cli("push", path, "--dry-run")
        out = p.stdout
        self.assertIn("dry run", out.lower(), "the output says it was a dry run:\n" + out)
        self.assertIn(2, counts_in(out, "created"), out)
        self.assertIn(1, counts_in(out, "updated"), out)
        self.assertIn(1, counts_in(out, "removed"), out)
        self.assertIn("service/cf-dry-old", out, "the would-be orphan is named")
        self.assertEqual(self.max_seq(), seq, "nothing written")
        self.assertEqual(self.srv.get(node_path("service/cf-dry-n1"))[0], 404)
        # --json anywhere: the server's report.
        for args in (("push", path, "--dry-run", "--json"), ("--json", "push", "--dry-run", path)):
            with self.subTest(args=args):
                got = json.loads(self.run_cli(*args).stdout)
                self.assertEqual({k: got[k] for k in ("nodes", "edges", "orphaned")},
                                 {k: plan[k] for k in ("nodes", "edges", "orphaned")})
        self.assertEqual(self.max_seq(), seq, "nothing written")
        got = json.loads(self.run_cli("push", "-", "--json", input=json.dumps(m)).stdout)
        self.assertEqual({k: got[k] for k in ("nodes", "edges", "orphaned")},
                         {k: plan[k] for k in ("nodes", "edges", "orphaned")})
        self.assertRegex(got["deployment_id"], r"^[0-9a-f-]{36}$")
        self.assertEqual(got["seq"], self.max_seq())

    def test_push_errors_and_exit_codes(self):
        bad = {"manifest": "cmdb/v1", "source": "ci:cf-bad",
               "nodes": [{"ref": "service/ok"}, {"ref": "no-slash"}]}
        p = self.run_cli("push", self.write("bad.json", bad), code=2)
        self.assertIn("nodes[1].ref", p.stderr, "the JSON path reaches the user")
        p = self.run_cli("push", "--json", self.write("bad.json", bad), code=2)
        self.assertEqual(json.loads(p.stdout)["error"]["status"], 400)
        p = self.run_cli("push", "-", input='{"manifest": "cmdb/v1", "source": ', code=2)
        p = self.run_cli("push", "-", input=json.dumps(dict(bad, manifest="cmdb/v9")), code=2)
        self.assertIn("cmdb/v1", p.stderr)
        # Missing file: a local error, not a success (the SPEC does not pin the code).
        p = self.srv.cmdb("push", os.path.join(self.tmp, "nope.json"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("nope.json", p.stderr)
        self.run_cli("push", code=2, input="")      # no FILE
        # Auth: no token, a wrong token, a read token, a token whose glob does not match.
        good = self.write("good.json", manifest("ci:cf-auth", 1, ["service/cf-auth"]))
        self.run_cli("push", good, token=None, code=3)
        self.run_cli("push", good, token="not-a-real-token", code=3)
        self.run_cli("push", good, token="read", code=3)
        self.srv.create_token("cf-cap", "write", source_glob="capistrano:*")
        p = self.run_cli("push", good, token="cf-cap", code=3)
        self.assertIn("403", p.stderr)
        self.assertEqual(self.srv.get(node_path("service/cf-auth"))[0], 404)
        # A stale generation is refused (409): not a success, and the reason is shown.
        self.run_cli("push", good)
        p = self.srv.cmdb("push", self.write("stale.json", manifest("ci:cf-auth", 0, ["service/x"])))
        self.assertNotIn(p.returncode, (0, 1, 2, 3), "a 409 is neither ok, not found, usage nor auth")
        self.assertIn("generation", p.stderr)
        # The server is down: 4.
        p = self.srv.cmdb("push", good, env={"CMDB_URL": "http://127.0.0.1:1"})
        self.assertEqual(p.returncode, 4, p.stderr)

    # -- changes

    def test_changes_since(self):
        since = self.max_seq()
        for k in range(3):
            self.assertStatus(self.srv.put_node("service/cf-ch-%d" % k, {"k": k}), 201)
        self.assertStatus(self.srv.put_edge("service/cf-ch-0", "depends_on", "service/cf-ch-1"), 201)
        p = self.run_cli("changes", "--since", since)
        lines = [l for l in p.stdout.splitlines() if l.strip()]
        self.assertEqual(len(lines), 4, "one line per change:\n" + p.stdout)
        for k, line in enumerate(lines):
            self.assertTrue(line.split()[0] == str(since + 1 + k), "starts with its seq: %r" % line)
        self.assertIn("node.created", lines[0])
        self.assertIn("service/cf-ch-0", lines[0])
        self.assertIn("edge.created", lines[3])
        self.assertIn("service/cf-ch-0 depends_on service/cf-ch-1", lines[3])
        got = json.loads(self.run_cli("--json", "changes", "--since", since).stdout)
        self.assertEqual([c["seq"] for c in got["changes"]], list(range(since + 1, since + 5)))
        self.assertEqual(got["next"], since + 4)
        # Nothing newer: no lines, exit 0.
        p = self.run_cli("changes", "--since", since + 4)
        self.assertEqual(p.stdout.strip(), "")
        self.run_cli("changes", "--since", "-1", code=2)
        self.run_cli("changes", "--since", "abc", code=2)
        self.run_cli("changes", "--since", since, token=None, code=3)

    def follow(self, *extra):
        """Start `cmdb changes --follow`; returns (proc, queue of stdout lines)."""
        require_binaries((CMDB_BIN, "CMDB_BIN"))
        env = dict(os.environ, CMDB_URL=self.srv.url, CMDB_TOKEN=self.srv.token("read"))
        proc = subprocess.Popen([CMDB_BIN, "changes", "--follow"] + [str(x) for x in extra],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1)
        q = queue.Queue()

        def pump():
            with proc.stdout:          # closed here, at EOF (the process ended)
                for line in proc.stdout:
                    q.put(line)
            q.put(None)

        threading.Thread(target=pump, daemon=True).start()
        self.addCleanup(self.stop_proc, proc)
        return proc, q

    def stop_proc(self, proc):
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        proc.stderr.close()

    def lines_until(self, q, pred, timeout):
        got = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = q.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            got.append(line.rstrip("\n"))
            if pred(got[-1]):
                return got
        self.fail("no matching line within %.0f s; got %r" % (timeout, got))

    def test_changes_follow(self):
        self.assertStatus(self.srv.put_node("service/cf-fol-before", {}), 201)
        since = self.max_seq() - 1
        proc, q = self.follow("--since", since)
        first = self.lines_until(q, lambda l: "service/cf-fol-before" in l, 10)
        self.assertEqual(len(first), 1, "only what is newer than --since: %r" % first)
        time.sleep(1.0)
        self.assertIsNone(proc.poll(), "--follow keeps running")
        t = time.monotonic()
        self.assertStatus(self.srv.put_node("service/cf-fol-after", {"x": 1}), 201)
        got = self.lines_until(q, lambda l: "service/cf-fol-after" in l, 10)
        self.assertLess(time.monotonic() - t, 5.0, "the change shows up promptly (long poll)")
        self.assertEqual(len(got), 1, got)
        self.assertTrue(got[0].split()[0] == str(since + 2), got)
        self.assertIn("node.created", got[0])
        # A second change after that one, through a manifest.
        self.assertStatus(self.srv.post("/v1/manifests", manifest("ci:cf-fol", 1, [],
                                        [("service/cf-fol-after", "depends_on", "service/cf-fol-before")])), 200)
        got = self.lines_until(q, lambda l: "edge.created" in l, 10)
        self.assertIn("service/cf-fol-after depends_on service/cf-fol-before", got[-1])
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            self.fail("cmdb changes --follow did not stop on SIGINT")

    def test_changes_follow_json_lines(self):
        since = self.max_seq()
        proc, q = self.follow("--since", since, "--json")
        time.sleep(0.5)
        self.assertStatus(self.srv.put_node("service/cf-jl", {"a": 1}), 201)
        self.assertStatus(self.srv.put(node_path("service/cf-jl") + "/health", {"state": "down"}), 200)
        got = self.lines_until(q, lambda l: '"node.updated"' in l, 10)
        objs = [json.loads(l) for l in got]
        self.assertEqual([c["seq"] for c in objs], [since + 1, since + 2])
        self.assertEqual(objs[0]["after"]["attributes"], {"a": 1})
        self.assertEqual(objs[1]["after"]["health"], "down")
        proc.terminate()
        proc.wait(5)


if __name__ == "__main__":
    unittest.main()
