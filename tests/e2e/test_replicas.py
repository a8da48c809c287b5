#!/usr/bin/python3
"""Several cmdbd on PostgreSQL's own replication (SPEC §7, README "Running several
instances").

- MinSeq: two cmdbd on one database. Every write reply carries X-Cmdb-Seq; a read
  through the *other* instance with X-Cmdb-Min-Seq (or min_seq=) is never stale, over
  many iterations; bad values are 400s naming the field; a seq the instance cannot
  reach in 5 s is a 503 "behind" with Retry-After.
- StandbyReads: a private primary and a streaming-replication hot standby
  (pg_basebackup -R). A cmdbd with CMDB_READ_DATABASE_URL on the standby loads its map
  there, follows writes made through another instance on the primary, answers lists
  from the standby and writes to the primary. With the standby's replay delayed
  (recovery_min_apply_delay) a read without X-Cmdb-Min-Seq is stale and one with it is
  not: the header is what makes reads your own writes.
- Cluster (test_cluster.py-style, here too): see the class's docstring.

Run: /usr/bin/python3 tests/e2e/test_replicas.py   (needs CMDB_TEST_ADMIN_URL, see lib.py)
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import (PG_BIN, PrivateCluster, Server, TwoServerTestCase, free_port,  # noqa: E402
                 node_path, poll, psql, with_dbname)

ITERATIONS = 150


def seq_of(resp, what):
    st, h, body = resp
    if "x-cmdb-seq" not in h:
        raise AssertionError("%s: no X-Cmdb-Seq on a write that changed the map: %s %s %s"
                             % (what, st, h, body))
    return int(h["x-cmdb-seq"])


class MinSeq(TwoServerTestCase):
    """Two cmdbd on one database: write through one, read through the other."""

    server_name = "ryw_a"

    def test_write_here_read_there_never_stale(self):
        a, b = self.srv, self.b
        self.assertStatus(a.put_node("database/ryw-hub"), (200, 201))
        last = 0
        for i in range(ITERATIONS):
            w, r = (a, b) if i % 2 == 0 else (b, a)
            ref = "service/ryw-%d" % i
            resp = w.put_node(ref, {"i": i})
            self.assertStatus(resp, 201, "create " + ref)
            seq = seq_of(resp, "PUT " + ref)
            self.assertGreater(seq, last, "X-Cmdb-Seq grows")
            last = seq
            # The node read (from the map's images) with the header ...
            got = r.get(node_path(ref), headers={"X-Cmdb-Min-Seq": str(seq)})
            self.assertStatus(got, 200, "GET %s through the other instance, Min-Seq %d"
                              % (ref, seq))
            self.assertEqual(got[2]["attributes"], {"i": i})
            # ... and an edge, then a graph query with the query parameter.
            resp = w.put_edge(ref, "depends_on", "database/ryw-hub")
            self.assertStatus(resp, (200, 201), "edge from " + ref)
            seq = seq_of(resp, "PUT edge")
            got = r.get(node_path("database/ryw-hub") + "/dependents?limit=100000&min_seq=%d"
                        % seq)
            self.assertStatus(got, 200, "dependents through the other instance, min_seq")
            self.assertIn(ref, {n["ref"] for n in got[2]["nodes"]},
                          "iteration %d: the other instance answered without its own "
                          "writer's edge (seq %d)" % (i, seq))
            self.assertGreaterEqual(int(got[1]["x-cmdb-index"]), seq)
        # A list (a database read) waits the same way.
        got = b.get("/v1/nodes?kind=service&q=ryw-&limit=500&min_seq=%d" % last)
        self.assertStatus(got, 200)
        self.assertEqual(len([n for n in got[2]["items"] if n["ref"][12:].isdigit()]),
                         ITERATIONS)

    def test_manifest_reply_seq_and_no_op(self):
        a, b = self.srv, self.b
        m = {"manifest": "cmdb/v1", "source": "e2e:ryw-m", "generation": 1,
             "nodes": [{"ref": "service/ryw-m"}],
             "edges": [{"from": "service/ryw-m", "type": "depends_on",
                        "to": "database/ryw-mdb"}]}
        resp = a.post("/v1/manifests", m)
        self.assertStatus(resp, 200)
        seq = seq_of(resp, "manifest")
        got = b.get(node_path("database/ryw-mdb") + "/dependents",
                    headers={"X-Cmdb-Min-Seq": str(seq)})
        self.assertEqual([n["ref"] for n in got[2]["nodes"]], ["service/ryw-m"], self.ctx(got))
        # The same manifest again changes nothing: no seq to wait for.
        resp = a.post("/v1/manifests", m)
        self.assertStatus(resp, 200)
        self.assertNotIn("x-cmdb-seq", resp[1], "a no-op carries no X-Cmdb-Seq")

    def test_bad_values_and_timeout(self):
        b = self.b
        for path, headers, field in (
                ("/v1/nodes?min_seq=x", None, "min_seq"),
                ("/v1/nodes?min_seq=-1", None, "min_seq"),
                ("/v1/nodes?min_seq=1&min_seq=2", None, "min_seq"),
                ("/v1/nodes", {"X-Cmdb-Min-Seq": "12abc"}, "X-Cmdb-Min-Seq"),
                (node_path("service/x") + "/dependents?min_seq=99999999999999999999", None,
                 "min_seq")):
            r = b.get(path, headers=headers)
            self.assertError(r, 400, "bad_request", (field,), "%s %s" % (path, headers))
            self.assertEqual(r[2]["error"]["details"]["field"], field)
        # Reached at once: answered as without it.
        self.assertStatus(b.get("/v1/nodes?limit=1&min_seq=0"), 200)
        # A seq nobody has committed: 503 after the 5 s the SPEC allows, never sooner.
        far = int(b.get("/readyz", token=None)[2]["seq"]) + 10**9
        t0 = time.monotonic()
        r = b.get(node_path("service/x") + "/dependents", headers={"X-Cmdb-Min-Seq": str(far)})
        took = time.monotonic() - t0
        self.assertError(r, 503, "behind", (), "a seq not reached")
        self.assertEqual(r[1].get("retry-after"), "1")
        self.assertEqual(r[2]["error"]["details"]["min_seq"], far)
        self.assertGreaterEqual(took, 4.5)
        self.assertLess(took, 8)


# --------------------------------------------------------------------------- replication


class Standby(PrivateCluster):
    """A hot standby of primary (a PrivateCluster), made with pg_basebackup -R: it
    streams the primary's WAL through the primary's unix socket."""

    def __init__(self, primary):
        super().__init__()
        self.primary = primary

    def init(self):
        self._run(os.path.join(PG_BIN, "pg_basebackup"), "-D", self.data, "-R", "-X", "stream",
                  "-c", "fast", "-h", self.primary.dir, "-p", str(self.primary.port),
                  "-U", self.user or os.environ.get("USER", "postgres"))
        return self

    def promote(self):
        self._run(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-w", "-t", "30", "promote")

    def sql(self, text):
        return psql(self.conninfo, text)

    def set_apply_delay(self, ms):
        """recovery_min_apply_delay: the standby replays each commit ms late."""
        self.sql("ALTER SYSTEM SET recovery_min_apply_delay = '%dms'" % ms)
        self.sql("SELECT pg_reload_conf()")
        poll(lambda: self.sql("SHOW recovery_min_apply_delay").strip(),
             lambda v: v == ("%dms" % ms if ms else "0"), 5, 0.05)

    def wait_replayed(self, primary_sql_conninfo, seconds=10):
        """Until the standby has replayed everything the primary has written so far."""
        lsn = psql(primary_sql_conninfo, "SELECT pg_current_wal_lsn()").strip()
        r = poll(lambda: self.sql("SELECT pg_last_wal_replay_lsn() >= '%s'::pg_lsn" % lsn).strip(),
                 lambda v: v == "t", seconds, 0.05)
        if r != "t":
            raise AssertionError("the standby did not replay up to %s within %d s" % (lsn, seconds))


def replicated_pair():
    """A started primary and a started hot standby of it; destroy both when done."""
    if shutil.which("runuser") is None and os.geteuid() == 0:
        raise unittest.SkipTest("runuser is needed to run PostgreSQL as postgres")
    primary = PrivateCluster().init()
    try:
        primary.start()
        standby = Standby(primary).init()
        standby.start()
    except BaseException:
        primary.destroy()
        raise
    return primary, standby


def serve(name, primary_srv, env):
    """Another cmdbd on primary_srv's database, tokens included, with env added."""
    s = Server(name, dict(env), (), primary_srv.admin_url)
    s.dbname, s.db_url = primary_srv.dbname, primary_srv.db_url
    s._tokens = dict(primary_srv._tokens)
    s._spawn(free_port())
    return s


