#!/usr/bin/python3
"""The Nagios example (examples/nagios/): config that Nagios 4 accepts, and a notification
command that names the likely root cause and its owner.

- TestNagiosConfig: `nagios4 -v` accepts cmdb.cfg + example-objects.cfg (skipped when
  nagios4 is not installed: apt-get install nagios4-core).
- TestNotifyRequests: against a stub HTTP server, the script sends the alerting node plus
  every node that is down to POST /v1/rootcause and formats the answer (no database).
- TestNotify: against the real cmdbd with the sample estate loaded: service and host
  alerts, health updates, mail through a stand-in sendmail, recovery, and the alert still
  going out when cmdbd is unreachable.

Run: /usr/bin/python3 tests/e2e/test_nagios.py
"""

import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import REPO, ServerTestCase, free_port, node_path  # noqa: E402

NAGIOS_DIR = os.path.join(REPO, "examples", "nagios")
NOTIFY = os.path.join(NAGIOS_DIR, "cmdb-notify")
NAGIOS4 = shutil.which("nagios4") or shutil.which("nagios4", path="/usr/sbin:/sbin")
PYTHON = "/usr/bin/python3"


def run_notify(args=(), env=None, timeout=60):
    """Run cmdb-notify with a clean environment: only PATH plus the given variables."""
    e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    e.update(env or {})
    return subprocess.run([PYTHON, NOTIFY] + list(args), env=e, capture_output=True,
                          text=True, timeout=timeout)


# ----------------------------------------------------------------------------- config

@unittest.skipUnless(NAGIOS4, "nagios4 not installed (apt-get install nagios4-core)")
class TestNagiosConfig(unittest.TestCase):
    def test_nagios_accepts_the_config(self):
        d = tempfile.mkdtemp(prefix="cmdb-nagios-")
        self.addCleanup(shutil.rmtree, d, True)
        os.chmod(d, 0o777)  # nagios4 -v checks check_result_path as the nagios user
        # The nagios user may not be able to enter the checkout (a 0700 home): check
        # copies of the files, as an installation would have them.
        for name in ("cmdb.cfg", "example-objects.cfg"):
            shutil.copy(os.path.join(NAGIOS_DIR, name), d)
            os.chmod(os.path.join(d, name), 0o644)
        with open(os.path.join(d, "timeperiods.cfg"), "w") as f:
            f.write("define timeperiod {\n timeperiod_name 24x7\n alias always\n"
                    + "".join(" %s 00:00-24:00\n" % day for day in (
                        "sunday", "monday", "tuesday", "wednesday", "thursday", "friday",
                        "saturday"))
                    + "}\n")
        with open(os.path.join(d, "resource.cfg"), "w") as f:
            f.write("$USER10$=http://127.0.0.1:8080\n$USER11$=/etc/nagios4/cmdb.token\n")
        main = os.path.join(d, "nagios.cfg")
        with open(main, "w") as f:
            f.write("\n".join([
                "log_file=%s/nagios.log" % d,
                "cfg_file=%s/timeperiods.cfg" % d,
                "cfg_file=%s/cmdb.cfg" % d,
                "cfg_file=%s/example-objects.cfg" % d,
                "resource_file=%s/resource.cfg" % d,
                "status_file=%s/status.dat" % d,
                "temp_file=%s/nagios.tmp" % d,
                "lock_file=%s/nagios.lock" % d,
                "check_result_path=%s" % d,
                "illegal_macro_output_chars=`~$&|'\"<>",
                "enable_environment_macros=0",
                ""]))
        p = subprocess.run([NAGIOS4, "-v", main], capture_output=True, text=True, timeout=60)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("Total Errors:   0", p.stdout)
        self.assertIn("Total Warnings: 0", p.stdout)


# ----------------------------------------------------------------------------- stub

