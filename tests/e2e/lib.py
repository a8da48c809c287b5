"""End-to-end test harness: drives the real cmdbd and cmdb binaries.

Python 3 standard library only (Debian's /usr/bin/python3). Every test module starts
one or more Server objects; each gets a fresh database on the throwaway cluster named
by CMDB_TEST_ADMIN_URL, is migrated, gets three tokens ('admin', 'write', 'read') and
serves on a free 127.0.0.1 port.

Environment (set by tests/run.sh):
  CMDB_TEST_ADMIN_URL  libpq conninfo to the cluster's `postgres` database as a superuser,
                       e.g. "host=/tmp/x port=5432 dbname=postgres user=postgres".
                       Unset: every test that needs a server is skipped, saying why.
  CMDBD_BIN, CMDB_BIN  absolute paths of the binaries (default $CMDB_REPO/build/...).
  CMDB_REPO            the repository (default: two levels above this file).

No cmdbd process outlives the test run: each is tracked, stopped by tearDown/atexit,
and started with PR_SET_PDEATHSIG so the kernel kills it if the runner itself dies.

Databases are never dropped (the cluster is throwaway; a failed test's data stays for
inspection). A server's log is deleted after a clean stop, kept otherwise (its path is
in the failure message); CMDB_E2E_KEEP_LOGS=1 keeps every log.
"""

import atexit
import ctypes
import http.client
import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("CMDB_REPO") or os.path.dirname(os.path.dirname(HERE))
CMDBD_BIN = os.environ.get("CMDBD_BIN") or os.path.join(REPO, "build", "cmdbd")
CMDB_BIN = os.environ.get("CMDB_BIN") or os.path.join(REPO, "build", "cmdb")
PG_BIN = os.environ.get("PG_BIN") or "/usr/lib/postgresql/15/bin"
PSQL = shutil.which("psql") or os.path.join(PG_BIN, "psql")

READY_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
HTTP_TIMEOUT = 30.0

_counter = itertools.count(1)
_live = set()          # Server objects whose process may still run
_live_lock = threading.Lock()


# --------------------------------------------------------------------------- helpers

def admin_url():
    """The admin conninfo, or raise unittest.SkipTest with the reason."""
    url = os.environ.get("CMDB_TEST_ADMIN_URL")
    if not url:
        raise unittest.SkipTest("CMDB_TEST_ADMIN_URL is not set: no PostgreSQL cluster "
                                "to test against (tests/run.sh sets it)")
    return url


def require_binaries(*paths):
    """Skip when a default-path binary is not built yet; fail when an explicit one is
    missing (the runner named it, so its absence is a real error)."""
    for p, var in paths:
        if os.access(p, os.X_OK):
            continue
        if os.environ.get(var):
            raise AssertionError("%s=%s is not an executable file" % (var, p))
        raise unittest.SkipTest("%s not built (%s); run make first" % (os.path.basename(p), p))


def with_dbname(conninfo, dbname):
    """Return conninfo with its database replaced by dbname (key=value or URI form)."""
    if re.match(r"^postgres(ql)?://", conninfo):
        u = urllib.parse.urlsplit(conninfo)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + dbname, u.query, u.fragment))
    # key=value form: values may be quoted ('...') per libpq rules.
    pattern = r"(^|\s)dbname\s*=\s*('(?:[^'\\]|\\.)*'|\S+)"
    if re.search(pattern, conninfo):
        return re.sub(pattern, lambda m: m.group(1) + "dbname=" + dbname, conninfo, count=1)
    return conninfo + " dbname=" + dbname


