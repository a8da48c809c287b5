#!/usr/bin/python3
"""Issue 8: request deadlines and the connection cap (cmdbd/http_conn.c).

A request's headers must arrive within --header-timeout (from accept on a new
connection, from the request's first byte on a kept-alive one) and its body within
--body-timeout of the end of the headers, however slowly the bytes trickle; otherwise
the answer is a JSON 408 and the connection is closed. A request with a handler has
no read deadline. Beyond --max-connections open connections a new one is answered 503
and closed while the established ones keep being served. /metrics counts all of it.

The server runs with small limits so that each case takes seconds; every timing
assertion allows SLACK for a loaded machine or a sanitizer build.
"""

import json
import os
import re
import select
import socket
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import ServerTestCase, node_path  # noqa: E402

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
MAX_CONNECTIONS = 20
SLACK = 1.5


class RawConn:
    """A client socket that reads HTTP/1.1 responses itself (pipelining, early
    answers, half-closes), with a buffer kept across responses."""

    def __init__(self, port, timeout=10):
        self.t_open = time.monotonic()
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def send(self, data):
        """Send; False when the server has closed its side for good."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def readable(self, timeout):
        return bool(self.buf) or bool(select.select([self.sock], [], [], max(0, timeout))[0])

    def _fill(self, deadline):
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([self.sock], [], [], remaining)[0]:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def response(self, timeout=10):
        """The next whole response as (status, headers with lower-case names, body
        bytes), or None when the connection ends or timeout passes first."""
        deadline = time.monotonic() + timeout
        while True:
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if sep:
                lines = head.decode("latin-1").split("\r\n")
                m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
                assert m, "not a status line: %r" % lines[0]
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length", "0"))
                if len(rest) >= n:
                    self.buf = rest[n:]
                    return int(m.group(1)), headers, rest[:n]
            if not self._fill(deadline):
                return None

    def closed_within(self, timeout):
        """True when the server closes the connection within timeout (bytes that
        arrive meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._fill(deadline) and not self.eof:
                return False
        return True

    def close(self):
        self.sock.close()


def request_bytes(method, path, token=None, body=None, keep_alive=True):
    head = "%s %s HTTP/1.1\r\nHost: cmdbd\r\n" % (method, path)
    if token:
        head += "Authorization: Bearer %s\r\n" % token
    if body is not None:
        head += "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    if not keep_alive:
        head += "Connection: close\r\n"
    return (head + "\r\n").encode(), body or b""


def trickle(conn, data, every, until):
    """Send data one byte every `every` seconds until the server answers (the socket
    turns readable) or `until` (monotonic) passes; True when it answered."""
    for i in range(len(data)):
        if conn.readable(0):
            return True
        if not conn.send(data[i:i + 1]):
            return True
        if conn.readable(min(every, max(0, until - time.monotonic()))):
            return True
        if time.monotonic() >= until:
            return False
    return conn.readable(until - time.monotonic())


def metric(text, series):
    m = re.search(r"(?m)^%s (\S+)$" % re.escape(series), text)
    return float(m.group(1)) if m else None


class Deadlines(ServerTestCase):
    server_name = "deadlines"
    server_args = ("--header-timeout", str(HEADER_TIMEOUT), "--body-timeout", str(BODY_TIMEOUT),
                   "--max-connections", str(MAX_CONNECTIONS), "--idle-timeout", "30")

    def metrics(self, conn=None):
        """The /metrics text, over conn (a RawConn kept alive) or a new connection."""
        if conn is None:
            st, _, body = self.srv.get("/metrics", token=None)
            self.assertEqual(st, 200)
            return body
        head, _ = request_bytes("GET", "/metrics")
        self.assertTrue(conn.send(head))
        resp = conn.response()
        self.assertIsNotNone(resp, "no answer to /metrics on an established connection")
        self.assertEqual(resp[0], 200)
        return resp[2].decode()

    def assertJsonError(self, resp, status, code):
        self.assertIsNotNone(resp, "no answer")
        st, h, raw = resp
        self.assertEqual(st, status, "status; body %r" % raw[:300])
        self.assertTrue(h.get("content-type", "").startswith("application/json"), h)
        self.assertEqual(h.get("connection", "").lower(), "close", h)
        body = json.loads(raw)
        err = body["error"]
        self.assertEqual(err["status"], status)
        self.assertEqual(err["code"], code)
        self.assertTrue(err["message"])
        self.assertEqual(err["request_id"], h.get("x-request-id"), "request id in body and header")
        return err

    # -- read deadlines

    def test_trickled_headers_get_408_and_close(self):
        before = metric(self.metrics(), 'cmdb_http_request_timeouts_total{phase="headers"}')
        conn = RawConn(self.srv.port)
        try:
            # A byte every 0.2 s: each one would restart an idle timeout.
            data = b"GET /healthz HTTP/1.1\r\nHost: cmdbd\r\nX-Slow: " + b"a" * 200
            answered = trickle(conn, data, 0.2, conn.t_open + HEADER_TIMEOUT + SLACK + 3)
            took = time.monotonic() - conn.t_open
            self.assertTrue(answered, "trickled headers still held after %.1f s" % took)
            err = self.assertJsonError(conn.response(2), 408, "request_timeout")
            self.assertEqual(err["details"]["phase"], "headers")
            self.assertGreaterEqual(took, HEADER_TIMEOUT - 0.1, "408 before the deadline")
            self.assertLess(took, HEADER_TIMEOUT + SLACK, "408 came %.2f s after accept" % took)
            self.assertTrue(conn.closed_within(SLACK), "connection left open after the 408")
        finally:
            conn.close()
        after = metric(self.metrics(), 'cmdb_http_request_timeouts_total{phase="headers"}')
        self.assertEqual(after, before + 1, "header timeouts counted in /metrics")

    def test_trickled_body_gets_408(self):
        before = metric(self.metrics(), 'cmdb_http_request_timeouts_total{phase="body"}')
        body = json.dumps({"attributes": {"pad": "x" * 400}}).encode()
        head, _ = request_bytes("PUT", node_path("service/dl-trickled"), self.srv.token("admin"),
                                body)
        conn = RawConn(self.srv.port)
        try:
            self.assertTrue(conn.send(head))
            t_head = time.monotonic()
            answered = trickle(conn, body, 0.2, t_head + BODY_TIMEOUT + SLACK + 3)
            took = time.monotonic() - t_head
            self.assertTrue(answered, "trickled body still held after %.1f s" % took)
            err = self.assertJsonError(conn.response(2), 408, "request_timeout")
            self.assertEqual(err["details"]["phase"], "body")
            self.assertEqual(err["details"]["limit_seconds"], BODY_TIMEOUT)
            self.assertGreaterEqual(took, BODY_TIMEOUT - 0.1, "408 before the body deadline")
            self.assertLess(took, BODY_TIMEOUT + SLACK, "408 came %.2f s after the headers" % took)
            self.assertTrue(conn.closed_within(SLACK), "connection left open after the 408")
        finally:
            conn.close()
        self.assertEqual(self.srv.get(node_path("service/dl-trickled"))[0], 404,
                         "the timed-out write was not applied")
        after = metric(self.metrics(), 'cmdb_http_request_timeouts_total{phase="body"}')
        self.assertEqual(after, before + 1, "body timeouts counted in /metrics")

    def test_slow_but_complete_request_succeeds(self):
        """Headers in pieces (CR and LF split across sends) within the header deadline,
        then the body within the body deadline: longer in all than the header deadline,
        and served. Then the connection idles past the header deadline and is reused."""
        body = json.dumps({"attributes": {"slow": True}}).encode()
        head, _ = request_bytes("PUT", node_path("service/dl-slow"), self.srv.token("admin"),
                                body)
        cuts = sorted({len(head) // 3, head.index(b"\r\n") + 1, len(head) - 3, len(head) - 1})
        pieces = [head[a:b] for a, b in zip([0] + cuts, cuts + [len(head)])]
        conn = RawConn(self.srv.port)
        try:
            for p in pieces:                       # about 0.8 s of headers
                self.assertTrue(conn.send(p))
                time.sleep(0.8 / len(pieces))
            for i in range(0, len(body), 4):       # about 2 s of body
                self.assertTrue(conn.send(body[i:i + 4]))
                time.sleep(2.0 / ((len(body) + 3) // 4))
            took = time.monotonic() - conn.t_open
            self.assertGreater(took, HEADER_TIMEOUT, "the whole request must outlast the header "
                               "deadline for this test to mean anything")
            resp = conn.response(10)
            self.assertIsNotNone(resp, "no answer to a slow but complete request")
            self.assertEqual(resp[0], 201, resp[2][:300])
            # Idle between requests: only the idle timeout (30 s) applies.
            time.sleep(HEADER_TIMEOUT + 0.5)
            head2, _ = request_bytes("GET", "/healthz")
            self.assertTrue(conn.send(head2), "idle keep-alive connection was closed")
            resp = conn.response(5)
            self.assertIsNotNone(resp, "idle keep-alive connection was closed")
            self.assertEqual(resp[0], 200)
        finally:
            conn.close()

    def test_silent_new_connection_is_closed(self):
        conn = RawConn(self.srv.port)
        try:
            closed = conn.closed_within(HEADER_TIMEOUT + SLACK)
            took = time.monotonic() - conn.t_open
            self.assertTrue(closed, "a connection that never sent a byte was held %.1f s" % took)
            self.assertGreaterEqual(took, HEADER_TIMEOUT - 0.1)
            self.assertEqual(conn.buf, b"", "nothing to answer: no request was sent")
        finally:
            conn.close()

    def test_pipelined_request_gets_its_own_deadline(self):
        """A whole request and the start of a second in one packet: the first is
        answered; the second's header clock runs from that answer."""
        first, _ = request_bytes("GET", "/healthz")
        conn = RawConn(self.srv.port)
        try:
            self.assertTrue(conn.send(first + b"GET /healthz HTTP/1.1\r\nHost: cm"))
            resp = conn.response(5)
            t_first = time.monotonic()
            self.assertIsNotNone(resp)
            self.assertEqual(resp[0], 200)
            resp = conn.response(HEADER_TIMEOUT + SLACK + 2)
            took = time.monotonic() - t_first
            err = self.assertJsonError(resp, 408, "request_timeout")
            self.assertEqual(err["details"]["phase"], "headers")
            self.assertGreaterEqual(took, HEADER_TIMEOUT - 0.3)
            self.assertLess(took, HEADER_TIMEOUT + SLACK)
        finally:
            conn.close()

    def test_handler_time_is_not_a_read_deadline(self):
        """A long poll waits in its handler longer than both read deadlines."""
        st, _, body = self.srv.get("/v1/changes?since=0&limit=1000", token="read")
        self.assertEqual(st, 200, body)
        since = body["changes"][-1]["seq"] if body["changes"] else 0
        wait = HEADER_TIMEOUT + BODY_TIMEOUT
        t0 = time.monotonic()
        st, _, body = self.srv.get("/v1/changes?since=%d&wait=%d" % (since, wait), token="read",
                                   timeout=wait + 10)
        took = time.monotonic() - t0
        self.assertEqual(st, 200, body)
        self.assertEqual(body["changes"], [])
        self.assertGreaterEqual(took, wait - 0.5, "the long poll did not wait")

    # -- the connection cap

    def test_cap_refuses_new_connections_and_serves_established_ones(self):
        established = RawConn(self.srv.port)
        fillers = []
        try:
            # Only `established` open (earlier tests' connections are closed by now).
            deadline = time.monotonic() + 10
            while True:
                text = self.metrics(established)
                if metric(text, "cmdb_http_connections_open") == 1:
                    break
                self.assertLess(time.monotonic(), deadline,
                                "connections still open: %s"
                                % metric(text, "cmdb_http_connections_open"))
                time.sleep(0.2)
            self.assertEqual(metric(text, "cmdb_http_connections_max"), MAX_CONNECTIONS)
            refused0 = metric(text, "cmdb_http_connections_refused_total")

            # Keep-alive clients that were served and now idle, until one is refused.
            refused = None
            for _ in range(MAX_CONNECTIONS + 5):
                c = RawConn(self.srv.port)
                head, _ = request_bytes("GET", "/healthz")
                c.send(head)
                resp = c.response(5)
                if resp is not None and resp[0] == 200:
                    fillers.append(c)
                    continue
                refused = (c, resp)
                break
            self.assertIsNotNone(refused, "no connection was refused past the cap")
            self.assertEqual(len(fillers) + 1, MAX_CONNECTIONS,
                             "refused before the cap: %d open" % (len(fillers) + 1))
            c, resp = refused
            err = self.assertJsonError(resp, 503, "too_many_connections")
            self.assertEqual(err["details"]["limit"], MAX_CONNECTIONS)
            self.assertEqual(resp[1].get("retry-after"), "1")
            self.assertTrue(c.closed_within(SLACK), "refused connection left open")
            c.close()

            # The established client is still served, repeatedly.
            for _ in range(3):
                head, _ = request_bytes("GET", "/healthz")
                self.assertTrue(established.send(head))
                resp = established.response(5)
                self.assertIsNotNone(resp, "established client not served at the cap")
                self.assertEqual(resp[0], 200)
            text = self.metrics(established)
            self.assertEqual(metric(text, "cmdb_http_connections_open"), MAX_CONNECTIONS)
            self.assertEqual(metric(text, "cmdb_http_connections_refused_total"), refused0 + 1)

            # Idle keep-alive connections are not subject to the header deadline: past
            # it, the cap still holds and a newcomer is still refused.
            time.sleep(HEADER_TIMEOUT + 0.5)
            c = RawConn(self.srv.port)
            c.send(request_bytes("GET", "/healthz")[0])
            self.assertJsonError(c.response(5), 503, "too_many_connections")
            c.close()

            # Once the idle clients leave, newcomers are served again.
            for f in fillers:
                f.close()
            fillers = []
            deadline = time.monotonic() + 10
            while True:
                c = RawConn(self.srv.port)
                c.send(request_bytes("GET", "/healthz", keep_alive=False)[0])
                resp = c.response(5)
                c.close()
                if resp is not None and resp[0] == 200:
                    break
                self.assertLess(time.monotonic(), deadline, "still refused after the idle "
                                "connections closed: %r" % (resp,))
                time.sleep(0.2)
            text = self.metrics(established)
            self.assertLessEqual(metric(text, "cmdb_http_connections_open"), 2)
            self.assertGreaterEqual(metric(text, "cmdb_http_connections_refused_total"), refused0 + 2)
        finally:
            for f in fillers:
                f.close()
            established.close()


if __name__ == "__main__":
    unittest.main()