def write_url(primary, standby, dbname):
    """CMDB_DATABASE_URL listing both clusters: libpq connects to whichever is the
    primary (target_session_attrs=read-write)."""
    user = primary.user or os.environ.get("USER", "postgres")
    return ("host=%s,%s port=%d,%d dbname=%s user=%s target_session_attrs=read-write "
            "connect_timeout=2" % (primary.dir, standby.dir, primary.port, standby.port, dbname,
                                   user))


class StandbyReads(unittest.TestCase):
    """A cmdbd reading from a hot standby (CMDB_READ_DATABASE_URL) beside one on the
    primary."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.primary, cls.standby = replicated_pair()
        cls.a = cls.b = None
        try:
            cls.a = Server.start("sb_a", admin=cls.primary.conninfo)
            cls.standby.wait_replayed(cls.primary.conninfo)
            cls.read_url = with_dbname(cls.standby.conninfo, cls.a.dbname)
            cls.b = serve("sb_b", cls.a, {"CMDB_READ_DATABASE_URL": cls.read_url,
                                          "CMDB_LOG_LEVEL": "debug"})
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            for s in (cls.b, cls.a):
                if s is not None:
                    s.stop()
        finally:
            for s in (cls.b, cls.a):
                if s is not None:
                    s.kill()
            cls.standby.destroy()
            cls.primary.destroy()
        super().tearDownClass()

    def ok(self, resp, status=200, what=""):
        st, h, body = resp
        want = status if isinstance(status, tuple) else (status,)
        self.assertIn(st, want, "%s: got %s %s\nlog of b:\n%s" % (what, st, body, self.b.log_tail(20)))
        return body

    def test_reads_come_from_the_standby(self):
        a, b = self.a, self.b
        # b's connections for the map, the log and the lists are on the standby ...
        n = int(self.standby.sql("SELECT count(*) FROM pg_stat_activity "
                                 "WHERE application_name = 'cmdbd' AND datname = '%s'"
                                 % a.dbname).strip())
        self.assertGreaterEqual(n, 1, "cmdbd connections on the standby")
        # ... /readyz speaks for reads, ?for=write for the primary.
        body = self.ok(b.get("/readyz", token=None))
        self.assertEqual(body["for"], "read")
        body = self.ok(b.get("/readyz?for=write", token=None))
        self.assertEqual(body["for"], "write")
        self.ok(b.get("/readyz?for=both", token=None), 400)
        # /metrics shows the read pool beside the main one.
        st, _, text = b.get("/metrics", token=None)
        self.assertEqual(st, 200)
        self.assertRegex(text, r'cmdb_db_read_connections\{state="up"\} [1-9]')
        self.assertRegex(text, r'cmdb_db_read_queries_total [1-9]')
        self.assertNotIn("cmdb_db_read_", a.get("/metrics", token=None)[2])
        # The tailer's statements run on a standby: the sightings poll (pg_stat_activity,
        # pg_last_xact_replay_timestamp) every second, the log reads.
        time.sleep(2.2)
        with open(b.log_path) as f:
            log = f.read()
        for bad in ("event=seen_poll_failed", "event=tail_failed", "level=error"):
            self.assertNotIn(bad, log)

    def test_follows_writes_made_elsewhere(self):
        a, b = self.a, self.b
        m = {"manifest": "cmdb/v1", "source": "e2e:sb-follow", "generation": 1,
             "nodes": [{"ref": "service/sb-%d" % i} for i in range(20)],
             "edges": [{"from": "service/sb-%d" % i, "type": "depends_on",
                        "to": "database/sb-main"} for i in range(20)]}
        self.ok(a.post("/v1/manifests", m))
        want = {"service/sb-%d" % i for i in range(20)}
        t0 = time.monotonic()
        got = poll(lambda: b.get(node_path("database/sb-main") + "/dependents"),
                   lambda r: r[0] == 200 and {n["ref"] for n in r[2]["nodes"]} == want, 5, 0.02)
        lag = time.monotonic() - t0
        self.assertEqual({n["ref"] for n in self.ok(got)["nodes"]}, want,
                         "b (reading the standby) follows writes made on the primary")
        print("standby follow lag (manifest through a, seen through b): %.0f ms" % (lag * 1000))
        self.assertLess(lag, 2.0)
        # A list on b (from the standby) has them; a write through b goes to the primary
        # and b reads it back at once.
        body = self.ok(b.get("/v1/nodes?kind=service&q=sb-&limit=100"))
        self.assertEqual({n["ref"] for n in body["items"]}, want)
        resp = b.put_node("service/sb-via-b", {"x": 1})
        self.ok(resp, 201, "write through b")
        self.ok(b.get(node_path("service/sb-via-b")), 200, "b reads its own write at once")
        self.assertEqual(a.psql("SELECT count(*) FROM nodes WHERE ref = 'service/sb-via-b'").strip(),
                         "1")

    def test_min_seq_makes_the_difference(self):
        """With the standby's replay 1 s late, b answers stale without the header and
        fresh with it, every time."""
        a, b = self.a, self.b
        self.standby.set_apply_delay(1000)
        try:
            stale = fresh = 0
            for i in range(4):
                ref = "service/sb-delay-%d" % i
                seq = seq_of(a.put_node(ref), "PUT " + ref)
                without = b.get(node_path(ref))
                if without[0] == 404:
                    stale += 1
                t0 = time.monotonic()
                got = b.get(node_path(ref), headers={"X-Cmdb-Min-Seq": str(seq)})
                self.ok(got, 200, "with X-Cmdb-Min-Seq %d" % seq)
                fresh += 1
                waited = time.monotonic() - t0
                self.assertGreater(waited, 0.3, "it waited for the standby")
            self.assertEqual(stale, 4, "without the header b answered from a map the "
                             "delayed standby had not brought up to date")
            # A list with min_seq waits for the map, then reads the standby, which has it.
            seq = seq_of(a.put_node("service/sb-delay-list"), "PUT")
            body = self.ok(b.get("/v1/nodes?kind=service&q=sb-delay-&limit=100&min_seq=%d" % seq))
            self.assertIn("service/sb-delay-list", {n["ref"] for n in body["items"]})
        finally:
            self.standby.set_apply_delay(0)


# --------------------------------------------------------------------------- the cluster

HAPROXY_CFG = """global
    stats socket {dir}/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 500ms
    timeout client 30s
    timeout server 30s
    timeout check 1s
    # A request whose connection failed, or whose server closed without answering
    # (a killed cmdbd), is sent again, to the other instance (redispatch).
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-buffer-request
frontend fe
    bind 127.0.0.1:{port}
    default_backend cmdbd
