#!/usr/bin/python3
"""Black-box tests of the SPEC §2 input rules: body limits, JSON strictness, header
limits, methods, query parameters, unknown routes."""

import json
import os
import re
import socket
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path, raw_http, raw_status  # noqa: E402

MiB = 1024 * 1024


def nested(depth):
    """A JSON object nested `depth` levels deep counting the outermost: {"a":{"a":...{}}}."""
    return "{" + '"a":{' * (depth - 1) + "}" * depth


class Limits(ServerTestCase):
    server_name = "limits"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        st = cls.srv.put_node("service/lim-a")[0]
        assert st == 201, st
        st = cls.srv.put_node("service/lim-b")[0]
        assert st == 201, st

    def alive(self):
        self.assertStatus(self.srv.get("/healthz", token=None), 200, "server still serves")

    # -- body size

    def test_body_over_4mib_is_413_readable(self):
        blob = b'{"attributes":{"x":"' + b"x" * (5 * MiB) + b'"}}'
        r = self.srv.request("PUT", node_path("service/lim-big"), raw=blob)
        self.assertError(r, 413)
        m = b'{"manifest":"cmdb/v1","source":"e2e:big","extensions":{"x":"' + \
            b"y" * (5 * MiB) + b'"}}'
        self.assertError(self.srv.request("POST", "/v1/manifests", raw=m), 413)
        self.assertEqual(self.srv.get(node_path("service/lim-big"))[0], 404)
        self.alive()

    def test_413_with_expect_continue(self):
        # What curl does with a large body: send the headers with Expect: 100-continue,
        # wait a moment for an early answer, else send the body; then read the answer.
        # Either way (early 413, or 100 Continue and drain) the client must read a 413.
        size = 6 * MiB
        head = ("PUT /v1/nodes/service/lim-cl HTTP/1.1\r\nHost: x\r\n"
                "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
                "Content-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                % (self.srv.token("admin"), size)).encode()
        with socket.create_connection(("127.0.0.1", self.srv.port), timeout=15) as sk:
            sk.sendall(head)
            sk.settimeout(1.0)
            try:
                early = sk.recv(65536)
            except socket.timeout:
                early = b""
            if early.startswith(b"HTTP/1.1 100"):
                early = early.split(b"\r\n\r\n", 1)[1]
            if not early:
                body = b'{"attributes":{"x":"' + b"x" * (size - 23) + b'"}}'
                self.assertEqual(len(body), size)
                try:
                    sk.sendall(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass
            sk.settimeout(15)
            resp = early
            while b"\r\n\r\n" not in resp:
                try:
                    chunk = sk.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    break
                if not chunk:
                    break
                resp += chunk
        self.assertEqual(raw_status(resp), 413, resp[:300])
        self.alive()

    def test_body_under_limit_is_accepted(self):
        # 3 MiB of manifest is under the 4 MiB default (extensions are kept verbatim).
        m = {"manifest": "cmdb/v1", "source": "e2e:big-ok", "nodes": [{"ref": "service/lim-ok"}],
             "extensions": {"x-pad": "z" * (3 * MiB)}}
        self.assertStatus(self.srv.post("/v1/manifests", m), 200)

    # -- JSON strictness

    def bodies_rejected(self, method, path, bodies):
        for raw in bodies:
            with self.subTest(path=path, body=raw[:60]):
                r = self.srv.request(method, path, raw=raw)
                self.assertError(r, 400)

    def test_not_one_json_object(self):
        bad = [b"", b"null", b"[]", b'[{"state":"ok"}]', b'"ok"', b"42", b"true",
               b'{"state":"ok"} x', b'{"state":"ok"}{}', b'{"state":"ok"', b"{,}",
               b'{"state":\'ok\'}', b'{"state":"ok",}']
        self.bodies_rejected("PUT", node_path("service/lim-a") + "/health", bad)
        self.bodies_rejected("PUT", "/v1/edges", bad)
        self.bodies_rejected("POST", "/v1/manifests", bad)
        self.bodies_rejected("POST", "/v1/rootcause", bad)
        self.bodies_rejected("PUT", node_path("service/lim-a"),
                             [b"", b"null", b"[]", b"{} x", b"{}{}"])
        self.assertEqual(self.srv.get(node_path("service/lim-a"))[2]["health"], "unknown")

    def test_trailing_whitespace_is_fine(self):
        r = self.srv.request("PUT", node_path("service/lim-a") + "/health",
                             raw=b' {"state":"ok"} \n')
        self.assertStatus(r, 200)

    def test_duplicate_keys(self):
        self.bodies_rejected("PUT", node_path("service/lim-a") + "/health",
                             [b'{"state":"ok","state":"down"}'])
        self.bodies_rejected("PUT", node_path("service/lim-a"),
                             [b'{"attributes":{"k":1,"k":2}}', b'{"labels":{},"labels":{}}'])
        self.bodies_rejected("PUT", "/v1/edges",
                             [b'{"from":"service/lim-a","from":"service/lim-b",'
                              b'"type":"depends_on","to":"service/lim-b"}'])

    def test_nul_in_strings(self):
        self.bodies_rejected("PUT", node_path("service/lim-a") + "/health",
                             [b'{"state":"ok","reason":"a\\u0000b"}'])
        self.bodies_rejected("PUT", node_path("service/lim-a"),
                             [b'{"attributes":{"k":"a\\u0000"}}',
                              b'{"attributes":{"a\\u0000b":1}}',
                              b'{"labels":{"k":"\\u0000"}}'])

    def test_invalid_utf8(self):
        self.bodies_rejected("PUT", node_path("service/lim-a"),
                             [b'{"attributes":{"k":"\xff\xfe"}}',
                              b'{"attributes":{"k":"\xed\xa0\x80"}}',
                              b'{"attributes":{"k":"\\ud800"}}'])

    def test_nesting_depth(self):
        p = node_path("service/lim-nest")
        for depth in (33, 40, 1000):
            with self.subTest(depth=depth):
                raw = ('{"attributes":' + nested(depth - 1) + "}").encode()
                self.assertError(self.srv.request("PUT", p, raw=raw), 400, None, ())
        raw = ('{"attributes":' + nested(20) + "}").encode()
        self.assertStatus(self.srv.request("PUT", p, raw=raw), 201, "depth 21 is fine")
        deep_arr = ('{"attributes":{"a":' + "[" * 40 + "]" * 40 + "}}").encode()
        self.assertError(self.srv.request("PUT", p, raw=deep_arr), 400)
        self.alive()

    # -- headers

    def test_too_many_headers(self):
        hdrs = "".join("X-H%d: v\r\n" % i for i in range(110))
        req = ("GET /healthz HTTP/1.1\r\nHost: x\r\n" + hdrs + "\r\n").encode()
        resp = raw_http(self.srv.port, req)
        self.assertIn(raw_status(resp), (431, 400), resp[:300])
        self.alive()

    def test_headers_too_large(self):
        req = ("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + "a" * (17 * 1024) +
               "\r\n\r\n").encode()
        resp = raw_http(self.srv.port, req)
        self.assertIn(raw_status(resp), (431, 400), resp[:300])
        self.alive()

    def test_headers_within_limits(self):
        hdrs = "".join("X-H%d: %s\r\n" % (i, "v" * 50) for i in range(90))
        req = ("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + hdrs +
               "\r\n").encode()
        resp = raw_http(self.srv.port, req)
        self.assertEqual(raw_status(resp), 200, resp[:300])

    def test_protocol_errors_are_json_with_request_id(self):
        # SPEC §2: "Errors, always: {"error":{...}}" and "Every response has X-Request-Id" —
        # also the ones for requests rejected before routing.
        cases = {
            "too many headers": "GET /healthz HTTP/1.1\r\nHost: x\r\n" +
                                "".join("X-H%d: v\r\n" % i for i in range(110)) + "\r\n",
            "headers too large": "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " +
                                 "a" * (17 * 1024) + "\r\n\r\n",
            "unknown method": "BREW /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n",
        }
        bad = []
        for what, req in cases.items():
            resp = raw_http(self.srv.port, req.encode())
            head, _, body = resp.partition(b"\r\n\r\n")
            has_id = re.search(rb"(?im)^x-request-id:\s*\S", head) is not None
            try:
                is_json = "error" in json.loads(body)
            except ValueError:
                is_json = False
            if not (has_id and is_json):
                bad.append("%s → %s (X-Request-Id: %s, JSON error body: %s)"
                           % (what, head.split(b"\r\n")[0].decode(errors="replace"),
                              has_id, is_json))
        self.assertFalse(bad, "; ".join(bad))

    def test_garbage_request_line(self):
        for req in (b"\x00\x01\x02garbage\r\n\r\n", b"GET\r\n\r\n",
                    b"GET / HTTP/9.9\r\nHost: x\r\n\r\n"):
            with self.subTest(req=req):
                resp = raw_http(self.srv.port, req)
                st = raw_status(resp)
                self.assertTrue(st is None or 400 <= st < 600, resp[:300])
        self.alive()

    # -- methods and routes

    def test_unknown_method(self):
        req = ("BREW /v1/nodes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Connection: close\r\n\r\n" % self.srv.token("admin")).encode()
        resp = raw_http(self.srv.port, req)
        self.assertIn(raw_status(resp), (405, 501), resp[:300])
        self.alive()

    def test_method_not_served_on_known_route(self):
        for method, path in (("PATCH", node_path("service/lim-a")), ("POST", "/v1/nodes"),
                             ("DELETE", "/v1/nodes"), ("PUT", "/v1/manifests"),
                             ("POST", node_path("service/lim-a"))):
            with self.subTest(method=method, path=path):
                r = self.srv.request(method, path, {} if method != "DELETE" else None)
                self.assertError(r, (405, 501))
                if r[0] == 405:
                    self.assertIn("allow", r[1], "405 carries Allow")

    def test_unknown_route_is_404_json(self):
        for path in ("/v1/nope", "/nope", "/v1/nodes/service/lim-a/nope", "/v2/nodes", "/"):
            with self.subTest(path=path):
                self.assertError(self.srv.get(path), 404, "not_found")

    # -- query parameters

    def test_bad_query_params(self):
        dep = node_path("service/lim-a") + "/dependents"
        dcy = node_path("service/lim-a") + "/dependencies"
        cases = [
            ("/v1/nodes?limit=abc", "limit"), ("/v1/nodes?limit=-1", "limit"),
            ("/v1/nodes?limit=1001", "limit"), ("/v1/nodes?limit=10x", "limit"),
            ("/v1/nodes?limit=99999999999999999999999", "limit"),
            ("/v1/nodes?kind=Bad", "kind"), ("/v1/nodes?label=novalue", "label"),
            (dep + "?depth=x", "depth"), (dep + "?depth=-1", "depth"),
            (dep + "?limit=100001", "limit"), (dep + "?types=owned_by", "types"),
            (dep + "?types=uses", "types"), (dcy + "?depth=1.5", "depth"),
            ("/v1/changes?since=-1", "since"), ("/v1/changes?since=abc", "since"),
            ("/v1/changes?wait=61", "wait"), ("/v1/changes?wait=-1", "wait"),
            ("/v1/changes?limit=abc", "limit"),
            ("/v1/path?from=service/lim-a&to=bad", "to"),
            ("/v1/path?from=&to=service/lim-a", "from"),
            ("/v1/graph?root=service/lim-a&depth=x", "depth"),
            ("/v1/graph?root=service/lim-a&direction=up", "direction"),
            ("/v1/graph?root=service/lim-a&format=png", "format"),
            ("/v1/deployments?node=bad", "node"), ("/v1/deployments?limit=abc", "limit"),
        ]
        for path, param in cases:
            with self.subTest(path=path):
                self.assertError(self.srv.get(path), 400, None, [param])

    def test_good_query_params(self):
        dep = node_path("service/lim-a") + "/dependents"
        for path in ("/v1/nodes?limit=1", dep + "?depth=1", dep + "?depth=3&limit=100000",
                     dep + "?types=depends_on,runs_on", "/v1/changes?since=0&limit=1",
                     "/v1/changes?since=0&wait=0"):
            with self.subTest(path=path):
                self.assertStatus(self.srv.get(path), 200)

    def test_error_bodies_are_json(self):
        st, h, body = self.srv.get("/v1/nope")
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertIsInstance(body, dict)
        json.dumps(body)


if __name__ == "__main__":
    unittest.main()
