#!/usr/bin/python3
"""The Nagios example (examples/nagios/): config that Nagios 4 accepts, and a notification
command that names the likely root cause and its owner.

- TestNagiosConfig: `nagios4 -v` accepts cmdb.cfg + example-objects.cfg (skipped when
  nagios4 is not installed: apt-get install nagios4-core).
- TestNagiosDaemon: a real Nagios 4 daemon (foreground, every path in a temp dir, as
  user nagios/nobody when run as root) with the project's cmdb.cfg, a host and two
  services whose checks fail on cue, checks every second; Nagios itself runs
  cmdb-notify, whose mail (through a stand-in sendmail) must name the root cause and
  its owner from a real cmdbd, record health, pass the recovery through, and for the
  host going down name the host, owned through what runs on it.
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
from lib import REPO, ServerTestCase, _pdeathsig, free_port, node_path, poll  # noqa: E402

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

DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
TIMEPERIODS = ("define timeperiod {\n    timeperiod_name 24x7\n    alias always\n"
               + "".join("    %s 00:00-24:00\n" % day for day in DAYS) + "}\n")


def nagios_account():
    """(user, group) the daemon runs as: Nagios drops root privileges to nagios_user, so
    as root that is `nagios` (the package's user) or `nobody`; otherwise ourselves."""
    import grp
    import pwd
    if os.geteuid() != 0:
        pw = pwd.getpwuid(os.geteuid())
        return pw.pw_name, grp.getgrgid(pw.pw_gid).gr_name
    for user in ("nagios", "nobody"):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        return user, grp.getgrgid(pw.pw_gid).gr_name
    raise unittest.SkipTest("running as root and neither user nagios nor nobody exists")


def main_config(d, cfg_files, user, group, extra=()):
    """nagios.cfg with every path Nagios writes inside d."""
    lines = ["cfg_file=%s" % f for f in cfg_files] + [
        "log_file=%s/nagios.log" % d,
        "use_syslog=0",
        "resource_file=%s/resource.cfg" % d,
        "status_file=%s/status.dat" % d,
        "temp_file=%s/nagios.tmp" % d,
        "temp_path=%s" % d,
        "lock_file=%s/nagios.lock" % d,
        "check_result_path=%s/checkresults" % d,
        "object_cache_file=%s/objects.cache" % d,
        "precached_object_file=%s/objects.precache" % d,
        "state_retention_file=%s/retention.dat" % d,
        "retain_state_information=0",
        "use_retained_program_state=0",
        "use_retained_scheduling_info=0",
        "command_file=%s/nagios.cmd" % d,
        "check_external_commands=0",
        "query_socket=%s/nagios.qh" % d,
        "debug_file=%s/nagios.debug" % d,
        "debug_level=0",
        "nagios_user=%s" % user,
        "nagios_group=%s" % group,
        "illegal_macro_output_chars=`~$&|'\"<>",
        "enable_environment_macros=0",
    ] + list(extra)
    path = os.path.join(d, "nagios.cfg")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def private_dir(prefix, user):
    """A temp dir the Nagios user owns (as root the daemon drops to that user)."""
    import pwd
    d = tempfile.mkdtemp(prefix=prefix)
    os.mkdir(os.path.join(d, "checkresults"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam(user)
        for p in (d, os.path.join(d, "checkresults")):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    os.chmod(d, 0o755)
    return d


def write(path, text, mode=0o644):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)


@unittest.skipUnless(NAGIOS4, "nagios4 not installed (apt-get install nagios4-core)")
class TestNagiosConfig(unittest.TestCase):
    def test_nagios_accepts_the_config(self):
        user, group = nagios_account()
        d = private_dir("cmdb-nagios-", user)
        self.addCleanup(shutil.rmtree, d, True)
        # The nagios user may not be able to enter the checkout (a 0700 home): check
        # copies of the files, as an installation would have them.
        for name in ("cmdb.cfg", "example-objects.cfg"):
            shutil.copy(os.path.join(NAGIOS_DIR, name), d)
            os.chmod(os.path.join(d, name), 0o644)
        write(os.path.join(d, "timeperiods.cfg"), TIMEPERIODS)
        write(os.path.join(d, "resource.cfg"),
              "$USER10$=http://127.0.0.1:8080\n$USER11$=/etc/nagios4/cmdb.token\n")
        main = main_config(d, ["%s/%s" % (d, n) for n in (
            "timeperiods.cfg", "cmdb.cfg", "example-objects.cfg")], user, group)
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


# ----------------------------------------------------------------------------- nagios

# The estate the daemon test's cmdbd knows: orders needs the database, which is part of
# the data platform, which team/dba owns (so the owner is found by the part_of rule).
DAEMON_MAP = {
    "manifest": "cmdb/v1", "source": "test:nagios",
    "nodes": [
        {"ref": "team/dba", "attributes": {
            "display_name": "Database reliability", "chat": "#dba",
            "oncall": "https://pager.example.com/schedules/dba"}},
        {"ref": "team/shop", "attributes": {"oncall": "https://pager.example.com/schedules/shop"}},
        {"ref": "system/data-platform"},
        {"ref": "host/db-07.test"},
        {"ref": "database/pg-orders:5432"},
        {"ref": "service/orders"},
    ],
    "edges": [
        {"from": "service/orders", "type": "depends_on", "to": "database/pg-orders:5432"},
        {"from": "service/orders", "type": "owned_by", "to": "team/shop"},
        {"from": "database/pg-orders:5432", "type": "runs_on", "to": "host/db-07.test"},
        {"from": "database/pg-orders:5432", "type": "part_of", "to": "system/data-platform"},
        {"from": "system/data-platform", "type": "owned_by", "to": "team/dba"},
    ],
}

# A check that fails on cue: it reports the state the test wrote into cue/NAME
# (0 OK, 2 CRITICAL) and notes that it ran.
CHECK_CUE = """#!/bin/sh
d=$(dirname "$0")
s=$(cat "$d/cue/$1" 2>/dev/null) || s=3
: > "$d/cue/$1.checked"
case $s in
0) echo "OK - $1 answers" ;;
2) echo "CRITICAL - $1 connection refused" ;;
*) echo "UNKNOWN - no cue for $1"; s=3 ;;
esac
exit $s
"""

# A stand-in sendmail: each message it is handed becomes one file mail/N, written whole.
SENDMAIL = """#!/bin/sh
[ "$1" = -t ] || exit 64
d=$(dirname "$0")/mail
f=$d/$(date +%s%N).$$
cat > "$f.tmp" && mv "$f.tmp" "$f.msg"
"""

OBJECTS = """define command {
    command_name    check-cue
    command_line    $USER1$/check-cue $ARG1$
}

define host {
    host_name               db-07.test
    address                 127.0.0.1
    _CMDB_REF               host/db-07.test
    check_command           check-cue!db-07
    max_check_attempts      1
    check_interval          1
    retry_interval          1
    check_period            24x7
    notification_interval   0
    notification_period     24x7
    contact_groups          cmdb-oncall
}

define service {
    name                    cue-service
    register                0
    host_name               db-07.test
    max_check_attempts      1
    check_interval          1
    retry_interval          1
    check_period            24x7
    notification_interval   0
    notification_period     24x7
    notification_options    w,u,c,r
    contact_groups          cmdb-oncall
}

define service {
    use                     cue-service
    service_description     pg-orders
    _CMDB_REF               database/pg-orders:5432
    check_command           check-cue!pg-orders
}

define service {
    use                     cue-service
    service_description     orders
    _CMDB_REF               service/orders
    check_command           check-cue!orders
}
"""


@unittest.skipUnless(NAGIOS4, "nagios4 not installed (apt-get install nagios4-core)")
class TestNagiosDaemon(ServerTestCase):
    """A real Nagios 4 daemon, configured with the project's cmdb.cfg, runs checks that
    fail on cue and itself runs cmdb-notify; the mail it sends names the root cause and
    its owner as cmdbd knows them."""

    server_name = "nagiosd"
    WAIT_S = 30

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        resp = cls.srv.post("/v1/manifests", DAEMON_MAP)
        if resp[0] != 200:
            raise AssertionError("manifest not applied: %r" % (resp,))
        user, group = nagios_account()
        cls.d = d = private_dir("cmdb-nagiosd-", user)
        os.mkdir(os.path.join(d, "cue"))
        os.mkdir(os.path.join(d, "mail"))
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam(user)
            for sub in ("cue", "mail"):
                os.chown(os.path.join(d, sub), pw.pw_uid, pw.pw_gid)
        for name in ("db-07", "pg-orders", "orders"):
            write(os.path.join(d, "cue", name), "0\n")
        write(os.path.join(d, "check-cue"), CHECK_CUE, 0o755)
        write(os.path.join(d, "sendmail"), SENDMAIL, 0o755)
        shutil.copy(NOTIFY, os.path.join(d, "cmdb-notify"))
        os.chmod(os.path.join(d, "cmdb-notify"), 0o755)
        write(os.path.join(d, "cmdb.token"), cls.srv.token("write") + "\n", 0o644)
        # The project's cmdb.cfg as installed, except that cmdb-notify lives in d and
        # hands its mail to the stand-in sendmail.
        with open(os.path.join(NAGIOS_DIR, "cmdb.cfg")) as f:
            cfg = f.read()
        installed = "command_line    /usr/local/lib/nagios/cmdb-notify "
        if cfg.count(installed) != 2:
            raise AssertionError("cmdb.cfg no longer runs %r in both commands" % installed)
        cfg = cfg.replace(installed, "command_line    %s/cmdb-notify --sendmail %s/sendmail "
                          % (d, d))
        write(os.path.join(d, "cmdb.cfg"), cfg)
        write(os.path.join(d, "objects.cfg"), OBJECTS)
        write(os.path.join(d, "timeperiods.cfg"), TIMEPERIODS)
        write(os.path.join(d, "resource.cfg"), "$USER1$=%s\n$USER10$=%s\n$USER11$=%s/cmdb.token\n"
              % (d, cls.srv.url, d))
        # Checks every second (interval_length=1), all scheduled at once, never
        # answered from the cache, results reaped every second; notifications on.
        cls.cfg = main_config(d, ["%s/%s" % (d, n) for n in (
            "timeperiods.cfg", "cmdb.cfg", "objects.cfg")], user, group, extra=[
            "interval_length=1",
            "service_inter_check_delay_method=n",
            "host_inter_check_delay_method=n",
            "max_service_check_spread=1",
            "max_host_check_spread=1",
            "service_interleave_factor=1",
            "check_result_reaper_frequency=1",
            # Not answered from a cached result: a host check reuses one up to 15 s old.
            "cached_host_check_horizon=0",
            "cached_service_check_horizon=0",
            "status_update_interval=1",
            "enable_notifications=1",
            "execute_service_checks=1",
            "execute_host_checks=1",
            "enable_flap_detection=0",
            "log_notifications=1",
            "log_initial_states=1",
        ])
        with open(os.path.join(d, "stdout"), "w") as out:
            cls.nagios = subprocess.Popen([NAGIOS4, cls.cfg], stdout=out, stderr=subprocess.STDOUT,
                                          preexec_fn=_pdeathsig)

    @classmethod
    def tearDownClass(cls):
        p = getattr(cls, "nagios", None)
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if getattr(cls, "d", None) and not os.environ.get("CMDB_E2E_KEEP_LOGS"):
            shutil.rmtree(cls.d, ignore_errors=True)
        super().tearDownClass()

    # -- helpers

    def nagios_log(self, n=40):
        out = []
        for name in ("stdout", "nagios.log"):
            try:
                with open(os.path.join(self.d, name), errors="replace") as f:
                    out.append("--- %s\n%s" % (name, "".join(f.readlines()[-n:])))
            except OSError as e:
                out.append("--- %s: %s" % (name, e))
        return "\n".join(out)

    def cue(self, name, state):
        write(os.path.join(self.d, "cue", name + ".tmp"), "%d\n" % state)
        os.rename(os.path.join(self.d, "cue", name + ".tmp"), os.path.join(self.d, "cue", name))

    def mails(self):
        d = os.path.join(self.d, "mail")
        out = []
        for name in sorted(os.listdir(d)):
            if name.endswith(".msg"):
                with open(os.path.join(d, name), encoding="utf-8") as f:
                    out.append(f.read())
        return out

    def wait_for(self, what, pred):
        """Poll until pred() is true (bounded by WAIT_S); fail with Nagios's log."""
        got = poll(pred, bool, self.WAIT_S)
        if not got:
            self.assertIsNone(self.nagios.poll(), "nagios exited:\n" + self.nagios_log())
            self.fail("%s: not within %d s\nmail so far: %r\n%s\ncmdbd log:\n%s" % (
                what, self.WAIT_S, self.mails(), self.nagios_log(), self.srv.log_tail(15)))
        return got

    def wait_for_mail(self, what, needle):
        def found():
            return [m for m in self.mails() if needle in m]
        return self.wait_for(what, found)[0]

    def health(self, ref):
        return self.assertStatus(self.srv.get(node_path(ref)), 200)["health"]

    # -- the scenario: one test, in order, since Nagios's state carries over

    def test_nagios_runs_cmdb_notify(self):
        # Nagios is up and checking: every cue has been read at least once.
        self.wait_for("first checks", lambda: all(
            os.path.exists(os.path.join(self.d, "cue", n + ".checked"))
            for n in ("db-07", "pg-orders", "orders")))
        self.assertEqual([], self.mails(), "nothing is failing yet")

        # 1. The database fails. Nagios notifies; cmdb-notify records the health and names
        #    the database itself, owned by team/dba through the data platform.
        self.cue("pg-orders", 2)
        mail = self.wait_for_mail("notification for pg-orders",
                                  "PROBLEM: service pg-orders on db-07.test is CRITICAL")
        self.assertIn("To: oncall@shop.example.com\n", mail)
        self.assertIn("Subject: ** PROBLEM: pg-orders on db-07.test is CRITICAL — likely root cause "
                      "database/pg-orders:5432 — owned by team/dba, on-call "
                      "https://pager.example.com/schedules/dba **", mail)
        self.assertIn("output:   CRITICAL - pg-orders connection refused", mail)
        self.assertIn("[part_of: database/pg-orders:5432 → system/data-platform → team/dba]", mail)
        self.assertEqual("down", self.health("database/pg-orders:5432"))

        # 2. Orders fails too. Its alert names only orders; cmdbd knows the database is
        #    down and that orders needs it: the database is the root cause, team/dba owns it.
        self.cue("orders", 2)
        mail = self.wait_for_mail("notification for orders",
                                  "PROBLEM: service orders on db-07.test is CRITICAL")
        body = mail.split("\n\n", 1)[1]
        self.assertEqual("likely root cause database/pg-orders:5432 — owned by team/dba, "
                         "on-call https://pager.example.com/schedules/dba", body.splitlines()[0], mail)
        self.assertIn("cmdb ref: service/orders", mail)
        self.assertIn("Root cause: database/pg-orders:5432 (health down, explains 2 of 2 failing)", mail)
        self.assertIn("explains: database/pg-orders:5432, service/orders", mail)
        self.assertIn("owner:    team/dba (Database reliability), on-call "
                      "https://pager.example.com/schedules/dba, chat #dba", mail)
        self.assertEqual("down", self.health("service/orders"))

        # 3. The database comes back: a RECOVERY mail, no analysis, health back to ok.
        self.cue("pg-orders", 0)
        mail = self.wait_for_mail("recovery of pg-orders", "RECOVERY: service pg-orders on db-07.test is OK")
        self.assertNotIn("likely root cause", mail)
        self.assertEqual("ok", self.health("database/pg-orders:5432"))

        # 4. The host goes down (the host command of cmdb.cfg). orders is still down;
        #    the database runs on the host, so the host explains both, and its owner is
        #    found through what runs on it: the database, part of team/dba's platform.
        self.cue("db-07", 2)
        mail = self.wait_for_mail("notification for the host", "PROBLEM: host db-07.test is DOWN")
        body = mail.split("\n\n", 1)[1]
        self.assertEqual("likely root cause host/db-07.test — owned by team/dba, "
                         "on-call https://pager.example.com/schedules/dba", body.splitlines()[0], mail)
        self.assertIn("Root cause: host/db-07.test (health down, explains 2 of 2 failing)", mail)
        self.assertIn("[runs_on: ", mail)
        self.assertEqual("down", self.health("host/db-07.test"))
        self.assertEqual(4, len(self.mails()), self.mails())


if __name__ == "__main__":
    unittest.main(verbosity=2)
