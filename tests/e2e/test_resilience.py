#!/usr/bin/python3
"""Resilience and bookkeeping (SPEC §1 Change log, §2 Operations, §4 signals):

- a database outage turns into 503 JSON (readyz 503, healthz 200) and the server
  recovers by itself when the database comes back (a private cluster of our own is
  stopped and started, never the shared one);
- SIGTERM lets in-flight requests finish and exits 0; a restart keeps the data;
- every write leaves rows in `changes` with strictly increasing seq, under the source
  api:<token name>, and a reader following since=N misses nothing under concurrency."""

import http.client
import json
import os
import signal
import subprocess
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402
from lib import PrivateCluster, Server, ServerTestCase, node_path, poll  # noqa: E402

RECOVER_SECONDS = 10.0   # "recovers by itself within a few seconds"
FAIL_FAST_SECONDS = 10.0  # a request during an outage must not hang


class DatabaseOutage(ServerTestCase):
    cluster = None

    @classmethod
    def setUpClass(cls):
        lib.admin_url()  # skip like the rest of the suite when no cluster is configured
        lib.require_binaries((lib.CMDBD_BIN, "CMDBD_BIN"))
        cls.cluster = PrivateCluster().init()
        try:
            cls.cluster.start()
            cls.srv = Server.start("outage", admin=cls.cluster.conninfo)
        except BaseException:
            cls.cluster.destroy()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.srv is not None:
                cls.srv.stop()
        finally:
            if cls.srv is not None:
                cls.srv.kill()
            cls.srv = None
            cls.cluster.destroy()

    def timed(self, fn):
        t0 = time.monotonic()
        r = fn()
        self.assertLess(time.monotonic() - t0, FAIL_FAST_SECONDS,
                        "answered promptly during the outage")
        return r

    def test_outage_and_recovery(self):
        s = self.srv
        before = self.assertStatus(s.put_node("service/out-a", {"k": 1}), 201)

        self.cluster.stop("fast")
        r = poll(lambda: s.get("/readyz", token=None), lambda r: r[0] == 503, 10)
        self.assertStatus(r, 503, "/readyz while the database is down")
        self.assertStatus(s.get("/healthz", token=None), 200, "/healthz while the database is down")

        r = self.timed(lambda: s.put_node("service/out-b"))
        self.assertError(r, 503, None, (), "PUT node while the database is down")
        r = self.timed(lambda: s.get("/v1/nodes?limit=5"))
        self.assertError(r, 503, None, (), "list while the database is down")
        r = self.timed(lambda: s.post("/v1/manifests", {"manifest": "cmdb/v1",
                                                        "source": "e2e:outage"}))
        self.assertError(r, 503, None, (), "manifest while the database is down")
        self.assertIsNone(s.proc.poll(), "cmdbd keeps running through the outage")

        self.cluster.start()
        r = poll(lambda: s.get("/readyz", token=None), lambda r: r[0] == 200, RECOVER_SECONDS)
        self.assertStatus(r, 200, "/readyz after the database came back (%.0f s)"
                          % RECOVER_SECONDS)
        r = poll(lambda: s.put_node("service/out-b"), lambda r: r[0] in (200, 201), 3)
        self.assertStatus(r, 201, "writes work again")
        got = self.assertStatus(s.get(node_path("service/out-a")), 200)
        self.assertEqual(got["id"], before["id"])
        self.assertStatus(s.get("/v1/nodes?limit=5"), 200)
        # And the in-memory side caught up: the new node is in the graph.
        self.assertStatus(s.get(node_path("service/out-b") + "/dependents"), 200)

    def test_server_started_before_the_database(self):
        """A cmdbd started while PostgreSQL is down answers /healthz at once, says
        503 on /readyz and on graph queries, and serves the map once the database
        arrives — no restart, whatever the start order."""
        s = self.srv
        self.assertStatus(s.put_node("service/early-a"), (200, 201))
        port = lib.free_port()
        self.cluster.stop("fast")
        up = False
        log = open(s.log_path + ".early", "ab")
        proc = subprocess.Popen([lib.CMDBD_BIN, "serve", "--listen", "127.0.0.1:%d" % port],
                                env=s._env(), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=log)
        try:
            def get(path, token=None):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                try:
                    hdrs = {"Authorization": "Bearer " + s.token("admin")} if token else {}
                    conn.request("GET", path, headers=hdrs)
                    resp = conn.getresponse()
                    return resp.status, resp.read()
                except OSError as e:
                    return 0, repr(e)
                finally:
                    conn.close()

            r = poll(lambda: get("/healthz"), lambda r: r[0] == 200, 10)
            self.assertEqual(r[0], 200, "/healthz while the database was never there")
            self.assertEqual(get("/readyz")[0], 503)
            self.cluster.start()
            up = True
            r = poll(lambda: get("/readyz"), lambda r: r[0] == 200, RECOVER_SECONDS)
            self.assertEqual(r[0], 200, "/readyz once the database arrived")
            r = get(node_path("service/early-a") + "/dependents", token=True)
            self.assertEqual(r[0], 200, "the map was loaded: %r" % (r,))
        finally:
            if not up:
                self.cluster.start()
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(15)
            log.close()
        self.assertEqual(rc, 0)