def psql(conninfo, sql, timeout=30):
    """Run sql with psql (unaligned, tuples only); return stdout; raise on error."""
    p = subprocess.run([PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                        "-d", conninfo, "-c", sql],
                       capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("psql failed (%d) on %r: %s" % (p.returncode, sql, p.stderr.strip()))
    return p.stdout


def poll(fn, pred, seconds, every=0.2):
    """Call fn() until pred(its result) holds or seconds pass; return the last result."""
    deadline = time.monotonic() + seconds
    while True:
        r = fn()
        if pred(r) or time.monotonic() > deadline:
            return r
        time.sleep(every)


def free_port():
    """A port that was free a moment ago on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pdeathsig():
    """preexec_fn: ask the kernel to SIGKILL the child if the test runner dies."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _parse_body(data, ctype):
    if not data:
        return None
    text = data.decode("utf-8", errors="replace")
    if "json" in (ctype or "") or text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def _tail(path, n=40):
    try:
        with open(path, "r", errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


def quote(name):
    """Percent-encode a node name for a path segment ('/' → %2F, ':' → %3A)."""
    return urllib.parse.quote(name, safe="")


def node_path(ref):
    """'/v1/nodes/KIND/NAME' for a ref, the name percent-encoded (a ref splits at its first /)."""
    kind, name = ref.split("/", 1)
    return "/v1/nodes/%s/%s" % (kind, quote(name))


def raw_http(port, data, timeout=5):
    """Send data as-is to 127.0.0.1:port; return what comes back.

    Reads until the server closes, a complete response (headers + Content-Length body)
    has arrived, or timeout passes. A reset after a response started is not an error:
    whatever was read is returned."""
    out = b""
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            out += chunk
            if _complete_response(out):
                break
    _record_raw(data, out)
    return out


def _record_raw(data, resp):
    """record_response for raw_http: when the request line parses and the response is
    complete (its Content-Length's worth of body); anything else (garbage sent, a
    connection closed without an answer) has no operation to check against."""
    if RECORD_DIR is None:
        return
    req = re.match(rb"^([A-Z]+) (/\S*) HTTP/1\.[01]\r\n", data)
    head, sep, rest = resp.partition(b"\r\n\r\n")
    status = raw_status(resp)
    if req is None or not sep or status is None:
        return
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.decode("latin-1").partition(":")
        k, v = k.strip().lower(), v.strip()
        headers[k] = headers[k] + ", " + v if k in headers else v
    n = headers.get("content-length")
    if n is None or not n.isdigit() or len(rest) < int(n):
        return
    record_response(req.group(1).decode(), req.group(2).decode("latin-1"), status, headers,
                    _parse_body(rest[:int(n)], headers.get("content-type")))


def _complete_response(buf):
    head, sep, rest = buf.partition(b"\r\n\r\n")
    if not sep:
        return False
    m = re.search(rb"(?im)^content-length:\s*(\d+)\s*$", head)
    if m:
        return len(rest) >= int(m.group(1))
    if re.search(rb"(?im)^transfer-encoding:\s*chunked", head):
        return rest.endswith(b"0\r\n\r\n")
    return False


def parse_time(v):
    """An RFC 3339 UTC time from the API as an aware datetime."""
    import datetime
    v = v.replace("Z", "+00:00")
    m = re.match(r"^(.*T\d{2}:\d{2}:\d{2})(\.\d+)?(\+00:00)$", v)
    if not m:
        raise ValueError("not an RFC 3339 UTC time: %r" % v)
    frac = (m.group(2) or ".0")[:7].ljust(7, "0")
    return datetime.datetime.fromisoformat(m.group(1) + frac + m.group(3))


def raw_status(resp):
    """The status code of a raw HTTP response, or None."""
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp)
    return int(m.group(1)) if m else None


# --------------------------------------------------------------------------- recording

# With CMDB_API_RECORD_DIR set (tests/e2e/runner.py sets it for every unit), every
# response Server.request() receives is appended, one JSON object a line, to
# DIR/<unit>.<pid>.jsonl: {"unit", "test", "method", "path" (as sent, query included),
# "status", "headers" (lower-case names), "body" (parsed JSON, or text, or null)}.
# test_openapi.py checks every record against schema/openapi.yaml.
RECORD_DIR = os.environ.get("CMDB_API_RECORD_DIR") or None
RECORD_TEXT_MAX = 64 * 1024
_record_lock = threading.Lock()
current_test = None  # "Class.test_x" while NamedResult runs a test
current_unit = None  # NamedResult's unit ("test_auth.py")


def _test_of_caller():
    """The test making the request: the innermost TestCase method (self) on the stack,
    else the outermost class method (cls: setUpClass, tearDownClass), else the test
    NamedResult is running (requests from threads), else "?"."""
    f, outer = sys._getframe(2), None
    while f is not None:
        obj = f.f_locals.get("self")
        if isinstance(obj, unittest.TestCase):
            return NamedResult.name_of(obj)
        cls = f.f_locals.get("cls")
        if isinstance(cls, type) and issubclass(cls, unittest.TestCase):
            outer = "%s.%s" % (cls.__name__, f.f_code.co_name)  # the outermost wins
        f = f.f_back
    return outer or current_test or "?"


def record_response(method, path, status, headers, body):
    if RECORD_DIR is None:
        return
    if isinstance(body, str) and len(body) > RECORD_TEXT_MAX:
        body = body[:RECORD_TEXT_MAX]
    unit = current_unit or os.path.basename(getattr(sys.modules["__main__"], "__file__", "?"))
    line = json.dumps({"unit": unit, "test": _test_of_caller(), "method": method,
                       "path": path, "status": status, "headers": headers, "body": body})
    with _record_lock:
        os.makedirs(RECORD_DIR, exist_ok=True)
        with open(os.path.join(RECORD_DIR, "%s.%d.jsonl" % (unit, os.getpid())), "a",
                  encoding="utf-8") as f:
            f.write(line + "\n")


# --------------------------------------------------------------------------- Server

class Server:
    """One cmdbd process on its own fresh database. Use as a context manager, or call
    stop(); processes still running at exit are killed."""

    def __init__(self, name, extra_env=None, args=(), admin=None, tls_ca=None):
        self.tls_ca = tls_ca  # CA file: the server speaks HTTPS (args carry --tls-*)
        self.name = re.sub(r"[^a-z0-9_]", "_", (name or "srv").lower())[:24]
        self.admin_url = admin or admin_url()
        self.dbname = "e2e_%s_%d_%d" % (self.name, os.getpid(), next(_counter))
        self.db_url = with_dbname(self.admin_url, self.dbname)
        self.extra_env = dict(extra_env or {})
        self.args = tuple(args)
        self.port = None
        self.url = None
        self.proc = None
        self._tokens = {}
        self._logdir = tempfile.mkdtemp(prefix="cmdb-e2e-%s-" % self.name)
        self.log_path = os.path.join(self._logdir, "cmdbd.log")
        self._log = None

    # -- lifecycle

    @classmethod
    def start(cls, name=None, extra_env=None, args=(), admin=None, tls_ca=None):
        """Create the database, migrate, make tokens, serve, wait for /readyz.
        admin overrides CMDB_TEST_ADMIN_URL (e.g. a private cluster). tls_ca: the
        server serves HTTPS (args give --tls-cert/--tls-key) under this CA file."""
        if admin is None:
            admin_url()
        require_binaries((CMDBD_BIN, "CMDBD_BIN"))
        srv = cls(name, extra_env, args, admin, tls_ca)
        psql(srv.admin_url, 'CREATE DATABASE "%s"' % srv.dbname)
        p = srv.cmdbd("migrate")
        if p.returncode != 0:
            raise RuntimeError("cmdbd migrate failed (%d): %s%s"
                               % (p.returncode, p.stdout, p.stderr))
        for scope in ("admin", "write", "read"):
            srv.create_token(scope, scope)
        srv._spawn(free_port())
        return srv

    def _env(self):
        env = dict(os.environ)
        env["CMDB_DATABASE_URL"] = self.db_url
        env.pop("CMDB_LISTEN", None)
        env.update(self.extra_env)
        return env

    def _spawn(self, port):
        self.port = port
        self.url = "%s://127.0.0.1:%d" % ("https" if self.tls_ca else "http", port)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CMDBD_BIN, "serve", "--listen", "127.0.0.1:%d" % port] + list(self.args),
            env=self._env(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            preexec_fn=_pdeathsig)
        with _live_lock:
            _live.add(self)
        self.wait_ready()

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until GET /readyz answers 200; raise with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("cmdbd exited with %d before it was ready; log:\n%s"
                                   % (self.proc.returncode, _tail(self.log_path)))
            try:
                st, _, _ = self.request("GET", "/readyz", token=None, timeout=2)
                if st == 200:
                    return
                last = "status %d" % st
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        self.kill()
        raise RuntimeError("cmdbd not ready after %.0f s (last: %s); log:\n%s"
                           % (timeout, last, _tail(self.log_path)))

    def peer(self, name):
        """A second cmdbd on this server's database (same CMDB_DATABASE_URL, same
        tokens, same arguments), serving on another port; stop it with stop()."""
        p = Server(name, self.extra_env, self.args, self.admin_url, self.tls_ca)
        p.dbname, p.db_url = self.dbname, self.db_url
        p._tokens = dict(self._tokens)
        p._spawn(free_port())
        return p

    def stop(self, timeout=STOP_TIMEOUT, keep_log=False):
        """SIGTERM, wait, and assert a clean exit (code 0). Idempotent."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        clean = False
        try:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise AssertionError("cmdbd did not exit within %.0f s of SIGTERM; log:\n%s"
                                     % (timeout, _tail(self.log_path)))
            if rc != 0:
                raise AssertionError("cmdbd exited with %d after SIGTERM; log:\n%s"
                                     % (rc, _tail(self.log_path)))
            clean = True
        finally:
            self._closelog()
            with _live_lock:
                _live.discard(self)
            if clean and not keep_log and not os.environ.get("CMDB_E2E_KEEP_LOGS"):
                # A clean stop leaves nothing to look at; failures keep their log.
                shutil.rmtree(self._logdir, ignore_errors=True)

    def kill(self):
        """SIGKILL without checks (cleanup path)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self._closelog()
        with _live_lock:
            _live.discard(self)

    def restart(self):
        """Stop (cleanly) and serve again on the same port and database."""
        port = self.port
        self.stop(keep_log=True)
        self._spawn(port)

    def _closelog(self):
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            self.kill()
        return False

    def log_tail(self, n=40):
        return _tail(self.log_path, n)

    # -- tokens and commands

    def cmdbd(self, *args, env=None, timeout=30, input=None):
        """Run `cmdbd ARGS` against this server's database (not the HTTP server)."""
        e = self._env()
        if env:
            e.update(env)
        return subprocess.run([CMDBD_BIN] + list(args), env=e, capture_output=True,
                              text=True, timeout=timeout, input=input)

    def create_token(self, name, scope, source_glob=None, expires=None):
        """`cmdbd token create`; returns the token (stdout, one line) and remembers it."""
        args = ["token", "create", "--name", name, "--scope", scope]
        if source_glob is not None:
            args += ["--source", source_glob]
        if expires is not None:
            args += ["--expires", expires]
        p = self.cmdbd(*args)
        if p.returncode != 0:
            raise RuntimeError("cmdbd %s failed (%d): %s"
                               % (" ".join(args), p.returncode, p.stderr.strip()))
        lines = p.stdout.splitlines()
        if len(lines) != 1 or not lines[0].strip() or lines[0] != lines[0].strip():
            raise AssertionError("token create must print the token alone on one line; "
                                 "stdout was %r" % p.stdout)
        self._tokens[name] = lines[0]
        return lines[0]

    def token(self, name):
        return self._tokens[name]

    def psql(self, sql):
        """Run SQL on this server's database; returns psql's unaligned output."""
        return psql(self.db_url, sql)

    def psql_json(self, sql):
        """Run a query returning one json value; return it parsed."""
        out = self.psql(sql).strip()
        return json.loads(out) if out else None

    # -- HTTP

    def request(self, method, path, body=None, token="admin", headers=None, raw=None,
                timeout=HTTP_TIMEOUT):
        """One HTTP request on a fresh connection.

        body (dict/list/...) is sent as JSON; raw (bytes) as-is; token is a token *name*
        (or None for no Authorization header); headers are added last and win.
        Returns (status, headers with lower-case keys, parsed JSON or text or None)."""
        hdrs = {}
        data = None
        if raw is not None:
            data = raw
            hdrs["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        if token is not None:
            hdrs["Authorization"] = "Bearer " + self._tokens.get(token, token)
        if headers:
            hdrs.update(headers)
        if self.tls_ca:
            import ssl
            conn = http.client.HTTPSConnection(
                "127.0.0.1", self.port, timeout=timeout,
                context=ssl.create_default_context(cafile=self.tls_ca))
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            try:
                conn.request(method, path, body=data, headers=hdrs)
            except (BrokenPipeError, ConnectionResetError):
                # The server may answer (413) before reading all of a large body; a
                # well-behaved client still reads that answer.
                pass
            resp = conn.getresponse()
            payload = resp.read()
            h = {}
            for k, v in resp.getheaders():
                k = k.lower()
                h[k] = h[k] + ", " + v if k in h else v
            parsed = _parse_body(payload, h.get("content-type"))
            record_response(method, path, resp.status, h, parsed)
            return resp.status, h, parsed
        finally:
            conn.close()

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, body=None, **kw):
        return self.request("PUT", path, body, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def put_node(self, ref, attributes=None, labels=None, token="admin"):
        body = {}
        if attributes is not None:
            body["attributes"] = attributes
        if labels is not None:
            body["labels"] = labels
        return self.request("PUT", node_path(ref), body, token=token)

    def put_edge(self, frm, typ, to, attributes=None, token="admin"):
        body = {"from": frm, "type": typ, "to": to}
        if attributes is not None:
            body["attributes"] = attributes
        return self.request("PUT", "/v1/edges", body, token=token)

    # -- CLI

    def cmdb(self, *args, token="admin", input=None, env=None, timeout=30):
        """Run the cmdb CLI against this server (CMDB_URL, CMDB_TOKEN set)."""
        require_binaries((CMDB_BIN, "CMDB_BIN"))
        e = dict(os.environ)
        e["CMDB_URL"] = self.url
        if self.tls_ca:
            e["CMDB_CACERT"] = self.tls_ca
        e.pop("CMDB_TOKEN", None)
        if token is not None:
            e["CMDB_TOKEN"] = self._tokens.get(token, token)
        if env:
            e.update(env)
        return subprocess.run([CMDB_BIN] + [str(a) for a in args], env=e,
                              capture_output=True, text=True, timeout=timeout, input=input)


def _cleanup():
    with _live_lock:
        servers = list(_live)
    for s in servers:
        s.kill()


atexit.register(_cleanup)


def _on_term(signum, frame):
    # Turn SIGTERM of the runner into a normal exit so atexit cleanup runs.
    raise SystemExit(128 + signum)


if threading.current_thread() is threading.main_thread():
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_term)
    except ValueError:
        pass


