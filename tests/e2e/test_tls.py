#!/usr/bin/python3
"""Issue 10: HTTPS in the server (cmdbd serve --tls-cert FILE --tls-key FILE).

A throwaway CA and server certificate (SAN IP:127.0.0.1) are made with `openssl`.
The server is driven over HTTPS with curl, the real `cmdb` CLI and Python's ssl
module: certificates verified, TLS 1.2+ only, ECDHE+AEAD only for TLS 1.2, plain
HTTP to the port answered 400 in plain HTTP and closed, the read deadlines and the
connection cap in force over TLS, the certificate reloaded on SIGHUP, and bad
certificate files refused at start with a clear message and a non-zero exit.
"""

import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import warnings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import CMDBD_BIN, Server, free_port, raw_status  # noqa: E402

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
SLACK = 1.5


def ossl(d, *args):
    subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)


def make_ca(d):
    ossl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=cmdb tls test CA", "-keyout", "ca.key", "-out", "ca.pem")
    return os.path.join(d, "ca.pem")


def make_cert(d, name, cn="127.0.0.1", key_opts=("-nodes",)):
    """A server certificate signed by the CA in d: (cert path, key path)."""
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl(d, "req", "-newkey", "rsa:2048", *key_opts, "-subj", "/CN=%s" % cn,
         "-keyout", name + ".key", "-out", name + ".csr")
    ossl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", name + ".pem")
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")


def recv_all(sock, timeout):
    """Everything until EOF (or timeout): (bytes, got_eof)."""
    out = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return out, False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return out, True
        if not chunk:
            return out, True
        out += chunk
    return out, False