class Signals(unittest.TestCase):
    """SIGTERM: stop accepting, finish in-flight requests, exit 0 (SPEC §4)."""

    def sigterm_and_wait(self, srv, t0):
        rc = srv.proc.wait(15)
        took = time.monotonic() - t0
        return rc, took

    def finish(self, srv):
        # The exit code was asserted above; kill() only reaps (or ends a hung process)
        # and closes the log.
        srv.kill()

    def test_sigterm_answers_waiting_long_poll(self):
        srv = Server.start("sigterm")
        try:
            nxt = srv.get("/v1/changes?since=0")[2]["next"]
            result = {}

            def long_poll():
                try:
                    result["r"] = srv.get("/v1/changes?since=%d&wait=3" % nxt)
                except Exception as e:  # recorded, asserted below
                    result["e"] = e

            t = threading.Thread(target=long_poll)
            t.start()
            time.sleep(0.7)   # the request is in flight, waiting
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)
            t.join(15)
            rc, took = self.sigterm_and_wait(srv, t0)
            log = srv.log_tail()
            self.assertFalse(t.is_alive(), "the in-flight request was answered")
            self.assertNotIn("e", result, "in-flight GET /v1/changes?wait=3 failed: %r "
                             "(expected a 200 reply before exit); log:\n%s"
                             % (result.get("e"), log))
            st, h, body = result["r"]
            self.assertEqual(st, 200, "in-flight request completes normally: %r" % (body,))
            self.assertEqual(body.get("changes"), [])
            self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + log)
            self.assertLess(took, 10)
        finally:
            self.finish(srv)

    def test_sigterm_finishes_request_being_uploaded(self):
        # The request is half-sent when SIGTERM arrives; the rest follows; the client
        # must get the normal answer and the write must be done.
        srv = Server.start("sigterm2")
        try:
            body = json.dumps({"attributes": {"pad": "p" * 60000}}).encode()
            head = ("PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                    "Content-Type: application/json\r\nContent-Length: %d\r\n"
                    "Connection: close\r\n\r\n"
                    % (node_path("service/sig-up"), srv.token("admin"), len(body))).encode()
            with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sk:
                sk.sendall(head + body[:1000])
                time.sleep(0.3)
                t0 = time.monotonic()
                srv.proc.send_signal(signal.SIGTERM)
                time.sleep(0.3)
                try:
                    sk.sendall(body[1000:])
                    resp = b""
                    while True:
                        chunk = sk.recv(65536)
                        if not chunk:
                            break
                        resp += chunk
                except OSError as e:
                    resp = repr(e).encode()
            rc, took = self.sigterm_and_wait(srv, t0)
            log = srv.log_tail()
            self.assertEqual(lib.raw_status(resp), 201, "half-uploaded PUT at SIGTERM got %r; "
                             "log:\n%s" % (resp[:300], log))
            self.assertEqual(rc, 0, "exit code after SIGTERM; log:\n" + log)
        finally:
            self.finish(srv)