# --------------------------------------------------------------------------- test base

RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NODE_FIELDS = {"id", "ref", "kind", "name", "attributes", "labels", "health", "health_reason",
               "health_at", "orphan", "sources", "version", "created_at", "updated_at",
               "last_seen_at"}
EDGE_FIELDS = {"from", "type", "to", "attributes", "sources", "created_at", "updated_at"}
EDGE_TYPES = ("depends_on", "runs_on", "connects_to", "part_of", "owned_by")


class ServerTestCase(unittest.TestCase):
    """Base class: one Server per test class (setUpClass), stopped in tearDownClass.
    Subclasses may set server_name, server_env, server_args."""

    server_name = None
    server_env = None
    server_args = ()
    srv = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.srv = Server.start(cls.server_name or cls.__name__, cls.server_env, cls.server_args)

    @classmethod
    def tearDownClass(cls):
        srv, cls.srv = cls.srv, None
        if srv is not None:
            srv.stop()
        super().tearDownClass()

    # -- assertions shared by the suites

    def ctx(self, resp):
        """A failure message with the response and the server log tail."""
        st, h, body = resp
        return "\n  got %s %s\n  headers %s\n  server log %s, tail:\n%s" % (
            st, json.dumps(body)[:2000] if not isinstance(body, str) else body[:2000], h,
            self.srv.log_path if self.srv else "-", self.srv.log_tail(15) if self.srv else "")

    def assertStatus(self, resp, status, what=""):
        st = resp[0]
        ok = st in status if isinstance(status, (tuple, list, set)) else st == status
        if not ok:
            self.fail("%sexpected status %s%s" % (what + ": " if what else "", status, self.ctx(resp)))
        self.assertIn("x-request-id", resp[1], "every response has X-Request-Id" + self.ctx(resp))
        self.assertTrue(resp[1]["x-request-id"].strip(), "X-Request-Id is empty")
        return resp[2]

    def assertError(self, resp, status, code=None, mentions=(), what=""):
        """The SPEC's error shape: {"error":{"status","code","message","request_id","details"}}.
        mentions: strings one of which (each item) must appear in message or details
        (case-insensitive); an item may be a tuple of alternatives."""
        self.assertStatus(resp, status, what)
        st, h, body = resp
        self.assertIsInstance(body, dict, "error body must be a JSON object" + self.ctx(resp))
        self.assertIn("error", body, "error body has 'error'" + self.ctx(resp))
        err = body["error"]
        self.assertIsInstance(err, dict)
        for k in ("status", "code", "message", "request_id", "details"):
            self.assertIn(k, err, "error object lacks %r%s" % (k, self.ctx(resp)))
        self.assertEqual(err["status"], st, "error.status equals the HTTP status")
        self.assertIsInstance(err["code"], str)
        self.assertTrue(err["code"])
        if code is not None:
            codes = code if isinstance(code, (tuple, list)) else (code,)
            self.assertIn(err["code"], codes, "error.code" + self.ctx(resp))
        self.assertIsInstance(err["message"], str)
        self.assertTrue(err["message"], "error.message is empty")
        self.assertEqual(err["request_id"], h.get("x-request-id"),
                         "error.request_id equals the X-Request-Id header")
        text = (err["message"] + " " + json.dumps(err["details"])).lower()
        for m in mentions:
            alts = m if isinstance(m, (tuple, list)) else (m,)
            self.assertTrue(any(a.lower() in text for a in alts),
                            "error should mention %r%s" % (alts, self.ctx(resp)))
        return err

    def assertTime(self, v, what="time", nullable=False):
        if nullable and v is None:
            return
        self.assertIsInstance(v, str, "%s is a string" % what)
        self.assertRegex(v, RFC3339_UTC, "%s is RFC 3339 UTC" % what)

    def assertNodeShape(self, node, ref=None):
        self.assertIsInstance(node, dict, "node is an object: %r" % (node,))
        missing = NODE_FIELDS - set(node)
        self.assertFalse(missing, "node lacks %s: %r" % (sorted(missing), node))
        self.assertRegex(node["id"], UUID_RE)
        kind, name = node["ref"].split("/", 1)
        self.assertEqual(node["kind"], kind)
        self.assertEqual(node["name"], name)
        if ref is not None:
            self.assertEqual(node["ref"], ref)
        self.assertIsInstance(node["attributes"], dict)
        self.assertIsInstance(node["labels"], dict)
        for k, v in node["labels"].items():
            self.assertIsInstance(v, str, "label values are strings")
        self.assertIn(node["health"], ("ok", "degraded", "down", "unknown"))
        self.assertTrue(node["health_reason"] is None or isinstance(node["health_reason"], str))
        self.assertTime(node["health_at"], "health_at", nullable=True)
        self.assertIsInstance(node["orphan"], bool)
        self.assertIsInstance(node["sources"], list)
        for s in node["sources"]:
            self.assertIsInstance(s, str)
        self.assertIsInstance(node["version"], int)
        self.assertNotIsInstance(node["version"], bool)
        self.assertGreaterEqual(node["version"], 1)
        for k in ("created_at", "updated_at", "last_seen_at"):
            self.assertTime(node[k], k)

    def assertEdgeShape(self, edge):
        self.assertIsInstance(edge, dict, "edge is an object: %r" % (edge,))
        missing = EDGE_FIELDS - set(edge)
        self.assertFalse(missing, "edge lacks %s: %r" % (sorted(missing), edge))
        self.assertIn(edge["type"], EDGE_TYPES)
        self.assertIsInstance(edge["from"], str)
        self.assertIsInstance(edge["to"], str)
        self.assertIsInstance(edge["attributes"], dict)
        self.assertIsInstance(edge["sources"], list)
        self.assertTime(edge["created_at"], "created_at")
        self.assertTime(edge["updated_at"], "updated_at")


