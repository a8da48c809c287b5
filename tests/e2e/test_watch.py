#!/usr/bin/python3
"""Watching an answer (SPEC §5): index/wait on dependents, dependencies, owners and
graph, X-Cmdb-Index on every graph answer, and `cmdb dependents X --watch`.

- Every graph answer (dependents, dependencies, owners, graph json and dot, path,
  rootcause) carries X-Cmdb-Index: the seq it was computed at (the applied seq).
- A parked request is woken by a change of its answer (an edge into the root's blast
  radius; the health of a node a graph answer shows; a new owner up a part_of chain;
  the root's deletion → 404), and not by a change elsewhere in the map, nor by a change
  inside its read set that leaves the answer as it was: then its wait runs out and it
  gets the same answer with the current X-Cmdb-Index (newer than the one it sent).
- An index older than a change that touched the answer's nodes is answered at once
  (the answer at that index may differ); an older index whose nodes nothing has
  touched since parks; an index from the future (another server ahead) waits for this
  server to catch up, then parks.
- Two servers on one database: a write through one wakes a watcher on the other, and
  an index handed out by one is understood by the other.
- Bounds: wait > 60, index < 0 or not a number → 400 naming the parameter;
  --max-watchers parked at once, 503 beyond; a client that disconnects frees its
  watcher (cmdb_watchers gauge); SIGTERM answers parked watchers at once.
- Cost: 300 watchers parked on a root with a 2000-node blast radius, and a stream of
  unrelated changes: the server's CPU time (utime+stime from /proc) is compared with
  the same stream and no watchers. Figures are printed; the assertion is a generous
  per-change bound (re-running 300 such answers per change would cost far more).
  Then one relevant change wakes all 300.

Run: /usr/bin/python3 tests/e2e/test_watch.py
"""

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (CMDB_BIN, ServerTestCase, TwoServerTestCase, node_path,  # noqa: E402
                 require_binaries)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def metric(srv, name):
    st, _, text = srv.get("/metrics", token=None)
    m = re.search(r"^%s (\d+)$" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


class Parked:
    """One request on its own raw socket, so hundreds can be parked at once."""

    def __init__(self, srv, path, token="read"):
        self.sock = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        self.sock.sendall(("GET %s HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer %s\r\n"
                           "Connection: close\r\n\r\n" % (path, srv.token(token))).encode())
        self.data = b""

    def answered(self):
        """True once the whole reply has arrived (the server closes after it)."""
        while True:
            r, _, _ = select.select([self.sock], [], [], 0)
            if not r:
                return False
            chunk = self.sock.recv(65536)
            if not chunk:
                return True
            self.data += chunk

    def status(self):
        return int(self.data.split(b" ", 2)[1]) if self.data else None

    def close(self):
        self.sock.close()


class WatchTest(ServerTestCase):
    server_args = ("--max-watchers", "400")

    # -- helpers

    def answer(self, path, token="read", timeout=90):
        """GET path → (status, X-Cmdb-Index as int, body)."""
        resp = self.srv.get(path, token=token, timeout=timeout)
        st, h, body = resp
        self.assertIn("x-cmdb-index", h, "graph answers carry X-Cmdb-Index" + self.ctx(resp))
        return st, int(h["x-cmdb-index"]), body

    def seq(self):
        return self.srv.get("/readyz", token=None)[2]["seq"]

    def park(self, path, index, wait):
        """Starts GET path?index=&wait= in a thread; returns (thread, result dict)."""
        out = {}
        sep = "&" if "?" in path else "?"

        def run():
            t0 = time.monotonic()
            out["resp"] = self.answer("%s%sindex=%d&wait=%d" % (path, sep, index, wait))
            out["took"] = time.monotonic() - t0
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.4)  # parked by now
        return t, out

    def woken(self, t, out, within, what):
        t.join(within)
        self.assertFalse(t.is_alive(), "%s: the watcher was not woken within %.0f s"
                         % (what, within))
        return out["resp"]

    def still_parked(self, t, what, secs=1.0):
        t.join(secs)
        self.assertTrue(t.is_alive(), "%s woke the watcher" % what)

    def chain(self, prefix, n):
        """service/P0 <- P1 <- ... (Pi depends_on Pi-1): dependents of P0 are P1..Pn-1."""
        refs = ["service/%s%d" % (prefix, i) for i in range(n)]
        for r in refs:
            self.assertStatus(self.srv.put_node(r), (200, 201))
        for a, b in zip(refs[1:], refs):
            self.assertStatus(self.srv.put_edge(a, "depends_on", b), (200, 201))
        return refs

    # -- X-Cmdb-Index

    def test_index_on_every_graph_answer(self):
        a, b, c = self.chain("ix", 3)
        self.assertStatus(self.srv.put_node("team/ix-t"), (200, 201))
        self.assertStatus(self.srv.put_edge(a, "owned_by", "team/ix-t"), (200, 201))
        now = self.seq()
        paths = [node_path(a) + "/dependents", node_path(c) + "/dependencies",
                 node_path(a) + "/owners", "/v1/graph?root=%s" % a,
                 "/v1/graph?root=%s&format=dot" % a, "/v1/path?from=%s&to=%s" % (c, a)]
        for p in paths:
            st, idx, _ = self.answer(p)
            self.assertEqual(st, 200, p)
            self.assertGreaterEqual(idx, now, "%s: X-Cmdb-Index %d is older than the last "
                                    "write's seq %d" % (p, idx, now))
        resp = self.srv.post("/v1/rootcause", {"failing": [c]}, token="read")
        self.assertStatus(resp, 200)
        self.assertGreaterEqual(int(resp[1]["x-cmdb-index"]), now)

    # -- woken / not woken

    def test_woken_by_an_edge_into_the_blast_radius_not_by_others(self):
        a, b, c = self.chain("wk", 3)
        self.chain("elsewhere", 3)
        path = node_path(a) + "/dependents"
        st, idx, first = self.answer(path)
        self.assertEqual([n["ref"] for n in first["nodes"]], [b, c])
        t, out = self.park(path, idx, 30)
        # Unrelated: nodes and edges elsewhere, and a node put of an answer node that
        # leaves this answer as it was (its attributes are not part of it).
        self.assertStatus(self.srv.put_node("service/elsewhere9"), (200, 201))
        self.assertStatus(self.srv.put_edge("service/elsewhere9", "depends_on",
                                            "service/elsewhere0"), (200, 201))
        self.assertStatus(self.srv.put_node(c, attributes={"tier": 1}), (200, 201))
        self.still_parked(t, "a change elsewhere, or one that leaves the answer as it was,")
        # Relevant: something new depends on c.
        self.assertStatus(self.srv.put_node("service/wk-new"), (200, 201))
        self.assertStatus(self.srv.put_edge("service/wk-new", "depends_on", c), (200, 201))
        st, idx2, body = self.woken(t, out, 5, "an edge into the blast radius")
        self.assertEqual(st, 200)
        self.assertEqual([n["ref"] for n in body["nodes"]], [b, c, "service/wk-new"])
        self.assertGreater(idx2, idx)
        self.assertLess(out["took"], 5)

    def test_wait_runs_out_with_the_same_answer_and_a_newer_index(self):
        a, b = self.chain("ro", 2)
        path = node_path(b) + "/dependencies"
        st, idx, first = self.answer(path)
        t, out = self.park(path, idx, 2)
        self.assertStatus(self.srv.put_node("service/ro-unrelated"), (200, 201))
        st, idx2, body = self.woken(t, out, 10, "wait=2")
        self.assertEqual(st, 200)
        self.assertEqual(body, first, "the same answer when the wait runs out")
        self.assertGreater(idx2, idx, "the index is the current seq: the unrelated write")
        self.assertGreaterEqual(out["took"], 1.9, "answered before the wait ran out")

    def test_graph_woken_by_health_of_a_node_it_shows(self):
        a, b = self.chain("hl", 2)
        gpath = "/v1/graph?root=%s&depth=1" % a
        dpath = node_path(a) + "/dependents"
        _, gidx, g0 = self.answer(gpath)
        _, didx, d0 = self.answer(dpath)
        tg, og = self.park(gpath, gidx, 30)
        td, od = self.park(dpath, didx, 3)
        self.assertStatus(self.srv.put(node_path(b) + "/health", {"state": "down"}), 200)
        st, _, g1 = self.woken(tg, og, 5, "a health change of a node the graph shows")
        self.assertEqual({n["ref"]: n["health"] for n in g1["nodes"]}[b], "down")
        # dependents does not show health: the same change leaves it as it was.
        self.still_parked(td, "a health change (not part of a dependents answer)", 0.5)
        st, _, d1 = self.woken(td, od, 10, "wait=3")
        self.assertEqual(d1, d0)
        self.assertGreaterEqual(od["took"], 2.9)

    def test_reload_wakes_watchers_whose_answer_changed(self):
        """A map reload (verify ?repair=true after the database changed behind cmdbd's
        back) swaps the graph under parked watchers: their read sets named nodes of the
        old one. Each re-runs on the new map: woken when its answer changed there, kept
        parked (and answered when its wait runs out) when not."""
        a, b = self.chain("rl", 2)
        gpath = "/v1/graph?root=%s&depth=1" % a
        dpath = node_path(a) + "/dependents"
        _, gidx, _ = self.answer(gpath)
        _, didx, d0 = self.answer(dpath)
        tg, og = self.park(gpath, gidx, 30)
        td, od = self.park(dpath, didx, 4)
        # Behind cmdbd's back: no change row, so only a reload shows it.
        self.srv.psql("UPDATE nodes SET health = 'down' WHERE kind = 'service' AND name = '%s'"
                      % b.split("/", 1)[1])
        self.still_parked(tg, "a change without a change row", 0.5)
        rep = self.srv.get("/v1/admin/verify?repair=true")
        self.assertStatus(rep, 200)
        st, _, g1 = self.woken(tg, og, 15, "the reload that brought the health change")
        self.assertEqual(st, 200)
        self.assertEqual({n["ref"]: n["health"] for n in g1["nodes"]}[b], "down")
        st, _, d1 = self.woken(td, od, 15, "wait=4 across the reload")
        self.assertEqual((st, d1), (200, d0))

    def test_owners_woken_by_a_new_owner_up_the_chain(self):
        svc, sysr, team = "service/ow-svc", "system/ow-sys", "team/ow-team"
        for r in (svc, sysr, team):
            self.assertStatus(self.srv.put_node(r), (200, 201))
        self.assertStatus(self.srv.put_edge(svc, "part_of", sysr), (200, 201))
        path = node_path(svc) + "/owners"
        _, idx, o0 = self.answer(path)
        self.assertEqual(o0["owners"], [])
        t, out = self.park(path, idx, 30)
        self.assertStatus(self.srv.put_edge(sysr, "owned_by", team), (200, 201))
        st, _, o1 = self.woken(t, out, 5, "an owned_by edge on the system")
        self.assertEqual([o["ref"] for o in o1["owners"]], [team])
        self.assertEqual(o1["owners"][0]["rule"], "part_of")
        # The owner's attributes are part of the answer.
        _, idx, _ = self.answer(path)
        t, out = self.park(path, idx, 30)
        self.assertStatus(self.srv.put_node(team, attributes={"slack": "#ow"}), (200, 201))
        st, _, o2 = self.woken(t, out, 5, "the owner's attributes")
        self.assertEqual(o2["owners"][0]["attributes"], {"slack": "#ow"})

    def test_root_deleted_answers_404(self):
        a, b = self.chain("del", 2)
        path = node_path(a) + "/dependents"
        _, idx, _ = self.answer(path)
        t, out = self.park(path, idx, 30)
        self.assertStatus(self.srv.delete(node_path(a)), 204)
        st, _, body = self.woken(t, out, 5, "the root's deletion")
        self.assertEqual(st, 404)
        self.assertEqual(body["error"]["code"], "not_found")

    # -- the index a client sends

    def test_older_index(self):
        a, b = self.chain("old", 2)
        path = node_path(a) + "/dependents"
        _, idx, _ = self.answer(path)
        # Touched since idx: answered at once (the answer at idx may differ).
        self.assertStatus(self.srv.put_node("service/old-x"), (200, 201))
        self.assertStatus(self.srv.put_edge("service/old-x", "depends_on", b), (200, 201))
        t0 = time.monotonic()
        st, idx2, body = self.answer("%s?index=%d&wait=20" % (path, idx))
        self.assertLess(time.monotonic() - t0, 3, "an index older than a relevant change "
                        "must be answered at once")
        self.assertIn("service/old-x", [n["ref"] for n in body["nodes"]])
        # Untouched since idx2 (only changes elsewhere): parks.
        self.assertStatus(self.srv.put_node("service/old-elsewhere"), (200, 201))
        self.assertGreater(self.seq(), idx2)
        t, out = self.park(path, idx2, 2)
        self.still_parked(t, "an older index whose nodes nothing touched since")
        st, _, same = self.woken(t, out, 10, "wait=2")
        self.assertEqual(same, body)

    def test_future_index_waits_for_the_server(self):
        a, = self.chain("fut", 1)
        path = node_path(a) + "/dependents"
        _, idx, body = self.answer(path)
        t0 = time.monotonic()
        st, idx2, body2 = self.answer("%s?index=%d&wait=1" % (path, idx + 1000))
        took = time.monotonic() - t0
        self.assertEqual((st, body2), (200, body))
        self.assertTrue(0.9 <= took < 5, "took %.2f s" % took)

    def test_bad_parameters(self):
        a, = self.chain("bad", 1)
        for q, field in (("index=1&wait=61", "wait"), ("index=-1&wait=1", "index"),
                         ("index=x", "index"), ("index=1&wait=1.5", "wait")):
            for p in (node_path(a) + "/dependents?" + q, node_path(a) + "/owners?" + q,
                      "/v1/graph?root=%s&%s" % (a, q)):
                resp = self.srv.get(p, token="read")
                err = self.assertError(resp, 400, "bad_request", what=p)
                self.assertEqual(err["details"]["field"], field, p)
        # wait without index: nothing to compare with, answered at once.
        t0 = time.monotonic()
        self.assertEqual(self.answer(node_path(a) + "/dependents?wait=30")[0], 200)
        self.assertLess(time.monotonic() - t0, 3)

    # -- bounds and cost

    def test_disconnect_frees_watchers(self):
        a, = self.chain("dc", 1)
        path = node_path(a) + "/dependents"
        _, idx, _ = self.answer(path)
        base = metric(self.srv, "cmdb_watchers")
        conns0 = metric(self.srv, "cmdb_http_connections_open")
        ps = [Parked(self.srv, "%s?index=%d&wait=60" % (path, idx)) for _ in range(20)]
        deadline = time.monotonic() + 5
        while metric(self.srv, "cmdb_watchers") < base + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(metric(self.srv, "cmdb_watchers"), base + 20)
        for p in ps:
            p.close()
        deadline = time.monotonic() + 5
        while metric(self.srv, "cmdb_watchers") > base and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(metric(self.srv, "cmdb_watchers"), base,
                         "watchers whose client went away must be freed")
        # ... and their connections with them: the connection guard (which owns
        # evhttp's close callback) counted every one of them closed.
        deadline = time.monotonic() + 5
        while (metric(self.srv, "cmdb_http_connections_open") > conns0
               and time.monotonic() < deadline):
            time.sleep(0.05)
        self.assertLessEqual(metric(self.srv, "cmdb_http_connections_open"), conns0,
                             "connections of freed watchers must be released")

    def test_parked_watchers_cost_no_cpu(self):
        hub = "service/cpu-hub"
        n_radius, n_watchers, n_changes = 2000, 300, 150
        m = {"manifest": "cmdb/v1", "source": "e2e:watch-cpu",
             "nodes": [{"ref": hub}] + [{"ref": "service/cpu-%d" % i} for i in range(n_radius)],
             "edges": [{"from": "service/cpu-%d" % i, "type": "depends_on", "to": hub}
                       for i in range(n_radius)]}
        self.assertStatus(self.srv.post("/v1/manifests", m), (200, 201))
        path = node_path(hub) + "/dependents?limit=100000"
        _, idx, body = self.answer(path)
        self.assertEqual(body["count"], n_radius)
        pid = self.srv.proc.pid

        def stream(tag):
            for i in range(n_changes):
                r = "service/cpu-other-%s-%d" % (tag, i)
                self.assertStatus(self.srv.put_node(r), (200, 201))
            time.sleep(0.3)  # the tailer applies the last ones

        c0 = cpu_seconds(pid)
        stream("a")
        idle = cpu_seconds(pid) - c0
        _, idx, _ = self.answer(path)
        ps = [Parked(self.srv, "%s&index=%d&wait=60" % (path, idx)) for _ in range(n_watchers)]
        try:
            deadline = time.monotonic() + 10
            while (metric(self.srv, "cmdb_watchers") < n_watchers and
                   time.monotonic() < deadline):
                time.sleep(0.05)
            self.assertEqual(metric(self.srv, "cmdb_watchers"), n_watchers)
            c0 = cpu_seconds(pid)
            stream("b")
            watched = cpu_seconds(pid) - c0
            extra_ms = max(0.0, watched - idle) * 1000 / n_changes
            print("\n  server CPU for %d unrelated changes: %.3f s without watchers, %.3f s "
                  "with %d parked (%.2f ms per change extra)"
                  % (n_changes, idle, watched, n_watchers, extra_ms), file=sys.stderr)
            # Re-running 300 answers of 2000 nodes costs ~100 ms or more per change;
            # filtering by read set costs next to nothing. Timings are noisy (shared
            # machine): a generous bound.
            self.assertLess(extra_ms, 20, "parked watchers cost CPU on unrelated changes")
            woke = [p.data[:200] for p in ps if p.answered()]
            self.assertEqual(woke, [], "unrelated changes woke %d watchers" % len(woke))
            self.assertEqual(metric(self.srv, "cmdb_watchers"), n_watchers)
            # One relevant change wakes them all.
            self.assertStatus(self.srv.put_node("service/cpu-new"), (200, 201))
            self.assertStatus(self.srv.put_edge("service/cpu-new", "depends_on", hub),
                              (200, 201))
            t0 = time.monotonic()
            deadline = t0 + 20
            pending = list(ps)
            while pending and time.monotonic() < deadline:
                pending = [p for p in pending if not p.answered()]
                time.sleep(0.01)
            print("  one relevant change woke %d watchers in %.2f s"
                  % (n_watchers - len(pending), time.monotonic() - t0), file=sys.stderr)
            self.assertEqual(len(pending), 0, "%d of %d watchers not woken"
                             % (len(pending), n_watchers))
            self.assertEqual({p.status() for p in ps}, {200})
            self.assertTrue(all(b'"count":2001' in p.data for p in ps))
        finally:
            for p in ps:
                p.close()

    # -- the CLI

    def test_cli_dependents_watch(self):
        require_binaries((CMDB_BIN, "CMDB_BIN"))
        a, b = self.chain("cli", 2)
        env = dict(os.environ, CMDB_URL=self.srv.url, CMDB_TOKEN=self.srv.token("read"))
        p = subprocess.Popen([CMDB_BIN, "dependents", a, "--watch"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []

        def read():
            for line in p.stdout:
                lines.append(line)
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            def wait_for(text, secs):
                deadline = time.monotonic() + secs
                while time.monotonic() < deadline:
                    if any(text in ln for ln in lines):
                        return True
                    time.sleep(0.05)
                return False
            self.assertTrue(wait_for(b, 10), "first answer: %r" % lines)
            time.sleep(0.5)
            first = len(lines)
            self.assertStatus(self.srv.put_node("service/cli-unrelated"), (200, 201))
            time.sleep(1)
            self.assertEqual(len(lines), first, "reprinted on an unrelated change: %r" % lines)
            self.assertStatus(self.srv.put_node("service/cli-new"), (200, 201))
            self.assertStatus(self.srv.put_edge("service/cli-new", "depends_on", b), (200, 201))
            self.assertTrue(wait_for("service/cli-new", 10), "not reprinted: %r" % lines)
            self.assertEqual(sum("REF" in ln for ln in lines), 2, "two tables: %r" % lines)
            self.assertIsNone(p.poll(), "--watch keeps running")
        finally:
            p.send_signal(signal.SIGINT)
            p.wait(10)
            p.stdout.close()
            p.stderr.close()


class WatchLimitTest(ServerTestCase):
    server_args = ("--max-watchers", "3")

    def test_cap_and_shutdown(self):
        self.assertStatus(self.srv.put_node("service/cap"), (200, 201))
        st, h, _ = self.srv.get(node_path("service/cap") + "/dependents", token="read")
        path = "%s/dependents?index=%s&wait=60" % (node_path("service/cap"), h["x-cmdb-index"])
        ps = [Parked(self.srv, path) for _ in range(3)]
        deadline = time.monotonic() + 5
        while metric(self.srv, "cmdb_watchers") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(metric(self.srv, "cmdb_watchers"), 3)
        resp = self.srv.get(path, token="read")
        err = self.assertError(resp, 503, "too_many_watchers")
        self.assertEqual(err["details"]["limit"], 3)
        self.assertIn("retry-after", resp[1])
        # SIGTERM answers the parked ones at once (200, the same answer).
        t0 = time.monotonic()
        srv, self.__class__.srv = self.srv, None
        srv.stop()
        self.assertLess(time.monotonic() - t0, 8)
        for p in ps:
            deadline = time.monotonic() + 2
            while not p.answered() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertEqual(p.status(), 200)
            p.close()


class WatchTwoServersTest(TwoServerTestCase):
    """A watcher on one cmdbd is woken by a write made through another (the change
    reaches it through the log), and an index one server hands out is understood by
    the other."""

    def test_write_through_the_other_server(self):
        a, b = self.srv, self.b
        self.assertStatus(a.put_node("service/two-root"), (200, 201))
        path = node_path("service/two-root") + "/dependents"
        st, h, body = a.get(path, token="read")
        self.assertEqual(body["count"], 0)
        out = {}

        def run():
            out["resp"] = a.get("%s?index=%s&wait=30" % (path, h["x-cmdb-index"]),
                                token="read", timeout=60)
        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(0.4)
        self.assertStatus(b.put_node("service/two-dep"), (200, 201))
        self.assertStatus(b.put_edge("service/two-dep", "depends_on", "service/two-root"),
                          (200, 201))
        t.join(10)
        self.assertFalse(t.is_alive(), "a write through the other server did not wake it")
        self.assertEqual([n["ref"] for n in out["resp"][2]["nodes"]], ["service/two-dep"])
        # B's index after its own write: A (caught up or not) parks on it, since the
        # answer at that index is the answer A has or will have.
        st, hb, bb = b.get(path, token="read")
        t0 = time.monotonic()
        st, ha, ab = a.get("%s?index=%s&wait=2" % (path, hb["x-cmdb-index"]), token="read")
        self.assertEqual((st, ab), (200, bb))
        self.assertGreaterEqual(time.monotonic() - t0, 1.9, "parked until the wait ran out")


if __name__ == "__main__":
    unittest.main(verbosity=2)
