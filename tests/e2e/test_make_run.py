#!/usr/bin/env python3
"""`make run` (cmdbd/dev/run.sh): the server dies with its wrapper, however it dies.

The real script, and the real `make run`, serve a fresh database on the throwaway
cluster (CMDB_DATABASE_URL) from a temporary state directory (CMDB_STATE_DIR: the token
goes there, never to the repository's .cmdb/), with the cmdbd under test
(CMDB_RUN_CMDBD: no package check, no build). One test lets run.sh start its own
PostgreSQL cluster, in the temporary directory, and stop it.

This process is a child subreaper (PR_SET_CHILD_SUBREAPER): a server orphaned by its
killed wrapper becomes our child, so we see how it ended, and we kill it if it lives on.
"""
import ctypes
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

PR_SET_CHILD_SUBREAPER = 36
SLOW = float(os.environ.get("CK_TIMEOUT_MULTIPLIER") or 1)
READY_S = 60 * SLOW   # migrate, token, serve (a new cluster: initdb too)
GONE_S = 5 * SLOW     # the "within a few seconds"


def descendants(pid):
    """Pids of pid's descendants (from /proc: ppid is field 4 of /proc/PID/stat)."""
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d, "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def alive(pid):
    """Running (not gone, not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] not in (b"Z", b"X")


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@unittest.skipUnless(shutil.which("setpriv"), "setpriv (util-linux) is not installed")
class MakeRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        lib.admin_url()
        lib.require_binaries((lib.CMDBD_BIN, "CMDBD_BIN"))
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            raise unittest.SkipTest("prctl(PR_SET_CHILD_SUBREAPER) failed")
        cls.repo_state = os.path.join(lib.REPO, ".cmdb")
        cls.repo_state_before = cls._snapshot(cls.repo_state)

    @staticmethod
    def _snapshot(path):
        try:
            return sorted((e.name, e.stat().st_mtime_ns) for e in os.scandir(path))
        except OSError:
            return None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cmdb-make-run-")
        os.chmod(self.tmp, 0o755)  # the postgres user makes a cluster in here
        self.state = os.path.join(self.tmp, "state")
        self.port = lib.free_port()
        self.procs = []
        self.own_cluster = False

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for pid in self._orphans():
            os.kill(pid, signal.SIGKILL)
        self._reap(1.0)
        if self.own_cluster:
            subprocess.run(["sh", os.path.join(lib.REPO, "cmdbd/dev/pgcluster.sh"), "destroy",
                            self.state], capture_output=True, timeout=60)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.assertEqual(self._snapshot(self.repo_state), self.repo_state_before,
                         "the repository's .cmdb/ was touched")

    def _orphans(self):
        return [p for p in descendants(os.getpid()) if alive(p)
                and not any(p == q.pid for q in self.procs)]

    def _reap(self, seconds):
        """Reap children (orphans we inherited included) for up to seconds; returns
        {pid: wait status}."""
        out, end = {}, time.monotonic() + seconds
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return out
            if pid != 0:
                out[pid] = status
                continue
            if time.monotonic() > end:
                return out
            time.sleep(0.05)

    def start(self, argv, database=True):
        env = dict(os.environ, CMDB_STATE_DIR=self.state, CMDB_RUN_CMDBD=lib.CMDBD_BIN,
                   CMDB_LISTEN="127.0.0.1:%d" % self.port, MAKEFLAGS="", MAKELEVEL="")
        env.pop("CMDB_DATABASE_URL", None)
        if database:
            dbname = "e2e_make_run_%d_%d" % (os.getpid(), self.port)
            lib.psql(lib.admin_url(), 'CREATE DATABASE "%s"' % dbname)
            env["CMDB_DATABASE_URL"] = lib.with_dbname(lib.admin_url(), dbname)
        else:
            self.own_cluster = True
        log = open(os.path.join(self.tmp, "wrapper.log"), "wb")
        self.addCleanup(log.close)
        p = subprocess.Popen(argv, cwd=lib.REPO, env=env, stdin=subprocess.DEVNULL,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(p)
        return p

    def wait_serving(self, wrapper):
        """The serving cmdbd's pid, once /readyz answers 200."""
        end = time.monotonic() + READY_S
        while time.monotonic() < end:
            if wrapper.poll() is not None:
                self.fail("the wrapper exited (%d) before serving; its output:\n%s"
                          % (wrapper.returncode, self.output()))
            servers = [p for p in descendants(wrapper.pid)
                       if b"serve" in cmdline(p) and b"--listen" in cmdline(p)]
            if servers and port_open(self.port) and self.get("/readyz") == 200:
                return servers[0]
            time.sleep(0.1)
        self.fail("no server on port %d within %.0f s; output:\n%s"
                  % (self.port, READY_S, self.output()))

    def get(self, path, token=None):
        """The status of GET path (0 when there is no answer)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"Authorization": "Bearer " + token}
                         if token else {})
            return conn.getresponse().status
        except OSError:
            return 0
        finally:
            conn.close()

    def output(self):
        with open(os.path.join(self.tmp, "wrapper.log"), errors="replace") as f:
            return lib.clip(f.read(), 8000, 0.2)

    def assertGone(self, pid, what):
        """pid exits within GONE_S (reaped here, as its subreaper) and the port closes;
        returns its wait status."""
        end = time.monotonic() + GONE_S
        status = None
        while time.monotonic() < end and (status is None or port_open(self.port)):
            status = self._reap(0.1).get(pid, status)
            if status is None and not alive(pid):
                status = 0  # reaped by someone else
        self.assertIsNotNone(status, "cmdbd (pid %d) still runs %.0f s after %s; output:\n%s"
                             % (pid, GONE_S, what, self.output()))
        self.assertFalse(port_open(self.port), "port %d still open after %s" % (self.port, what))
        return status

    def test_sigkill_of_run_sh_stops_the_server(self):
        wrapper = self.start(["bash", "cmdbd/dev/run.sh"])
        server = self.wait_serving(wrapper)
        with open(os.path.join(self.state, "admin.token")) as f:
            self.assertEqual(self.get("/v1/nodes", f.read().strip()), 200,
                             "the admin token run.sh wrote to CMDB_STATE_DIR works")
        wrapper.kill()
        wrapper.wait()
        status = self.assertGone(server, "SIGKILL of run.sh")
        # SIGTERM from the kernel: a graceful shutdown, exit 0.
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
                        "cmdbd ended with wait status %#x, not a clean exit" % status)

    def test_sigkill_of_make_stops_everything(self):
        make = self.start(["make", "--no-print-directory", "-s", "run"])
        server = self.wait_serving(make)
        between = [p for p in descendants(make.pid) if p != server]
        make.kill()
        make.wait()
        self.assertGone(server, "SIGKILL of make")
        for pid in between:  # run.sh, after a graceful stop of the server
            end = time.monotonic() + GONE_S
            while alive(pid) and time.monotonic() < end:
                self._reap(0.1)
            self.assertFalse(alive(pid), "%s (pid %d) outlived make"
                             % (b" ".join(cmdline(pid)).decode(errors="replace"), pid))

    def test_sigterm_stops_server_then_own_cluster(self):
        wrapper = self.start(["bash", "cmdbd/dev/run.sh"], database=False)
        server = self.wait_serving(wrapper)
        wrapper.send_signal(signal.SIGTERM)
        self.assertEqual(wrapper.wait(GONE_S * 4), 0, self.output())
        self.assertGone(server, "SIGTERM of run.sh")
        st = subprocess.run(["sh", os.path.join(lib.REPO, "cmdbd/dev/pgcluster.sh"), "status",
                             self.state], capture_output=True, text=True, timeout=60)
        self.assertEqual(st.returncode, 3, "the cluster still runs: %s%s"
                         % (st.stdout, st.stderr))


if __name__ == "__main__":
    unittest.main()