class ChangeLog(ServerTestCase):
    server_name = "changelog"

    def max_seq(self):
        return int(self.srv.psql("SELECT coalesce(max(seq), 0) FROM changes").strip())

    def rows_after(self, seq):
        return self.srv.psql_json(
            "SELECT coalesce(json_agg(c ORDER BY c.seq), '[]') FROM "
            "(SELECT seq, actor, source, op, ref, before, after FROM changes "
            " WHERE seq > %d) c" % seq) or []

    def test_writes_are_logged(self):
        s = self.srv
        start = self.max_seq()
        w = dict(token="write")
        self.assertStatus(s.put_node("service/cl-a", {"v": 1}, **w), 201)
        self.assertStatus(s.put_node("service/cl-a", {"v": 2}, **w), 200)
        self.assertStatus(s.put_node("service/cl-b", **w), 201)
        self.assertStatus(s.put_edge("service/cl-a", "depends_on", "service/cl-b", **w), 201)
        self.assertStatus(s.put_edge("service/cl-a", "depends_on", "service/cl-b",
                                     {"port": 1}, **w), 200)
        self.assertStatus(s.delete("/v1/edges?from=service/cl-a&type=depends_on"
                                   "&to=service/cl-b", **w), 204)
        self.assertStatus(s.put_edge("service/cl-a", "depends_on", "service/cl-b", **w), 201)
        self.assertStatus(s.delete(node_path("service/cl-b"), **w), 204)

        rows = self.rows_after(start)
        seqs = [r["seq"] for r in rows]
        self.assertTrue(all(isinstance(x, int) for x in seqs), seqs)
        self.assertEqual(seqs, sorted(set(seqs)), "seq strictly increasing")
        self.assertEqual(self.srv.psql("SELECT count(*) FROM changes WHERE seq IS NULL").strip(),
                         "0", "no committed change is left without a seq")
        edge = "service/cl-a depends_on service/cl-b"
        ops = [(r["op"], r["ref"]) for r in rows]
        self.assertEqual(ops[:7], [("node.created", "service/cl-a"),
                                   ("node.updated", "service/cl-a"),
                                   ("node.created", "service/cl-b"),
                                   ("edge.created", edge),
                                   ("edge.updated", edge),
                                   ("edge.deleted", edge),
                                   ("edge.created", edge)], json.dumps(rows, indent=1)[:3000])
        self.assertEqual(sorted(ops[7:]), [("edge.deleted", edge), ("node.deleted", "service/cl-b")],
                         "deleting a node logs its edges' deletion too")
        for r in rows:
            self.assertEqual(r["source"], "api:write")
            self.assertEqual(r["actor"], "write")
            created, deleted = r["op"].endswith(".created"), r["op"].endswith(".deleted")
            self.assertEqual(r["before"] is None, created, r)
            self.assertEqual(r["after"] is None, deleted, r)
        c0, u1 = rows[0], rows[1]
        self.assertEqual(c0["after"]["ref"], "service/cl-a")
        self.assertEqual(c0["after"]["attributes"], {"v": 1})
        self.assertEqual(u1["before"]["attributes"], {"v": 1})
        self.assertEqual(u1["after"]["attributes"], {"v": 2})
        self.assertGreater(u1["after"]["version"], u1["before"]["version"])
        self.assertEqual((rows[3]["after"]["from"], rows[3]["after"]["type"], rows[3]["after"]["to"]),
                         ("service/cl-a", "depends_on", "service/cl-b"))
        self.assertEqual(rows[4]["after"]["attributes"], {"port": 1})
        self.assertEqual(rows[5]["before"]["attributes"], {"port": 1})

        # The API feed tells the same story.
        feed = self.assertStatus(s.get("/v1/changes?since=%d" % start), 200)
        self.assertEqual([(c["seq"], c["op"], c["ref"]) for c in feed["changes"]],
                         [(r["seq"], r["op"], r["ref"]) for r in rows])
        for c in feed["changes"]:
            self.assertEqual(set(c), {"seq", "at", "actor", "source", "op", "ref", "before",
                                      "after"})
            self.assertTime(c["at"], "at")
        self.assertEqual(feed["next"], seqs[-1])

    def test_rejected_writes_log_nothing(self):
        s = self.srv
        self.assertStatus(s.put_node("service/cl-r"), 201)
        start = self.max_seq()
        self.assertError(s.put(node_path("service/cl-r"), {"attributes": {}},
                               headers={"If-Match": '"999"'}), 412)
        self.assertError(s.put_node("service/cl-r", {"x": 1}, token="read"), 403)
        self.assertError(s.put_edge("service/cl-r", "depends_on", "service/cl-none"), 422)
        self.assertError(s.put(node_path("service/cl-r"), {"bogus": 1}), 400)
        self.assertEqual(self.rows_after(start), [])

    def test_concurrent_writers_reader_misses_nothing(self):
        s = self.srv
        start = self.max_seq()
        refs = ["service/cc-%d-%02d" % (w, i) for w in range(4) for i in range(15)]
        done = threading.Event()
        seen = []
        errors = []

        def writer(mine):
            try:
                for ref in mine:
                    st = s.put_node(ref, token="write")[0]
                    if st != 201:
                        errors.append((ref, st))
            except Exception as e:
                errors.append(e)

        def reader():
            since = start
            try:
                while True:
                    finished = done.is_set()
                    body = s.get("/v1/changes?since=%d&limit=7" % since)[2]
                    for c in body["changes"]:
                        seen.append((c["seq"], c["ref"]))
                    since = body["next"]
                    if not body["changes"]:
                        if finished:
                            return
                        time.sleep(0.02)
            except Exception as e:
                errors.append(e)

        rt = threading.Thread(target=reader)
        rt.start()
        ws = [threading.Thread(target=writer, args=(refs[w * 15:(w + 1) * 15],))
              for w in range(4)]
        for t in ws:
            t.start()
        for t in ws:
            t.join(60)
        done.set()
        rt.join(60)
        self.assertEqual(errors, [])
        seqs = [x[0] for x in seen]
        self.assertEqual(seqs, sorted(set(seqs)), "the feed is in seq order, each once")
        self.assertEqual(sorted(r for _, r in seen), sorted(refs),
                         "a reader following since=N saw every change")

    def test_restart_keeps_data_and_seq(self):
        s = self.srv
        node = self.assertStatus(s.put_node("service/cl-restart", {"k": "v"}), 201)
        before = self.max_seq()
        s.restart()
        got = self.assertStatus(s.get(node_path("service/cl-restart")), 200)
        self.assertEqual((got["id"], got["attributes"]), (node["id"], {"k": "v"}))
        self.assertStatus(s.put_node("service/cl-restart2"), 201)
        self.assertGreater(self.max_seq(), before)
        self.assertStatus(s.get(node_path("service/cl-restart") + "/dependents"), 200)


if __name__ == "__main__":
    unittest.main()
