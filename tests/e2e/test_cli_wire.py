#!/usr/bin/python3
"""Black-box tests of the cmdb CLI against a canned HTTP server.

Usage: /usr/bin/python3 tests/e2e/test_cli_wire.py [path/to/cmdb]
(default: build/cmdb, or $CMDB_BIN). Standard library only.

The fake server answers from a route table that each test fills in and
records every request, so the tests check what goes on the wire (request
line, headers, percent-encoding, bodies) as well as the output and exit
code of the CLI.
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CMDB = os.environ.get("CMDB_BIN") or "build/cmdb"
# e.g. CMDB_TEST_WRAPPER="valgrind -q --leak-check=full --errors-for-leak-kinds=all --error-exitcode=99"
WRAPPER = os.environ.get("CMDB_TEST_WRAPPER", "").split()


class Fake:
    routes = {}      # (method, raw path) -> callable(handler) or dict
    requests = []    # recorded: dict(method, path, headers, body)


def reply(status=200, body=None, headers=None, chunked=False, raw=None, delay=0):
    return dict(status=status, body=body, headers=headers or {}, chunked=chunked,
                raw=raw, delay=delay)


def err(status, code, message, details=None):
    return reply(status, {"error": {"status": status, "code": code, "message": message,
                                    "request_id": "req-%d" % status, "details": details}})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        Fake.requests.append(dict(method=self.command, path=self.path,
                                  headers={k.lower(): v for k, v in self.headers.items()},
                                  body=body))
        r = Fake.routes.get((self.command, self.path))
        if r is None:
            r = Fake.routes.get((self.command, self.path.split("?")[0]))
        if r is None:
            r = err(404, "not_found", "no route %s %s" % (self.command, self.path))
        if callable(r):
            r = r(self)
        if r["delay"]:
            time.sleep(r["delay"])
        if r["raw"] is not None:            # hand-written bytes, for odd replies
            self.wfile.write(r["raw"])
            self.close_connection = True
            return
        data = r["body"]
        if data is None:
            data = b""
        elif not isinstance(data, (bytes, str)):
            data = json.dumps(data).encode()
        elif isinstance(data, str):
            data = data.encode()
        self.send_response(r["status"])
        self.send_header("X-Request-Id", "hdr-req-id")
        for k, v in r["headers"].items():
            self.send_header(k, v)
        if r["chunked"]:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), 7):       # many small chunks
                piece = data[i:i + 7]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        else:
            if r["status"] not in (204, 304):
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def handle_safely(self):
        try:
            self.handle_any()
        except (BrokenPipeError, ConnectionResetError):
            pass                # the client gave up first (timeout tests)

    do_GET = do_POST = do_PUT = do_DELETE = handle_safely


NODE = {"id": "0b5e", "ref": "database/pg-main:5432", "kind": "database",
        "name": "pg-main:5432", "attributes": {"port": 5432, "engine": "postgres"},
        "labels": {"tier": "1", "env": "prod"}, "health": "down",
        "health_reason": "disk full", "health_at": "2026-11-21T10:00:00Z",
        "orphan": False, "sources": ["capistrano:billing-api"], "version": 7,
        "created_at": "2026-11-20T10:00:00Z", "updated_at": "2026-11-21T10:00:00Z",
        "last_seen_at": "2026-11-21T10:00:00Z",
        "owners": [{"ref": "team/dba", "attributes": {"email": "dba@example.com",
                                                      "oncall": "https://pager/dba"},
                    "rule": "direct", "via": ["database/pg-main:5432", "team/dba"]}],
        "edges": {"in": 3, "out": 1}}


class CliBase(unittest.TestCase):
    """Runs the cmdb binary against cls.port with a minimal environment."""
    port = None

    def setUp(self):
        Fake.routes = {}
        Fake.requests = []

    def run_cli(self, *args, env=None, stdin=None, cwd=None, timeout=20):
        e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
             "CMDB_URL": "http://127.0.0.1:%d" % self.port, "CMDB_TOKEN": "tok-123"}
        e.update(env or {})
        e = {k: v for k, v in e.items() if v is not None}
        p = subprocess.run(WRAPPER + [os.path.abspath(CMDB)] + list(args), env=e, input=stdin,
                           capture_output=True, cwd=cwd or self.tmp.name, timeout=timeout)
        return p.returncode, p.stdout.decode(), p.stderr.decode()


class CliTest(CliBase):
    @classmethod
    def setUpClass(cls):
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        cls.port = cls.server.server_address[1]
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.tmp = tempfile.TemporaryDirectory()

    @classmethod
    def tearDownClass(cls):
        cls.server.shutdown()
        cls.server.server_close()
        cls.tmp.cleanup()

    # ------------------------------------------------------------ wire format

    def test_get_encodes_name_and_sends_headers(self):
        Fake.routes[("GET", "/v1/nodes/database/pg-main%3A5432")] = reply(200, NODE)
        rc, out, errs = self.run_cli("get", "database/pg-main:5432")
        self.assertEqual(rc, 0, errs)
        req = Fake.requests[0]
        self.assertEqual(req["headers"]["authorization"], "Bearer tok-123")
        self.assertEqual(req["headers"]["accept"], "application/json")
        self.assertIn("ref:        database/pg-main:5432", out)
        self.assertIn("health:     down (disk full; since 2026-11-21T10:00:00Z)", out)
        self.assertIn("labels:     env=prod,tier=1", out)
        self.assertIn("  port: 5432", out)
        self.assertIn("edges:      3 in, 1 out", out)
        self.assertIn("owners:     team/dba (direct) email=dba@example.com oncall=https://pager/dba", out)

    def test_slash_and_unicode_in_name(self):
        Fake.routes[("GET", "/v1/nodes/storage/a%2Fb%20c%C3%A9~_.-")] = reply(200, NODE)
        rc, _, errs = self.run_cli("get", "storage/a/b cé~_.-")
        self.assertEqual(rc, 0, errs)

    def test_json_flag_anywhere_prints_body(self):
        Fake.routes[("GET", "/v1/nodes/database/pg-main%3A5432")] = reply(200, NODE)
        for argv in (["--json", "get", "database/pg-main:5432"],
                     ["get", "--json", "database/pg-main:5432"],
                     ["get", "database/pg-main:5432", "--json"]):
            rc, out, errs = self.run_cli(*argv)
            self.assertEqual(rc, 0, errs)
            self.assertEqual(json.loads(out), NODE)

    def test_ls_query_and_pagination(self):
        page1 = {"items": [{"ref": "service/a", "kind": "service", "health": "ok",
                            "labels": {"team": "x"}}], "next_cursor": "c/1"}
        page2 = {"items": [{"ref": "service/bb", "kind": "service", "health": "down",
                            "labels": {}}], "next_cursor": None}
        Fake.routes[("GET", "/v1/nodes?kind=service&label=team%3Ax&owner=team%2Fpay&orphan=true&limit=1")] = reply(200, page1)
        Fake.routes[("GET", "/v1/nodes?kind=service&label=team%3Ax&owner=team%2Fpay&orphan=true&limit=1&cursor=c%2F1")] = reply(200, page2)
        args = ["ls", "--kind", "service", "--label", "team=x", "--owner=team/pay", "--orphan", "--limit", "1"]
        rc, out, errs = self.run_cli(*args)
        self.assertEqual(rc, 0, errs)
        self.assertEqual(out, "REF        KIND     HEALTH  LABELS\nservice/a  service  ok      team=x\n")
        self.assertIn("--cursor c/1", errs)
        rc, out, errs = self.run_cli(*args, "--all")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(out.splitlines()[2], "service/bb  service  down")
        rc, out, errs = self.run_cli(*args, "--all", "--json")
        self.assertEqual(json.loads(out), {"items": page1["items"] + page2["items"], "next_cursor": None})

    def test_put_body_and_if_match(self):
        Fake.routes[("PUT", "/v1/nodes/service/x")] = reply(201, dict(NODE, version=1))
        rc, out, errs = self.run_cli("put", "service/x", "--attr", "repo=git@x", "--attr", "port:=5432",
                                     "--label", "tier=1", "--if-match", "3")
        self.assertEqual(rc, 0, errs)
        req = Fake.requests[0]
        self.assertEqual(json.loads(req["body"]), {"attributes": {"repo": "git@x", "port": 5432},
                                                   "labels": {"tier": "1"}})
        self.assertEqual(req["headers"]["content-type"], "application/json")
        self.assertEqual(req["headers"]["if-match"], '"3"')
        self.assertEqual(out, "created service/x (version 1)\n")

    def test_health(self):
        Fake.routes[("PUT", "/v1/nodes/service/x/health")] = reply(200, NODE)
        rc, out, errs = self.run_cli("health", "service/x", "down", "--reason", "502s")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(json.loads(Fake.requests[0]["body"]), {"state": "down", "reason": "502s"})

    def test_rm_link_unlink_edges(self):
        Fake.routes[("DELETE", "/v1/nodes/service/x")] = reply(204)
        self.assertEqual(self.run_cli("rm", "service/x")[:2], (0, "deleted service/x\n"))
        Fake.routes[("PUT", "/v1/edges")] = reply(200, {})
        rc, out, _ = self.run_cli("link", "service/a", "depends_on", "database/b", "--attr", "port:=5432")
        self.assertEqual((rc, out), (0, "updated service/a --depends_on--> database/b\n"))
        self.assertEqual(json.loads(Fake.requests[-1]["body"]),
                         {"from": "service/a", "type": "depends_on", "to": "database/b",
                          "attributes": {"port": 5432}})
        Fake.routes[("DELETE", "/v1/edges?from=service%2Fa&type=depends_on&to=database%2Fb")] = reply(204)
        self.assertEqual(self.run_cli("unlink", "service/a", "depends_on", "database/b")[0], 0)
        Fake.routes[("GET", "/v1/nodes/service/a/edges?direction=out")] = reply(200, {"edges": [
            {"from": "service/a", "type": "runs_on", "to": "host/h", "sources": ["s1", "s2"],
             "attributes": {}}]})
        rc, out, errs = self.run_cli("edges", "service/a", "--direction", "out")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(out.splitlines()[1], "service/a  runs_on  host/h  s1,s2")

    # ---------------------------------------------------------------- graph

    def test_dependents_table_and_truncation(self):
        Fake.routes[("GET", "/v1/nodes/database/pg/dependents?depth=2&limit=1&types=depends_on%2Cruns_on")] = reply(200, {
            "root": "database/pg", "count": 5, "truncated": True,
            "nodes": [{"ref": "service/a", "depth": 1,
                       "via": {"from": "service/a", "type": "depends_on", "to": "database/pg"}}]})
        rc, out, errs = self.run_cli("dependents", "database/pg", "--depth", "2", "--limit", "1",
                                     "--types", "depends_on,runs_on")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(out, "REF        DEPTH  VIA\nservice/a  1      service/a --depends_on--> database/pg\n")
        self.assertIn("showing 1 of 5", errs)

    def test_owners(self):
        Fake.routes[("GET", "/v1/nodes/host/h1/owners")] = reply(200, {"node": "host/h1", "owners": [
            {"ref": "team/pay", "attributes": {"chat": "#pay", "phone": "123"}, "rule": "runs_on",
             "via": ["host/h1", "service/a", "team/pay"]}]})
        rc, out, errs = self.run_cli("owners", "host/h1")
        self.assertEqual(rc, 0, errs)
        self.assertIn("team/pay  runs_on  chat=#pay phone=123  host/h1 -> service/a -> team/pay", out)

    def test_path_chain_with_reverse_hop(self):
        Fake.routes[("GET", "/v1/path?from=system%2Fpay&to=host%2Fh")] = reply(200, {
            "from": "system/pay", "to": "host/h", "hops": [
                {"from": "service/a", "type": "part_of", "to": "system/pay"},
                {"from": "service/a", "type": "runs_on", "to": "host/h"}]})
        rc, out, errs = self.run_cli("path", "system/pay", "host/h")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(out, "system/pay <--part_of-- service/a --runs_on--> host/h\n")

    def test_rootcause(self):
        Fake.routes[("POST", "/v1/rootcause")] = reply(200, {
            "candidates": [{"ref": "database/pg", "explains": ["service/a", "service/b"],
                            "health": "down", "depth": 1},
                           {"ref": "service/a", "explains": ["service/a"], "health": "down", "depth": 0}],
            "root_causes": ["database/pg"], "minimal_cover": ["database/pg"]})
        rc, out, errs = self.run_cli("rootcause", "service/a", "service/b", "--max-depth", "4")
        self.assertEqual(rc, 0, errs)
        self.assertEqual(json.loads(Fake.requests[0]["body"]),
                         {"failing": ["service/a", "service/b"], "max_depth": 4})
        self.assertIn("1     database/pg  down    1      service/a, service/b", out)
        self.assertIn("root causes:   database/pg", out)
        self.assertIn("minimal cover: database/pg", out)

    def test_graph_dot_is_verbatim(self):
        dot = 'digraph cmdb {\n  "service/a" -> "database/pg";\n}\n'
        Fake.routes[("GET", "/v1/graph?root=service%2Fa&depth=3&direction=both&format=dot")] = reply(
            200, dot, {"Content-Type": "text/vnd.graphviz"}, chunked=True)
        rc, out, errs = self.run_cli("graph", "service/a", "--depth", "3", "--direction", "both")
        self.assertEqual((rc, out), (0, dot), errs)
        self.assertEqual(self.run_cli("graph", "service/a", "--format", "svg")[0], 2)

    # ------------------------------------------------------ push and changes

    def test_push_from_stdin_dry_run(self):
        report = {"deployment_id": None, "seq": None,
                  "nodes": {"created": 2, "updated": 0, "unchanged": 1},
                  "edges": {"created": 1, "updated": 0, "removed": 1, "unchanged": 0},
                  "orphaned": ["host/old"]}
        Fake.routes[("POST", "/v1/manifests?dry_run=true")] = reply(200, report, chunked=True)
        manifest = b'{"manifest":"cmdb/v1","source":"t"}'
        rc, out, errs = self.run_cli("push", "-", "--dry-run", "--idempotency-key", "k1", stdin=manifest)
        self.assertEqual(rc, 0, errs)
        req = Fake.requests[0]
        self.assertEqual(req["body"], manifest)
        self.assertEqual(req["headers"]["idempotency-key"], "k1")
        self.assertEqual(out, "nodes:      2 created, 0 updated, 1 unchanged\n"
                              "edges:      1 created, 0 updated, 1 removed, 0 unchanged\n"
                              "orphaned:   host/old\n(dry run: nothing written)\n")

    def test_push_file(self):
        path = os.path.join(self.tmp.name, "m.json")
        with open(path, "wb") as f:
            f.write(b'{"manifest":"cmdb/v1","source":"t"}')
        Fake.routes[("POST", "/v1/manifests")] = reply(200, {
            "deployment_id": "d-1", "seq": 12, "nodes": {"created": 0, "updated": 0, "unchanged": 0},
            "edges": {"created": 0, "updated": 0, "removed": 0, "unchanged": 0}, "orphaned": []})
        rc, out, errs = self.run_cli("push", path)
        self.assertEqual(rc, 0, errs)
        self.assertIn("deployment: d-1\nseq:        12\n", out)
        self.assertEqual(self.run_cli("push", "/nonexistent")[0], 2)

    def test_changes_and_follow(self):
        ch = {"seq": 5, "at": "2026-11-21T10:00:00Z", "actor": "alice", "source": "api:alice",
              "op": "node.updated", "ref": "service/a", "before": None, "after": None}
        Fake.routes[("GET", "/v1/changes?since=4")] = reply(200, {"changes": [ch], "next": 5})
        rc, out, errs = self.run_cli("changes", "--since", "4")
        self.assertEqual((rc, out), (0, "5 2026-11-21T10:00:00Z alice node.updated service/a\n"), errs)

        Fake.routes[("GET", "/v1/changes?since=0&wait=1")] = reply(200, {"changes": [ch], "next": 5})
        Fake.routes[("GET", "/v1/changes?since=5&wait=1")] = err(503, "unavailable", "restarting")
        Fake.routes[("GET", "/v1/changes?since=5&wait=1")] = lambda h: (
            Fake.routes.__setitem__(("GET", "/v1/changes?since=5&wait=1"),
                                    err(401, "unauthorized", "token revoked"))
            or err(503, "unavailable", "restarting"))
        rc, out, errs = self.run_cli("changes", "--follow", "--wait", "1", "--json")
        self.assertEqual(rc, 3, errs)        # 503 retried, then 401 ends it
        self.assertEqual(json.loads(out), ch)
        self.assertIn("retrying in 1 s (from seq 5)", errs)
        self.assertTrue(all("wait=1" in r["path"] for r in Fake.requests[1:]))

    # -------------------------------------------------- errors and exit codes

    def test_exit_codes(self):
        for status, code, want in ((404, "not_found", 1), (400, "bad_request", 2),
                                   (401, "unauthorized", 3), (403, "forbidden", 3),
                                   (409, "conflict", 4), (422, "unprocessable", 4),
                                   (500, "internal", 4)):
            Fake.routes[("GET", "/v1/nodes/service/x")] = err(status, code, "msg %d" % status)
            rc, out, errs = self.run_cli("get", "service/x")
            self.assertEqual(rc, want, (status, errs))
            self.assertEqual(out, "")
            self.assertTrue(errs.startswith("cmdb: msg %d (HTTP %d %s, request id req-%d)\n"
                                            % (status, status, code, status)), errs)

    def test_error_details_and_json_error_body(self):
        body = {"error": {"status": 400, "code": "bad_request", "message": "invalid manifest",
                          "request_id": "r9", "details": [{"path": "nodes[3].ref", "message": "bad"}]}}
        Fake.routes[("POST", "/v1/manifests")] = reply(400, body)
        rc, out, errs = self.run_cli("push", "-", "--json", stdin=b"{}")
        self.assertEqual(rc, 2)
        self.assertIn('nodes[3].ref', errs)
        self.assertEqual(json.loads(out), body)

    def test_non_json_replies(self):
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(502, "<html>bad gateway</html>")
        rc, _, errs = self.run_cli("get", "service/x")
        self.assertEqual(rc, 4)
        self.assertIn("HTTP 502", errs)
        self.assertIn("hdr-req-id", errs)
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(200, "not json")
        rc, _, errs = self.run_cli("get", "service/x")
        self.assertEqual(rc, 4)
        self.assertIn("not valid JSON", errs)
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(200, {"unexpected": True})
        rc, _, errs = self.run_cli("get", "service/x")
        self.assertEqual(rc, 4)
        self.assertIn("unexpected reply", errs)
        Fake.routes[("GET", "/v1/nodes")] = reply(200, {"items": "nope"})
        self.assertEqual(self.run_cli("ls")[0], 4)
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{\"ref\":")
        rc, _, errs = self.run_cli("get", "service/x")
        self.assertEqual(rc, 4)
        self.assertIn("cut short", errs)
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(raw=b"SSH-2.0-OpenSSH\r\n\r\n")
        self.assertEqual(self.run_cli("get", "service/x")[0], 4)

    def test_timeout(self):
        Fake.routes[("GET", "/v1/nodes/service/x")] = reply(200, NODE, delay=3)
        t = time.time()
        rc, _, errs = self.run_cli("get", "service/x", "--timeout", "1")
        self.assertEqual(rc, 4)
        self.assertIn("timed out", errs)
        self.assertLess(time.time() - t, 2.5)

    def test_connection_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        rc, out, errs = self.run_cli("get", "service/x", env={"CMDB_URL": "http://127.0.0.1:%d" % port})
        self.assertEqual((rc, out), (4, ""))
        self.assertIn("Connection refused", errs)

    def test_usage_errors(self):
        for argv in (["get"], ["get", "noslash"], ["get", "Bad/x"], ["frobnicate"],
                     ["ls", "--limit", "abc"], ["ls", "--limit", "0"], ["get", "a/b", "extra"],
                     ["ls", "--bogus"], ["put", "service/x", "--attr", "novalue"],
                     ["put", "service/x", "--attr", "k:={bad"], ["--url", "ftp://x", "get", "a/b"],
                     ["get", "a/b", "--token", "x\ny"]):
            rc, out, errs = self.run_cli(*argv)
            self.assertEqual(rc, 2, (argv, errs))
            self.assertTrue(errs.startswith("cmdb: "), errs)
        self.assertEqual(Fake.requests, [])

    def test_token_file_and_url_prefix(self):
        root = os.path.join(self.tmp.name, "repo")
        sub = os.path.join(root, "a", "b")
        os.makedirs(os.path.join(root, ".cmdb"), exist_ok=True)
        os.makedirs(sub, exist_ok=True)
        with open(os.path.join(root, ".cmdb", "admin.token"), "w") as f:
            f.write("file-token\n")
        Fake.routes[("GET", "/base/v1/nodes/service/x")] = reply(200, NODE)
        rc, _, errs = self.run_cli("get", "service/x", cwd=sub,
                                   env={"CMDB_TOKEN": None,
                                        "CMDB_URL": "http://127.0.0.1:%d/base/" % self.port})
        self.assertEqual(rc, 0, errs)
        self.assertEqual(Fake.requests[0]["headers"]["authorization"], "Bearer file-token")
        rc, _, _ = self.run_cli("get", "service/x", "--token", "flag", "--url",
                                "http://127.0.0.1:%d/base" % self.port, cwd=sub)
        self.assertEqual(Fake.requests[1]["headers"]["authorization"], "Bearer flag")

    def test_no_token_hint(self):
        Fake.routes[("GET", "/v1/nodes/service/x")] = err(401, "unauthorized", "missing token")
        rc, _, errs = self.run_cli("get", "service/x", env={"CMDB_TOKEN": None}, cwd="/")
        self.assertEqual(rc, 3)
        self.assertNotIn("authorization", Fake.requests[0]["headers"])
        self.assertIn("hint: no token found", errs)



def make_ca_and_cert(d, host="127.0.0.1"):
    """A throwaway CA and a server certificate for host (SAN IP), with openssl."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=cmdb test CA",
         "-keyout", "ca.key", "-out", "ca.pem")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=%s" % host,
         "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:%s,DNS:localhost\n" % host)
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem")
    return os.path.join(d, "ca.pem"), os.path.join(d, "server.pem"), os.path.join(d, "server.key")