class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers the three calls cmdb-notify makes with canned replies; records requests."""
    requests = []
    down = ["database/pg-main:5432"]

    def _send(self, obj, status=200):
        out = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        type(self).requests.append(("GET", self.path, None, self.headers.get("Authorization")))
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/v1/nodes":
            q = urllib.parse.parse_qs(u.query)
            items = [{"ref": r} for r in self.down] if q.get("health") == ["down"] else []
            self._send({"items": items, "next_cursor": None})
        elif u.path.endswith("/owners"):
            self._send({"node": "database/pg-main:5432", "owners": [
                {"ref": "team/data", "rule": "part_of",
                 "via": ["database/pg-main:5432", "system/data-platform", "team/data"],
                 "attributes": {"display_name": "Database reliability",
                                "oncall": "https://pager.example.com/schedules/data",
                                "chat": "#team-data", "email": "data@shop.example.com"}}]})
        else:
            self._send({"error": {"status": 404, "code": "not_found", "message": "no",
                                  "request_id": "r", "details": None}}, 404)

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        type(self).requests.append(("POST", self.path, body, self.headers.get("Authorization")))
        self._send({"candidates": [
            {"ref": "database/pg-main:5432", "explains": ["database/pg-main:5432", "service/checkout"],
             "health": "down", "depth": 0},
            {"ref": "service/checkout", "explains": ["service/checkout"], "health": "unknown", "depth": 0}],
            "root_causes": ["database/pg-main:5432"], "minimal_cover": ["database/pg-main:5432"]})

    def log_message(self, *args):
        pass


class TestNotifyRequests(unittest.TestCase):
    def setUp(self):
        _Stub.requests = []
        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), _Stub)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.httpd.server_port

    def tearDown(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def test_service_alert_from_environment_macros(self):
        p = run_notify(env={
            "CMDB_URL": self.url, "CMDB_TOKEN": "tok",
            "NAGIOS_HOSTNAME": "app-03.prod", "NAGIOS_SERVICEDESC": "checkout",
            "NAGIOS_SERVICESTATE": "CRITICAL", "NAGIOS_NOTIFICATIONTYPE": "PROBLEM",
            "NAGIOS_SERVICEOUTPUT": "HTTP 500", "NAGIOS__SERVICECMDB_REF": "service/checkout"})
        self.assertEqual(0, p.returncode, p.stderr)
        first = p.stdout.splitlines()[0]
        self.assertEqual("likely root cause database/pg-main:5432 — owned by team/data, "
                         "on-call https://pager.example.com/schedules/data", first)
        self.assertIn("Failing now (2): database/pg-main:5432, service/checkout", p.stdout)
        self.assertIn("HTTP 500", p.stdout)
        posts = [r for r in _Stub.requests if r[0] == "POST"]
        self.assertEqual([("POST", "/v1/rootcause",
                           {"failing": ["database/pg-main:5432", "service/checkout"], "max_depth": 16},
                           "Bearer tok")], posts)
        self.assertIn("/v1/nodes/database/pg-main%3A5432/owners", [r[1] for r in _Stub.requests])

    def test_no_root_cause_query_for_recovery(self):
        p = run_notify(["--type", "service", "--host", "app-03.prod", "--service", "checkout",
                        "--state", "OK", "--notification-type", "RECOVERY", "--url", self.url],
                       env={"CMDB_TOKEN": "tok"})
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertNotIn("likely root cause", p.stdout)
        self.assertTrue(p.stdout.startswith("RECOVERY: service checkout on app-03.prod is OK"), p.stdout)
        self.assertEqual([], _Stub.requests)

    def test_usage_errors(self):
        self.assertEqual(2, run_notify(["--type", "service", "--host", "h"]).returncode)
        self.assertEqual(2, run_notify([]).returncode)
        self.assertEqual(2, run_notify(["--host", "h", "--ref", "noslash"]).returncode)


# ----------------------------------------------------------------------------- real server

class TestNotify(ServerTestCase):
    server_name = "nagios"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-nagios-e2e-")
        env = dict(os.environ, CMDB_URL=cls.srv.url, CMDB_TOKEN=cls.srv.token("admin"))
        p = subprocess.run([os.path.join(REPO, "examples", "load-estate.sh")], env=env,
                           capture_output=True, text=True, timeout=180)
        if p.returncode != 0:
            raise AssertionError("load-estate.sh failed:\n%s%s" % (p.stdout, p.stderr))
        # The token file, as cmdb.cfg installs it.
        cls.token_file = os.path.join(cls.tmp, "cmdb.token")
        with open(cls.token_file, "w") as f:
            f.write(cls.srv.token("write") + "\n")
        # A stand-in sendmail that keeps the message it is given.
        cls.mailbox = os.path.join(cls.tmp, "mailbox")
        cls.sendmail = os.path.join(cls.tmp, "sendmail")
        with open(cls.sendmail, "w") as f:
            f.write("#!/bin/sh\n[ \"$1\" = -t ] || exit 64\ncat > '%s'\n" % cls.mailbox)
        os.chmod(cls.sendmail, 0o755)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)
        super().tearDownClass()

    def set_health(self, ref, state):
        resp = self.srv.put(node_path(ref) + "/health", {"state": state, "reason": "e2e"})
        self.assertStatus(resp, 200, "health of " + ref)

    def down_for_this_test(self, *refs):
        for ref in refs:
            self.set_health(ref, "down")
            self.addCleanup(self.set_health, ref, "ok")

    def health(self, ref):
        return self.assertStatus(self.srv.get(node_path(ref)), 200)["health"]

    def notify(self, args, token="read", **env):
        e = {"CMDB_URL": self.srv.url, "CMDB_TOKEN": self.srv.token(token)}
        e.update(env)
        p = run_notify(args, env=e)
        self.assertEqual(0, p.returncode, "stdout:\n%s\nstderr:\n%s\nserver log:\n%s"
                         % (p.stdout, p.stderr, self.srv.log_tail(15)))
        return p

    def test_service_alert_database_down(self):
        """checkout alerts; the database it needs is down: the database is the cause."""
        self.down_for_this_test("database/pg-main:5432")
        p = self.notify([], NAGIOS_HOSTNAME="app-03.prod", NAGIOS_SERVICEDESC="checkout",
                        NAGIOS_SERVICESTATE="CRITICAL", NAGIOS_NOTIFICATIONTYPE="PROBLEM",
                        NAGIOS_SERVICEOUTPUT="HTTP 500 on /checkout",
                        NAGIOS__SERVICECMDB_REF="service/checkout")
        self.assertEqual("likely root cause database/pg-main:5432 — owned by team/data, "
                         "on-call https://pager.example.com/schedules/data",
                         p.stdout.splitlines()[0], p.stdout)
        self.assertIn("explains: ", p.stdout)
        self.assertIn("service/checkout", p.stdout)

    def test_cause_found_among_other_down_nodes(self):
        """The alert names only checkout; cart is down (health set by monitoring) and
        checkout needs cart, so cart is the likely cause."""
        self.down_for_this_test("service/cart")
        p = self.notify(["--type", "service", "--host", "app-03.prod", "--service", "checkout",
                         "--state", "CRITICAL", "--ref", "service/checkout"])
        self.assertEqual("likely root cause service/cart — owned by team/checkout, "
                         "on-call https://pager.example.com/schedules/checkout",
                         p.stdout.splitlines()[0], p.stdout)

    def test_host_alert_mails_and_updates_health(self):
        args = ["--type", "host", "--host", "hv-02.prod", "--state", "DOWN",
                "--notification-type", "PROBLEM", "--output", "PING CRITICAL - 100% loss",
                "--ref", "host/hv-02.prod", "--url", self.srv.url, "--token-file", self.token_file,
                "--update-health", "--mail-to", "oncall@shop.example.com",
                "--sendmail", self.sendmail]
        self.addCleanup(self.set_health, "host/hv-02.prod", "ok")
        p = run_notify(args)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual("", p.stdout, "with --mail-to nothing is printed")
        self.assertEqual("down", self.health("host/hv-02.prod"))
        with open(self.mailbox, encoding="utf-8") as f:
            mail = f.read()
        self.assertIn("To: oncall@shop.example.com\n", mail)
        self.assertIn("Subject: ** PROBLEM: hv-02.prod is DOWN — likely root cause host/hv-02.prod"
                      " — owned by team/platform, on-call https://pager.example.com/schedules/platform **",
                      mail)
        self.assertIn("PING CRITICAL - 100% loss", mail)

        # Recovery: health back to ok, no analysis.
        args[args.index("DOWN")] = "UP"
        args[args.index("PROBLEM")] = "RECOVERY"
        p = run_notify(args)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual("ok", self.health("host/hv-02.prod"))
        with open(self.mailbox, encoding="utf-8") as f:
            self.assertNotIn("likely root cause", f.read())

    def test_unknown_node_still_notifies(self):
        p = self.notify(["--host", "nowhere.example", "--state", "DOWN"])
        self.assertIn("PROBLEM: host nowhere.example is DOWN", p.stdout)

    def test_cmdb_unreachable_still_notifies(self):
        p = run_notify(["--host", "hv-01.prod", "--state", "DOWN",
                        "--url", "http://127.0.0.1:%d" % free_port()], env={"CMDB_TOKEN": "x"})
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertIn("PROBLEM: host hv-01.prod is DOWN", p.stdout)
        self.assertIn("Note: cmdb could not analyse this alert: cannot reach", p.stdout)

    def test_bad_token_is_reported_in_the_notification(self):
        p = run_notify(["--host", "hv-01.prod", "--state", "DOWN", "--url", self.srv.url],
                       env={"CMDB_TOKEN": "not-a-token"})
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertIn("HTTP 401", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