backend cmdbd
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 200ms fall 2 rise 2
    server a 127.0.0.1:{pa} check
    server b 127.0.0.1:{pb} check
"""


def http_call(port, method, path, body=None, token=None, timeout=10, headers=None):
    """One request on a fresh connection: (status, headers, parsed body); status 0 when
    the connection failed."""
    import http.client
    hdrs = {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    if token:
        hdrs["Authorization"] = "Bearer " + token
    hdrs.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        h = {k.lower(): v for k, v in resp.getheaders()}
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, h, parsed
    except (OSError, http.client.HTTPException) as e:
        return 0, {}, repr(e)
    finally:
        conn.close()


class HAProxy:
    def __init__(self, ports):
        self.dir = os.path.join(os.path.dirname(ports["log"]), "haproxy")
        os.makedirs(self.dir, exist_ok=True)
        self.port = free_port()
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(dir=self.dir, port=self.port, pa=ports["a"], pb=ports["b"]))
        self.log = open(os.path.join(self.dir, "haproxy.log"), "ab")
        self.proc = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", cfg],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)

    def stats(self):
        """Per-server counters from the stats socket: {name: {field: value}}."""
        import socket
        out = b""
        with socket.socket(socket.AF_UNIX) as so:
            so.connect(os.path.join(self.dir, "haproxy.sock"))
            so.sendall(b"show stat\n")
            while True:
                chunk = so.recv(65536)
                if not chunk:
                    break
                out += chunk
        lines = out.decode().splitlines()
        head = lines[0].lstrip("# ").split(",")
        rows = {}
        for line in lines[1:]:
            if line:
                row = dict(zip(head, line.split(",")))
                rows[row["pxname"] + "/" + row["svname"]] = row
        return rows

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Cluster(unittest.TestCase):
    """Primary + hot standby + two cmdbd + HAProxy health-checking /readyz, on
    loopback. Client threads run a steady mix of manifests and graph reads through
    HAProxy while (1) one cmdbd is killed (SIGKILL) and restarted, then (2) the
    primary is stopped and the standby promoted (pg_ctl promote): writes resume
    through the multi-host CMDB_DATABASE_URL (target_session_attrs=read-write)
    without restarting any cmdbd, and reads — served from the maps, whose /readyz
    speaks for the standby they read — never fail. At the end every acknowledged
    manifest is in both maps and both answer identically. The failed requests of
    each phase are counted and printed."""

    def setUp(self):
        if shutil.which("haproxy") is None:
            self.skipTest("haproxy is not installed (cmdbd/dev/deps.sh test installs it)")
        self.cleanups = []
        self.primary, self.standby = replicated_pair()
        self.addCleanup(self.primary.destroy)
        self.addCleanup(self.standby.destroy)
        setup = Server.start("cl_setup", admin=self.primary.conninfo)
        setup.stop()
        self.standby.wait_replayed(self.primary.conninfo)
        env = {
            "CMDB_DATABASE_URL": write_url(self.primary, self.standby, setup.dbname),
            "CMDB_READ_DATABASE_URL": with_dbname(self.standby.conninfo, setup.dbname),
        }
        self.a = serve("cl_a", setup, env)
        self.addCleanup(self.a.kill)
        self.b = serve("cl_b", setup, env)
        self.addCleanup(self.b.kill)
        self.token = setup.token("write")
        self.ha = HAProxy({"a": self.a.port, "b": self.b.port, "log": self.a.log_path})
        self.addCleanup(self.ha.stop)
        r = poll(lambda: http_call(self.ha.port, "GET", "/readyz"),
                 lambda r: r[0] == 200, 10, 0.1)
        self.assertEqual(r[0], 200, "HAProxy answers /readyz: %s" % (r,))

    def test_kill_restart_and_failover(self):
        port, token = self.ha.port, self.token
        phase = ["steady"]
        stop = threading.Event()
        lock = threading.Lock()
        results = []     # (phase, kind, status)
        acked = {}       # ref -> seq of the acknowledging reply
        st, h, _ = http_call(port, "PUT", node_path("database/cl-hub"), {}, token)
        self.assertEqual(st, 201)
        hub_seq = h["x-cmdb-seq"]  # readers read their own write of the hub (SPEC §7)

        def record(kind, st):
            with lock:
                results.append((phase[0], kind, st))

        def writer(w):
            k = 0
            while not stop.is_set():
                ref = "service/cl-w%d-%d" % (w, k)
                m = {"manifest": "cmdb/v1", "source": "e2e:cl-w%d-%d" % (w, k),
                     "generation": 1, "nodes": [{"ref": ref}],
                     "edges": [{"from": ref, "type": "depends_on", "to": "database/cl-hub"}]}
                while not stop.is_set():
                    st, h, body = http_call(port, "POST", "/v1/manifests", m, token)
                    record("write", st)
                    if st == 200:
                        with lock:
                            acked[ref] = int(h.get("x-cmdb-seq", 0))
                        break
                    time.sleep(0.1)  # the client's own retry: the same manifest again
                k += 1
                time.sleep(0.02)

        def reader(n):
            paths = [node_path("database/cl-hub") + "/dependents?limit=100000",
                     "/v1/graph?root=database/cl-hub&depth=1",
                     node_path("database/cl-hub")]
            i = n
            while not stop.is_set():
                st, _, _ = http_call(port, "GET", paths[i % len(paths)], None, token,
                                     headers={"X-Cmdb-Min-Seq": hub_seq})
                record("read", st)
                i += 1
                time.sleep(0.01)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
        threads += [threading.Thread(target=reader, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        timings = {}
        try:
            time.sleep(2)
            # (1) One cmdbd is killed and, a moment later, started again.
            phase[0] = "kill"
            self.a.kill()
            time.sleep(1.5)
            t0 = time.monotonic()
            self.a._spawn(self.a.port)
            timings["restart to ready"] = time.monotonic() - t0
            time.sleep(1.5)
            # (2) Failover: the primary stops, the standby is promoted.
            phase[0] = "failover"
            with lock:
                before = len(acked)
            t0 = time.monotonic()
            self.primary.stop("fast")
            self.standby.promote()
            timings["promote"] = time.monotonic() - t0
            while time.monotonic() - t0 < 30:
                with lock:
                    if len(acked) > before + 2:
                        break
                time.sleep(0.05)
            timings["writes resumed after"] = time.monotonic() - t0
            # Each instance's write pool reconnects on its own back-off (at most 5 s):
            # the failover ends when both say they take writes.
            for s in (self.a, self.b):
                poll(lambda: s.get("/readyz?for=write", token=None),
                     lambda r: r[0] == 200, 30 - (time.monotonic() - t0), 0.05)
            timings["both take writes after"] = time.monotonic() - t0
            phase[0] = "after"
            time.sleep(2)
        finally:
            stop.set()
            for t in threads:
                t.join(30)

        counts = {}
        for ph, kind, st in results:
            c = counts.setdefault((ph, kind), {"ok": 0, "failed": {}})
            if 200 <= st < 300:
                c["ok"] += 1
            else:
                c["failed"][st] = c["failed"].get(st, 0) + 1
        stats = self.ha.stats()
        print("\ncluster test: requests through HAProxy by phase")
        for (ph, kind), c in sorted(counts.items()):
            print("  %-9s %-5s ok=%-5d failed=%s" % (ph, kind, c["ok"], c["failed"] or 0))
        print("  HAProxy retries=%s redispatches=%s (a), %s/%s (b)"
              % (stats["cmdbd/a"]["wretr"], stats["cmdbd/a"]["wredis"],
                 stats["cmdbd/b"]["wretr"], stats["cmdbd/b"]["wredis"]))
        print("  " + ", ".join("%s %.2f s" % kv for kv in timings.items()))

        self.assertLess(timings["both take writes after"], 30, "writes resumed after the "
                        "promotion without restarting cmdbd")
        for (ph, kind), c in counts.items():
            if kind == "read":
                self.assertEqual(c["failed"], {}, "reads through HAProxy in phase %s" % ph)
            elif ph != "failover":
                self.assertEqual(c["failed"], {}, "writes through HAProxy in phase %s "
                                 "(HAProxy retries a killed instance's requests)" % ph)
        for ph in ("steady", "kill", "failover", "after"):
            self.assertGreater(counts.get((ph, "read"), {"ok": 0})["ok"], 0, ph)

        # Every acknowledged manifest is in both maps, and they answer alike.
        top = max(acked.values())
        answers = []
        for s in (self.a, self.b):
            st, h, body = s.get(node_path("database/cl-hub") + "/dependents?limit=100000",
                                headers={"X-Cmdb-Min-Seq": str(top)}, token="write")
            self.assertEqual(st, 200, body)
            got = {n["ref"] for n in body["nodes"]}
            self.assertEqual(set(acked) - got, set(), "acknowledged manifests missing from "
                             "the map of " + s.name)
            st, _, graph = s.get("/v1/graph?root=database/cl-hub&depth=2&min_seq=%d" % top,
                                 token="write")
            self.assertEqual(st, 200)
            answers.append((got, graph))
        self.assertEqual(answers[0], answers[1], "both instances answer identically")
        stored = set(psql(with_dbname(self.standby.conninfo, self.a.dbname),
                          "SELECT ref FROM nodes WHERE ref LIKE 'service/cl-w%'").split())
        self.assertEqual(answers[0][0], stored, "the maps hold what the new primary holds")
        for s in (self.a, self.b):
            s.stop()



class LossyFailover(unittest.TestCase):
    """Asynchronous replication can lose the primary's last commits in a failover: the
    promoted standby's change log then ends before what a map applied, and its next
    changes reuse those seqs. The map must notice and reload, or it would keep the
    lost nodes and skip the new rows for ever."""

    def test_map_reloads_when_the_log_goes_back(self):
        primary, standby = replicated_pair()
        self.addCleanup(primary.destroy)
        self.addCleanup(standby.destroy)
        setup = Server.start("lossy_setup", admin=primary.conninfo)
        setup.stop()
        standby.wait_replayed(primary.conninfo)
        a = serve("lossy_a", setup, {"CMDB_DATABASE_URL": write_url(primary, standby,
                                                                    setup.dbname)})
        self.addCleanup(a.kill)
        self.assertEqual(a.put_node("service/kept")[0], 201)
        standby.wait_replayed(primary.conninfo)
        # The standby stops receiving: what follows exists on the primary only.
        standby.sql("ALTER SYSTEM SET primary_conninfo = ''")
        standby.sql("SELECT pg_reload_conf()")
        poll(lambda: standby.sql("SELECT count(*) FROM pg_stat_wal_receiver").strip(),
             lambda v: v == "0", 10, 0.05)
        lost = a.put_node("service/lost")
        self.assertEqual(lost[0], 201)
        lost_seq = seq_of(lost, "PUT service/lost")
        primary.stop("immediate")
        standby.promote()
        # Writes resume on the promoted standby; the next change reuses a lost seq.
        r = poll(lambda: a.put_node("service/after"), lambda r: r[0] == 201, 20, 0.2)
        self.assertEqual(r[0], 201, "a write after the failover: %s\n%s" % (r, a.log_tail()))
        self.assertLessEqual(seq_of(r, "PUT service/after"), lost_seq,
                             "the promoted standby reuses the lost seqs (the premise)")
        r = poll(lambda: a.get(node_path("service/after")), lambda r: r[0] == 200, 10, 0.1)
        self.assertEqual(r[0], 200, "the map has the new node\n" + a.log_tail())
        self.assertEqual(a.get(node_path("service/lost"))[0], 404,
                         "the map dropped the node the failover lost")
        self.assertEqual(a.get(node_path("service/kept"))[0], 200)
        with open(a.log_path) as f:
            self.assertIn("event=change_log_behind_map", f.read())
        a.stop()



class ReadyGrace(unittest.TestCase):
    """--ready-grace: while the read database does not answer, /readyz stays 200 (the
    map answers reads from memory) until that long after it was last reached, then
    503; ?for=write is 503 at once. Without it /readyz is 503 at once."""

    def test_grace_then_unready(self):
        cluster = PrivateCluster().init()
        self.addCleanup(cluster.destroy)
        cluster.start()
        a = Server.start("grace_a", {"CMDB_READY_GRACE": "4s"}, admin=cluster.conninfo)
        self.addCleanup(a.kill)
        b = serve("grace_b", a, {})
        self.addCleanup(b.kill)
        m = {"manifest": "cmdb/v1", "source": "e2e:grace",
             "edges": [{"from": "service/g", "type": "depends_on", "to": "database/g"}]}
        self.assertEqual(a.post("/v1/manifests", m)[0], 200)
        time.sleep(1.2)  # a sightings poll has reached the database since
        cluster.stop("fast")
        t0 = time.monotonic()
        r = a.get("/readyz", token=None)
        self.assertEqual(r[0], 200, r)
        self.assertEqual(r[2]["database"], "unavailable")
        self.assertEqual(a.get("/readyz?for=write", token=None)[0], 503)
        self.assertEqual(b.get("/readyz", token=None)[0], 503, "no grace: 503 at once")
        deps = a.get(node_path("database/g") + "/dependents")
        self.assertEqual((deps[0], [n["ref"] for n in deps[2]["nodes"]]),
                         (200, ["service/g"]), "graph reads from memory")
        r = poll(lambda: a.get("/readyz", token=None), lambda r: r[0] == 503, 10, 0.1)
        waited = time.monotonic() - t0
        self.assertEqual(r[0], 503, "unready once the grace ran out")
        self.assertGreater(waited, 2.0)
        self.assertLess(waited, 6.0)
        a.stop()
        b.stop()



PGBOUNCER_INI = """[databases]
* = host={pgdir} port={pgport} user={user}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = any
pool_mode = session
max_client_conn = 200
default_pool_size = 40
server_reset_query = DISCARD ALL
logfile = {dir}/pgbouncer.log
pidfile = {dir}/pgbouncer.pid
"""


class PgBouncer(unittest.TestCase):
    """Two cmdbd behind pgbouncer (Debian's 1.18) in session mode, the mode that works:
    cmdbd prepares its statements once per connection and keeps its connections (and
    the LISTEN one) for their lifetime, which transaction and statement pooling break
    (1.18 does not carry prepared statements across server connections). Writes,
    reads, lists, the change log and read-your-writes across the two work as on a
    direct connection."""

    def test_session_pooling(self):
        if shutil.which("pgbouncer") is None:
            self.skipTest("pgbouncer is not installed (cmdbd/dev/deps.sh test installs it)")
        cluster = PrivateCluster().init()
        self.addCleanup(cluster.destroy)
        cluster.start()
        setup = Server.start("bouncer_setup", admin=cluster.conninfo)
        setup.stop()
        d = os.path.join(cluster.dir, "bouncer")
        os.makedirs(d)
        port = free_port()
        user = cluster.user or os.environ.get("USER", "postgres")
        ini = os.path.join(d, "pgbouncer.ini")
        with open(ini, "w") as f:
            f.write(PGBOUNCER_INI.format(pgdir=cluster.dir, pgport=cluster.port, user=user,
                                         port=port, dir=d))
        argv = [shutil.which("pgbouncer"), ini]
        if cluster.user:  # pgbouncer will not run as root
            shutil.chown(d, cluster.user)
            argv = ["runuser", "-u", cluster.user, "--"] + argv
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)

        def stop_bouncer():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.addCleanup(stop_bouncer)
        url = "host=127.0.0.1 port=%d dbname=%s user=%s" % (port, setup.dbname, user)
        console = "host=127.0.0.1 port=%d dbname=pgbouncer user=%s" % (port, user)
        r = poll(lambda: subprocess.run(["psql", "-X", "-A", "-t", "-d", url, "-c", "SELECT 1"],
                                        capture_output=True, text=True).stdout.strip(),
                 lambda v: v == "1", 10, 0.1)
        self.assertEqual(r, "1", "pgbouncer answers")
        a = serve("bouncer_a", setup, {"CMDB_DATABASE_URL": url})
        self.addCleanup(a.kill)
        b = serve("bouncer_b", setup, {"CMDB_DATABASE_URL": url})
        self.addCleanup(b.kill)
        clients = psql(console, "SHOW CLIENTS")
        self.assertGreaterEqual(clients.count("|%s|" % setup.dbname), 2 * (4 + 1),
                                "both instances' pools and LISTEN connections come through "
                                "pgbouncer:\n" + clients)
        for i in range(30):
            w, r = (a, b) if i % 2 == 0 else (b, a)
            m = {"manifest": "cmdb/v1", "source": "e2e:bouncer-%d" % i,
                 "edges": [{"from": "service/bnc-%d" % i, "type": "depends_on",
                            "to": "database/bnc"}]}
            resp = w.post("/v1/manifests", m)
            self.assertEqual(resp[0], 200, resp)
            seq = seq_of(resp, "manifest")
            got = r.get(node_path("database/bnc") + "/dependents?limit=1000&min_seq=%d" % seq)
            self.assertIn("service/bnc-%d" % i, {n["ref"] for n in got[2]["nodes"]})
        self.assertEqual(len(b.get("/v1/nodes?kind=service&limit=100")[2]["items"]), 30)
        self.assertEqual(b.get("/v1/changes?since=0&limit=5")[0], 200)
        self.assertEqual(a.get("/readyz?for=write", token=None)[0], 200)
        a.stop()
        b.stop()


if __name__ == "__main__":
    unittest.main()