class ProxyHandler(BaseHTTPRequestHandler):
    """A forward proxy that answers itself: it records the absolute-form request
    line libcurl sends to a proxy, which proves the proxy was used."""
    protocol_version = "HTTP/1.1"
    seen = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        ProxyHandler.seen.append(self.path)
        data = json.dumps(NODE).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data)


class TlsAndProxyTest(CliBase):
    """https with verification (libcurl + OpenSSL against a real TLS server), the CA
    from --cacert or CMDB_CACERT, and proxies from the environment."""

    @classmethod
    def setUpClass(cls):
        import ssl
        cls.tmp = tempfile.TemporaryDirectory()
        cls.ca, cert, key = make_ca_and_cert(cls.tmp.name)
        cls.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        cls.server.socket = ctx.wrap_socket(cls.server.socket, server_side=True)
        cls.port = cls.server.server_address[1]
        threading.Thread(target=cls.server.serve_forever, daemon=True).start()
        cls.proxy = ThreadingHTTPServer(("127.0.0.1", 0), ProxyHandler)
        threading.Thread(target=cls.proxy.serve_forever, daemon=True).start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.shutdown()
        cls.proxy.server_close()
        cls.server.shutdown()
        cls.server.server_close()
        cls.tmp.cleanup()

    def https(self):
        return "https://127.0.0.1:%d" % self.port

    def test_https_with_cacert(self):
        Fake.routes[("GET", "/v1/nodes/database/pg-main%3A5432")] = reply(200, NODE)
        rc, out, errs = self.run_cli("get", "database/pg-main:5432", "--cacert", self.ca,
                                     env={"CMDB_URL": self.https()})
        self.assertEqual(rc, 0, errs)
        self.assertIn("database/pg-main:5432", out)
        self.assertEqual(Fake.requests[-1]["headers"]["authorization"], "Bearer tok-123")
        rc, out, errs = self.run_cli("get", "database/pg-main:5432",
                                     env={"CMDB_URL": self.https(), "CMDB_CACERT": self.ca})
        self.assertEqual(rc, 0, errs)

    def test_https_unverified_certificate_is_refused(self):
        Fake.routes[("GET", "/v1/nodes/database/pg-main%3A5432")] = reply(200, NODE)
        rc, out, errs = self.run_cli("get", "database/pg-main:5432",
                                     env={"CMDB_URL": self.https(),
                                          "SSL_CERT_FILE": "/nonexistent",
                                          "CURL_CA_BUNDLE": None})
        self.assertEqual((rc, out), (4, ""), errs)
        self.assertIn("TLS", errs)
        self.assertEqual(Fake.requests, [], "nothing may be sent over an unverified connection")
        # The wrong host name is refused too (the certificate names 127.0.0.1/localhost).
        rc, _, errs = self.run_cli("get", "database/pg-main:5432", "--cacert", self.ca,
                                   env={"CMDB_URL": "https://127.0.0.2:%d" % self.port})
        self.assertEqual(rc, 4, errs)

    def test_plain_http_to_tls_port_fails_cleanly(self):
        rc, out, errs = self.run_cli("get", "service/x",
                                     env={"CMDB_URL": "http://127.0.0.1:%d" % self.port},
                                     timeout=20)
        self.assertEqual((rc, out), (4, ""))
        self.assertTrue(errs.startswith("cmdb: "), errs)

    def test_missing_cacert_file_is_a_usage_error(self):
        rc, _, errs = self.run_cli("get", "service/x", "--cacert", "/nonexistent/ca.pem",
                                   env={"CMDB_URL": self.https()})
        self.assertEqual(rc, 2, errs)
        self.assertIn("/nonexistent/ca.pem", errs)

    def test_proxy_from_environment(self):
        ProxyHandler.seen = []
        proxy = "http://127.0.0.1:%d" % self.proxy.server_address[1]
        rc, out, errs = self.run_cli("get", "database/pg-main:5432",
                                     env={"CMDB_URL": "http://cmdb.invalid:8080",
                                          "http_proxy": proxy})
        self.assertEqual(rc, 0, errs)
        self.assertEqual(ProxyHandler.seen,
                         ["http://cmdb.invalid:8080/v1/nodes/database/pg-main%3A5432"])
        # no_proxy wins: the name is then resolved directly (and fails: .invalid).
        rc, _, errs = self.run_cli("get", "database/pg-main:5432",
                                   env={"CMDB_URL": "http://cmdb.invalid:8080",
                                        "http_proxy": proxy, "no_proxy": "cmdb.invalid"})
        self.assertEqual(rc, 4, errs)
        self.assertEqual(len(ProxyHandler.seen), 1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        CMDB = sys.argv.pop(1)
    unittest.main(verbosity=1)