def ask(sock):
    """GET /healthz on an open connection: the status of the answer (None if none)."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    buf = b""
    while b'{"status":"ok"}' not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
    return raw_status(buf)


class TlsTest(unittest.TestCase):
    """One HTTPS server for the class; each test opens its own connections."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-tls-")
        cls.ca = make_ca(cls.tmp)
        cls.cert, cls.key = make_cert(cls.tmp, "server")
        cls.srv = Server.start("tls", tls_ca=cls.ca,
                               args=["--tls-cert", cls.cert, "--tls-key", cls.key,
                                     "--header-timeout", str(HEADER_TIMEOUT),
                                     "--body-timeout", str(BODY_TIMEOUT)])
        cls.port = cls.srv.port

    @classmethod
    def tearDownClass(cls):
        srv = getattr(cls, "srv", None)
        if srv is not None:
            srv.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    # -- helpers

    def tls_socket(self, ctx=None, timeout=10):
        ctx = ctx or ssl.create_default_context(cafile=self.ca)
        raw = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        try:
            return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
        except BaseException:
            raw.close()
            raise

    def client_ctx(self, max_version, ciphers=None, min_version=None):
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1, on purpose
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(self.ca)
        if min_version is not None:
            ctx.minimum_version = min_version
        ctx.maximum_version = max_version
        if ciphers:
            ctx.set_ciphers(ciphers)
        return ctx

    def wait_log(self, pattern, timeout=5):
        """The log lines matching pattern once at least one is there."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [l for l in self.srv.log_tail(4000).splitlines() if re.search(pattern, l)]
            if lines or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def assertServes(self):
        st, _, body = self.srv.get("/healthz", token=None)
        self.assertEqual((st, body), (200, {"status": "ok"}))

    def curl(self, *args):
        return subprocess.run(["curl", "-sS", "--max-time", "10"] + list(args),
                              capture_output=True, text=True, timeout=20)

    # -- the happy path

    def test_curl_and_cli_over_https(self):
        base = "https://127.0.0.1:%d" % self.port
        p = self.curl("--cacert", self.ca, base + "/healthz")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, '{"status":"ok"}'), p.stderr)
        p = self.curl("--cacert", self.ca, "-X", "PUT", "-H", "Content-Type: application/json",
                      "-H", "Authorization: Bearer " + self.srv.token("admin"),
                      "--data", '{"attributes":{"port":443}}', "-w", "%{http_code}",
                      base + "/v1/nodes/service/tls-curl")
        self.assertTrue(p.stdout.endswith("201") or p.stdout.endswith("200"), p.stdout + p.stderr)
        # The real CLI: --url and --cacert on the command line ...
        p = self.srv.cmdb("--url", base, "--cacert", self.ca, "get", "service/tls-curl",
                          env={"CMDB_URL": "", "CMDB_CACERT": ""})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("service/tls-curl", p.stdout)
        # ... and from the environment (CMDB_URL https://, CMDB_CACERT), writing too.
        p = self.srv.cmdb("put", "service/tls-cli")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.srv.cmdb("link", "service/tls-cli", "depends_on", "service/tls-curl")
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = self.srv.cmdb("dependents", "service/tls-curl")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("service/tls-cli", p.stdout)
        self.assertTrue(self.wait_log(r"event=listening .*tls=1"), self.srv.log_tail())

    def test_protocol_and_cipher_negotiated(self):
        with self.tls_socket() as s:
            self.assertEqual(s.version(), "TLSv1.3")
            self.assertIsNone(s.compression())
        for cipher in ("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                       "ECDHE-RSA-CHACHA20-POLY1305"):
            with self.subTest(cipher=cipher):
                ctx = self.client_ctx(ssl.TLSVersion.TLSv1_2, cipher)
                with self.tls_socket(ctx) as s:
                    self.assertEqual((s.version(), s.cipher()[0]), ("TLSv1.2", cipher))

    def test_keep_alive_and_pipelining_over_tls(self):
        with self.tls_socket() as s:
            req = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            s.sendall(req * 3)  # pipelined, in one TLS record
            buf = b""
            deadline = time.monotonic() + 10
            while buf.count(b'{"status":"ok"}') < 3 and time.monotonic() < deadline:
                s.settimeout(max(0.05, deadline - time.monotonic()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            self.assertEqual(buf.count(b"HTTP/1.1 200 OK"), 3, buf)
            s.sendall(req)  # still open and served
            more, _ = b"", None
            while b'{"status":"ok"}' not in more:
                chunk = s.recv(65536)
                self.assertTrue(chunk, "the connection closed")
                more += chunk
            self.assertTrue(more.startswith(b"HTTP/1.1 200"), more)

    # -- refusals

    def test_unverified_certificate_is_refused_by_clients(self):
        p = self.curl("https://127.0.0.1:%d/healthz" % self.port)
        self.assertEqual(p.returncode, 60, p.stderr)  # curl: peer certificate cannot be verified
        lines = self.wait_log(r"event=tls_handshake_failed .*unknown ca")
        self.assertTrue(lines, self.srv.log_tail())
        self.assertServes()

    def test_plain_http_to_tls_port_fails_cleanly(self):
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            mine = s.getsockname()[1]
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            resp, eof = recv_all(s, 5)
        self.assertTrue(eof, "the connection must be closed")
        self.assertEqual(raw_status(resp), 400, resp)
        self.assertIn(b"Connection: close", resp)
        self.assertIn(b'"code":"https_required"', resp)
        self.assertNotIn(b'"status":"ok"', resp, "nothing may be served in the clear")
        lines = self.wait_log(r"event=tls_handshake_failed peer=127\.0\.0\.1:%d " % mine)
        self.assertEqual(len(lines), 1, self.srv.log_tail())
        self.assertIn('reason="http request"', lines[0])
        # The CLI pointed at http:// says what is wrong (a 400: exit 2).
        p = self.srv.cmdb("--url", "http://127.0.0.1:%d" % self.port, "get", "service/x")
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("https://", p.stderr)
        # Bytes that are neither TLS nor HTTP: closed without an answer, one log line.
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            mine = s.getsockname()[1]
            s.sendall(b"\x00\x01\x02 hello, this is not TLS\r\n\r\n")
            resp, eof = recv_all(s, 5)
        self.assertTrue(eof)
        self.assertNotIn(b"HTTP/1", resp)
        lines = self.wait_log(r"event=tls_handshake_failed peer=127\.0\.0\.1:%d " % mine)
        self.assertEqual(len(lines), 1, self.srv.log_tail())
        self.assertServes()

    def test_tls_1_1_and_1_0_are_refused(self):
        for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
            with self.subTest(version=version):
                # SECLEVEL=0: the client itself would not offer TLS < 1.2 otherwise.
                ctx = self.client_ctx(version, "DEFAULT:@SECLEVEL=0", min_version=version)
                with self.assertRaises(ssl.SSLError) as cm:
                    self.tls_socket(ctx).close()
                # The refusal is the server's alert, not the client declining to try.
                self.assertIn("PROTOCOL_VERSION", str(cm.exception))
        self.assertTrue(self.wait_log(r"event=tls_handshake_failed .*unsupported protocol"))
        self.assertServes()

    def test_weak_tls12_ciphers_are_refused(self):
        weak = ("AES128-SHA",                 # RSA key exchange, CBC, SHA-1
                "AES128-GCM-SHA256",          # RSA key exchange (no forward secrecy)
                "ECDHE-RSA-AES128-SHA",       # CBC with SHA-1
                "ECDHE-RSA-AES128-SHA256",    # CBC
                "DHE-RSA-AES128-GCM-SHA256")  # finite-field DHE
        for cipher in weak:
            with self.subTest(cipher=cipher):
                ctx = self.client_ctx(ssl.TLSVersion.TLSv1_2, cipher + ":@SECLEVEL=0")
                with self.assertRaises(ssl.SSLError) as cm:
                    self.tls_socket(ctx).close()
                self.assertIn("HANDSHAKE_FAILURE", str(cm.exception))
        self.assertTrue(self.wait_log(r"event=tls_handshake_failed .*no shared cipher"))
        self.assertServes()

    # -- deadlines over TLS

    def test_header_deadline_applies_over_tls(self):
        with self.tls_socket() as s:
            t0 = time.monotonic()
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            buf = b""
            while time.monotonic() - t0 < HEADER_TIMEOUT + SLACK + 2:
                try:
                    s.sendall(b"X-Trickle: 1\r\n")  # a line every 0.3 s, never the end
                except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                    pass
                if select.select([s], [], [], 0.3)[0]:
                    more, _ = recv_all(s, 2)
                    buf += more
                    break
            took = time.monotonic() - t0
        self.assertEqual(raw_status(buf), 408, buf)
        self.assertIn(b'"code":"request_timeout"', buf)
        self.assertIn(b'"phase":"headers"', buf)
        self.assertGreaterEqual(took, HEADER_TIMEOUT - 0.2)
        self.assertLess(took, HEADER_TIMEOUT + SLACK)
        self.assertServes()

    def test_body_deadline_applies_over_tls(self):
        with self.tls_socket() as s:
            s.sendall(b"PUT /v1/nodes/service/slow HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
            t0 = time.monotonic()
            resp, eof = recv_all(s, BODY_TIMEOUT + SLACK + 3)
            took = time.monotonic() - t0
        self.assertEqual(raw_status(resp), 408, resp)
        self.assertIn(b'"phase":"body"', resp)
        self.assertTrue(eof)
        self.assertGreaterEqual(took, BODY_TIMEOUT - 0.2)
        self.assertLess(took, BODY_TIMEOUT + SLACK)
        self.assertServes()

    def test_stalled_handshake_is_closed_at_the_header_deadline(self):
        for first in (b"", b"\x16\x03\x01\x02\x00"):  # nothing; half a ClientHello
            with self.subTest(first=first):
                with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
                    t0 = time.monotonic()
                    s.sendall(first)
                    resp, eof = recv_all(s, HEADER_TIMEOUT + SLACK + 3)
                    took = time.monotonic() - t0
                self.assertTrue(eof, "the connection must be closed")
                self.assertEqual(resp, b"")
                self.assertGreaterEqual(took, HEADER_TIMEOUT - 0.2)
                self.assertLess(took, HEADER_TIMEOUT + SLACK)
        self.assertServes()

    # -- certificate rotation

    def test_sighup_reloads_the_certificate(self):
        def serial():
            with self.tls_socket() as s:
                return s.getpeercert()["serialNumber"]

        new_cert, new_key = make_cert(self.tmp, "rotated", cn="127.0.0.1 rotated")
        before = serial()
        # A connection made before the reload, kept alive by a first request (else the
        # header deadline would close it).
        kept = self.tls_socket()
        self.assertEqual(ask(kept), 200)
        saved = {}
        for p in (self.cert, self.key):
            with open(p, "rb") as f:
                saved[p] = f.read()
        try:
            shutil.copy(new_cert, self.cert)
            shutil.copy(new_key, self.key)
            n = len(self.wait_log(r"event=tls_reloaded", timeout=0))
            self.srv.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while len(self.wait_log(r"event=tls_reloaded", timeout=0)) == n:
                self.assertLess(time.monotonic(), deadline, self.srv.log_tail())
                time.sleep(0.05)
            after = serial()
            self.assertNotEqual(before, after)
            self.assertEqual(ask(kept), 200)  # undisturbed, on the old certificate
            self.assertEqual(kept.getpeercert()["serialNumber"], before)
            # A bad pair is refused: the server keeps serving the rotated certificate.
            shutil.copy(os.path.join(self.tmp, "ca.key"), self.key)
            self.srv.proc.send_signal(signal.SIGHUP)
            lines = self.wait_log(r"event=tls_reload_failed")
            self.assertTrue(lines, self.srv.log_tail())
            self.assertIn("does not match", lines[-1])
            self.assertIn("still serving the previous certificate", lines[-1])
            self.assertEqual(serial(), after)
            self.assertServes()
        finally:
            kept.close()
            for p, data in saved.items():
                with open(p, "wb") as f:
                    f.write(data)


class TlsCapTest(unittest.TestCase):
    """The connection cap over TLS: the refused connection finishes its handshake and
    reads the 503 over TLS; the established ones keep being served."""

    def test_503_over_tls_at_the_cap(self):
        tmp = tempfile.mkdtemp(prefix="cmdb-tlscap-")
        try:
            ca = make_ca(tmp)
            cert, key = make_cert(tmp, "server")
            with Server.start("tlscap", tls_ca=ca,
                              args=["--tls-cert", cert, "--tls-key", key,
                                    "--max-connections", "2"]) as srv:
                ctx = ssl.create_default_context(cafile=ca)

                def connect():
                    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
                    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

                # Two connections in service, the cap's worth (retried while the
                # readiness probe's connection may still count).
                for _ in range(50):
                    held = [connect(), connect()]
                    if [ask(s) for s in held] == [200, 200]:
                        break
                    for s in held:
                        s.close()
                    time.sleep(0.1)
                else:
                    self.fail("two connections were never served at once")
                try:
                    extra = connect()
                    with extra:
                        resp, eof = recv_all(extra, 5)
                    self.assertEqual(raw_status(resp), 503, resp)
                    self.assertIn(b'"code":"too_many_connections"', resp)
                    self.assertTrue(eof)
                    self.assertEqual(ask(held[0]), 200)
                finally:
                    for s in held:
                        s.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


class PlainSighupTest(unittest.TestCase):
    """SIGHUP never stops the server; without TLS there is nothing to reload."""

    def test_sighup_without_tls(self):
        with Server.start("plainhup") as srv:
            srv.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 5
            while "event=sighup action=none" not in srv.log_tail():
                self.assertIsNone(srv.proc.poll(), "SIGHUP stopped the server")
                self.assertLess(time.monotonic(), deadline, srv.log_tail())
                time.sleep(0.05)
            self.assertEqual(srv.get("/healthz", token=None)[0], 200)
            self.assertIn("tls=0", srv.log_tail(4000))


class TlsStartTest(unittest.TestCase):
    """Bad TLS settings stop `cmdbd serve` at start, naming the file and the fault."""

    @classmethod
    def setUpClass(cls):
        if not os.access(CMDBD_BIN, os.X_OK):
            raise unittest.SkipTest("cmdbd not built")
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-tlsstart-")
        make_ca(cls.tmp)
        cls.cert, cls.key = make_cert(cls.tmp, "server")
        cls.other_cert, cls.other_key = make_cert(cls.tmp, "other")
        cls.enc_cert, cls.enc_key = make_cert(cls.tmp, "enc",
                                              key_opts=("-passout", "pass:secret"))
        cls.garbage = os.path.join(cls.tmp, "garbage.pem")
        with open(cls.garbage, "w") as f:
            f.write("this is not a certificate\n")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def serve(self, *args):
        env = dict(os.environ)
        for k in ("CMDB_TLS_CERT", "CMDB_TLS_KEY", "CMDB_LISTEN"):
            env.pop(k, None)
        env["CMDB_DATABASE_URL"] = "host=/nonexistent dbname=none connect_timeout=1"
        return subprocess.run([CMDBD_BIN, "serve", "--listen", "127.0.0.1:%d" % free_port()]
                              + list(args), env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=30)

    def test_bad_files_stop_the_server(self):
        missing = os.path.join(self.tmp, "missing.pem")
        cases = [
            ((missing, self.key), [missing, "No such file or directory"]),
            ((self.cert, missing), [missing, "No such file or directory"]),
            ((self.cert, self.other_key), ["does not match", self.other_key]),
            ((self.garbage, self.key), ["cannot load the certificate chain", self.garbage]),
            ((self.cert, self.garbage), ["cannot load the private key", self.garbage]),
            ((self.enc_cert, self.enc_key), ["cannot load the private key", "not encrypted"]),
        ]
        for (cert, key), wants in cases:
            with self.subTest(cert=os.path.basename(cert), key=os.path.basename(key)):
                p = self.serve("--tls-cert", cert, "--tls-key", key)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertIn("event=listen_failed", p.stderr)
                for w in wants:
                    self.assertIn(w, p.stderr)
                self.assertNotIn("event=listening", p.stderr)

    def test_plain_http_off_loopback_is_a_warning(self):
        env = dict(os.environ)
        for k in ("CMDB_TLS_CERT", "CMDB_TLS_KEY", "CMDB_LISTEN"):
            env.pop(k, None)
        env["CMDB_DATABASE_URL"] = "host=/nonexistent dbname=none connect_timeout=1"
        for listen, warned in (("0.0.0.0", True), ("127.0.0.1", False)):
            with self.subTest(listen=listen):
                p = subprocess.Popen([CMDBD_BIN, "serve", "--listen",
                                      "%s:%d" % (listen, free_port())], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
                try:
                    lines = []
                    for line in p.stderr:
                        lines.append(line)
                        if "event=serving " in line:  # signals handled from here
                            break
                finally:
                    p.send_signal(signal.SIGTERM)
                    rest = p.communicate(timeout=20)[1]
                log = "".join(lines) + rest
                self.assertIn("tls=0", log)
                self.assertEqual("event=listening_in_the_clear" in log, warned, log)

    def test_cert_and_key_go_together(self):
        for args in (["--tls-cert", self.cert], ["--tls-key", self.key]):
            with self.subTest(args=args):
                p = self.serve(*args)
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn("go together", p.stderr)


if __name__ == "__main__":
    unittest.main()