class TwoServerTestCase(ServerTestCase):
    """ServerTestCase with a second cmdbd, cls.b, on the same database (Server.peer)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.b = cls.srv.peer((cls.server_name or cls.__name__) + "_b")

    @classmethod
    def tearDownClass(cls):
        b, cls.b = getattr(cls, "b", None), None
        try:
            if b is not None:
                b.stop()
        finally:
            super().tearDownClass()


# --------------------------------------------------------------------------- results by name

# Bounds on what one test's result carries: its short message (the Check runner's failure
# listing; Check refuses messages over ~4 KiB) and its output (traceback, captured
# stdout/stderr: printed when it fails).
MESSAGE_MAX = 2500
OUTPUT_MAX = 64 * 1024


def clip(text, limit, keep_head=0.25):
    """text if it fits in limit characters, else its head and tail with a marker between
    (the head says what was tested, the tail how it ended)."""
    if len(text) <= limit:
        return text
    head = int(limit * keep_head)
    tail = limit - head
    return "%s\n[... %d characters left out ...]\n%s" % (text[:head], len(text) - limit,
                                                       text[-tail:])


def write_result(path, status, seconds=0.0, message="", output="", where=None):
    """Write one test's result as JSON, atomically (tests/check_e2e.c polls for the file):
    {"status": PASS|FAIL|ERROR|SKIP, "seconds", "message" (short), "output" (long),
    "file", "line" (where it failed, relative to the repository)}."""
    doc = {"status": status, "seconds": round(seconds, 3),
           "message": clip(message, MESSAGE_MAX, 0.8), "output": clip(output, OUTPUT_MAX)}
    if where is not None:
        doc["file"], doc["line"] = where
    tmp = os.path.join(os.path.dirname(path), ".%s.tmp" % os.path.basename(path))
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _where(err, module_file):
    """(path relative to the repository, line) of the innermost frame of the traceback
    in module_file, else in any file of this directory; None when there is none."""
    frames = traceback.extract_tb(err[2]) if err and err[2] is not None else []
    for pick in (lambda f: f.filename == module_file,
                 lambda f: os.path.dirname(os.path.abspath(f.filename)) == HERE):
        for fr in reversed(frames):
            if pick(fr):
                return os.path.relpath(os.path.abspath(fr.filename), REPO), fr.lineno
    return None


class NamedResult(unittest.TestResult):
    """A unittest result that reports every test under its own name as it ends: a line
    `PASS test_x.py::Class.test (0.12 s)` (or FAIL / ERROR / SKIP) on stream and, with
    outdir, a result file outdir/Class.test (write_result) for tests/check_e2e.c.

    Output the test prints is captured (buffer) and goes with its failure. Errors outside
    any test (setUpClass, tearDownClass, setUpModule, ...) are kept in self.outside as
    (description, text); finish() reports the tests such an error kept from running."""

    def __init__(self, unit, module_file, stream, outdir=None):
        super().__init__()
        global current_unit
        current_unit = unit
        self.buffer = True
        self.unit = unit
        self.module_file = module_file
        self.stream = stream
        self.outdir = outdir
        self.reported = set()
        self.outside = []
        self._class_problem = {}  # class name -> ("ERROR" | "SKIP", text)
        self._t0 = 0.0
        self._problems = []
        self._skip = None

    @staticmethod
    def name_of(test):
        """Class.test: the test's id without its module."""
        return test.id().split(".", 1)[-1] if "." in test.id() else test.id()

    def _report(self, name, status, seconds, message="", output="", where=None):
        self.reported.add(name)
        line = "%-5s %s::%s (%.2f s)" % (status, self.unit, name, seconds)
        if status == "SKIP":
            line += ": " + message
        print(line, file=self.stream, flush=True)
        if status not in ("PASS", "SKIP") and output:
            print(output.rstrip("\n"), file=self.stream, flush=True)
        if self.outdir is not None:
            write_result(os.path.join(self.outdir, name), status, seconds, message, output,
                         where)

    def startTest(self, test):
        super().startTest(test)
        global current_test
        current_test = self.name_of(test)
        self._t0 = time.monotonic()
        self._problems = []
        self._skip = None
        if self.outdir is not None:
            # Which test was running if the process dies (runner.py reads it).
            with open(os.path.join(self.outdir, ".running"), "w", encoding="utf-8") as f:
                f.write(self.name_of(test))

    def _problem(self, kind, test, err, label=""):
        text = self._exc_info_to_string(err, test)
        message = "".join(traceback.format_exception_only(err[0], err[1])).rstrip("\n")
        self._problems.append((kind, label + message, text, _where(err, self.module_file)))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._problem("FAIL", test, err)

    def addError(self, test, err):
        super().addError(test, err)
        if isinstance(test, unittest.TestCase):
            self._problem("ERROR", test, err)
            return
        # Outside any test: "setUpClass (module.Class)", "tearDownModule (module)", ...
        desc = str(test)
        text = self._exc_info_to_string(err, test)
        short = "".join(traceback.format_exception_only(err[0], err[1])).rstrip("\n")
        self.outside.append((desc, text))
        self._note_class_problem(desc, "ERROR", "%s failed: %s" % (desc, short),
                                 "%s failed:\n%s" % (desc, text))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            kind = "FAIL" if issubclass(err[0], test.failureException) else "ERROR"
            self._problem(kind, test, err, subtest._subDescription() + " ")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if isinstance(test, unittest.TestCase):
            self._skip = reason
        else:
            self._note_class_problem(str(test), "SKIP", reason, "")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._problems.append(("FAIL", "unexpected success (marked expectedFailure)", "",
                               None))

    def _note_class_problem(self, desc, kind, short, text):
        m = re.match(r"^(setUpClass|setUpModule) \(([^)]*)\)$", desc)
        if m:
            key = "" if m.group(1) == "setUpModule" else m.group(2).rsplit(".", 1)[-1]
            self._class_problem.setdefault(key, (kind, short, text))

    def stopTest(self, test):
        secs = time.monotonic() - self._t0
        name = self.name_of(test)
        if self._problems:
            kind = "ERROR" if any(p[0] == "ERROR" for p in self._problems) else "FAIL"
            message = self._problems[0][1]
            if len(self._problems) > 1:
                message += "\n(and %d more problems: see the output)" % (len(self._problems) - 1)
            output = "\n".join(p[2] for p in self._problems)
            where = next((p[3] for p in self._problems if p[3] is not None), None)
            self._report(name, kind, secs, message, output, where)
        elif self._skip is not None:
            self._report(name, "SKIP", secs, self._skip)
        else:
            self._report(name, "PASS", secs)
        self._mirrorOutput = False  # the captured output went with the failure already
        super().stopTest(test)

    def finish(self, expected):
        """Report every name in expected that did not run: kept from running by a
        setUpClass/setUpModule error or skip, else "not run"."""
        for name in expected:
            if name in self.reported:
                continue
            cls = name.split(".", 1)[0]
            kind, short, text = self._class_problem.get(cls) or self._class_problem.get(
                "", ("ERROR", "no result from unittest", ""))
            self._report(name, kind, 0.0, short if kind == "SKIP" else "not run: " + short,
                         text)


# --------------------------------------------------------------------------- private cluster


class PrivateCluster:
    """A PostgreSQL 15 cluster of our own in a temp dir (unix socket only), for tests
    that must stop and start the database. As root, runs as the `postgres` user."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="cmdb-e2e-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = 5432
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.dir, self.user)
        self.conninfo = "host=%s port=%d dbname=postgres user=%s" % (
            self.dir, self.port, self.user or os.environ.get("USER", "postgres"))

    def _run(self, *argv, check=True):
        cmd = list(argv)
        if self.user:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s%s" % (argv[0], p.returncode, p.stdout, p.stderr))
        return p

    def init(self):
        self._run(os.path.join(PG_BIN, "initdb"), "-D", self.data, "-A", "trust",
                  "-U", self.user or os.environ.get("USER", "postgres"), "--no-sync")
        return self

    def start(self):
        opts = "-c listen_addresses='' -k %s -p %d -c fsync=off" % (self.dir, self.port)
        self._run(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-l",
                  os.path.join(self.dir, "pg.log"), "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode="fast"):
        self._run(os.path.join(PG_BIN, "pg_ctl"), "-D", self.data, "-m", mode, "-w", "stop",
                  check=False)

    def destroy(self):
        self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
