#!/usr/bin/python3
"""Alertmanager (SPEC §6): POST /v1/integrations/alertmanager, POST /v1/rootcause without
`failing`, and examples/alertmanager/ driven by a real Alertmanager.

- Webhook: the endpoint itself, with notifications shaped exactly as Alertmanager 0.25
  sends them (version 4): firing/resolved and the severity mapping, the reason text, the
  alerts of one node folded (worst wins), alerts without cmdb_ref and refs naming no node
  counted in `ignored`, one transaction (a bad alert anywhere writes nothing), scopes,
  malformed notifications (400 naming the field), the alert cap (413 naming the limit),
  fields Alertmanager may add accepted, and the rootcause in the reply.
- RootcauseNow: POST /v1/rootcause with `failing` omitted = every node now down or
  degraded, the same answer as naming them.
- Relay: relay.py on its own, posting to a chat sink: the message names the cause, its
  team and on-call; a node cmdbd does not know, or cmdbd unreachable, still sends the
  alert (saying why there is no analysis); a chat webhook that fails is a 502.
- RealAlertmanager: a real prometheus-alertmanager whose receivers (examples/alertmanager/
  alertmanager.yml) are cmdbd, with the token in http_config, and the chat relay
  (examples/alertmanager/relay.py) posting to a chat sink; alerts are posted to
  Alertmanager's own API v2, and cmdbd's health and root cause follow them firing and
  resolved, and the chat message names the root cause, its team and on-call. Skipped
  (saying why) when prometheus-alertmanager is not installed (cmdbd/dev/deps.sh test).

Run: /usr/bin/python3 tests/e2e/test_alertmanager.py
"""

import datetime
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import REPO, ServerTestCase, _pdeathsig, free_port, node_path  # noqa: E402

HOOK = "/v1/integrations/alertmanager"
AM_DIR = os.path.join(REPO, "examples", "alertmanager")
ALERTMANAGER = shutil.which("prometheus-alertmanager")
AMTOOL = shutil.which("amtool")
PYTHON = "/usr/bin/python3"

# A small estate: web needs api needs pg (which runs on host db1); payments owns api and
# pg; search owns web. team attributes carry the on-call contact.
ESTATE = {
    "nodes": ["service/web", "service/api", "database/pg", "host/db1", "team/payments",
              "team/search", "service/lonely"],
    "edges": [("service/web", "depends_on", "service/api"),
              ("service/api", "depends_on", "database/pg"),
              ("database/pg", "runs_on", "host/db1"),
              ("service/api", "owned_by", "team/payments"),
              ("database/pg", "owned_by", "team/payments"),
              ("service/web", "owned_by", "team/search")],
}
TEAM_ATTRS = {"team/payments": {"oncall": "alice", "chat": "#payments"},
              "team/search": {"oncall": "bob"}}


def alert(ref=None, status="firing", name="PgDown", summary="pg is down", severity=None,
          **extra_labels):
    """One alert exactly as Alertmanager 0.25 puts it in a webhook notification."""
    labels = {"alertname": name, "instance": "db1:9187", "job": "postgres"}
    if ref is not None:
        labels["cmdb_ref"] = ref
    if severity is not None:
        labels["severity"] = severity
    labels.update(extra_labels)
    annotations = {"summary": summary} if summary is not None else {}
    return {"status": status, "labels": labels, "annotations": annotations,
            "startsAt": "2026-12-01T02:00:00.000Z",
            "endsAt": ("2026-12-01T02:05:00.000Z" if status == "resolved"
                       else "0001-01-01T00:00:00Z"),
            "generatorURL": "http://prometheus:9090/graph?g0.expr=up%3D%3D0",
            "fingerprint": "%016x" % (abs(hash((ref, name))) % (1 << 64))}


def notification(alerts, status=None):
    """A whole webhook body (version 4), as Alertmanager 0.25 sends it."""
    status = status or ("firing" if any(a.get("status") == "firing" for a in alerts
                                        if isinstance(a, dict)) else "resolved")
    return {"receiver": "cmdb", "status": status, "alerts": alerts,
            "groupLabels": {"cmdb_ref": "x"}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093", "version": "4",
            "groupKey": "{}:{cmdb_ref=\"x\"}", "truncatedAlerts": 0}


class EstateCase(ServerTestCase):
    """A server with ESTATE loaded; every node's health back to unknown before each test
    (the rootcause of "everything failing" sees the whole map)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for ref in ESTATE["nodes"]:
            cls.srv.put_node(ref, TEAM_ATTRS.get(ref, {}))
        for f, t, to in ESTATE["edges"]:
            st = cls.srv.put_edge(f, t, to)[0]
            assert st in (200, 201), st

    def setUp(self):
        for ref in ESTATE["nodes"]:
            self.assertStatus(self.srv.put(node_path(ref) + "/health", {"state": "unknown"}),
                              200)

    def node(self, ref):
        return self.assertStatus(self.srv.get(node_path(ref)), 200)

    def hook(self, body, token="write", **kw):
        return self.srv.post(HOOK, body, token=token, **kw)

    def changes(self, since=0):
        """Every change after since, and the feed's next."""
        out = []
        while True:
            page = self.assertStatus(self.srv.get("/v1/changes?since=%d&limit=1000" % since), 200)
            out += page["changes"]
            if not page["changes"]:
                return out, since
            since = page["next"]


class Webhook(EstateCase):
    server_name = "am_hook"

    def test_firing_sets_down_with_reason_and_rootcause(self):
        r = self.assertStatus(self.hook(notification([alert("database/pg")])), 200)
        self.assertEqual(r["updated"], ["database/pg"])
        self.assertEqual(r["ignored"], 0)
        n = self.node("database/pg")
        self.assertEqual(n["health"], "down")
        self.assertEqual(n["health_reason"], "PgDown: pg is down")
        # The reply's rootcause already sees the write (read-your-writes), and is the
        # §2 answer for everything now down or degraded.
        rc = r["rootcause"]
        self.assertEqual(set(rc), {"candidates", "root_causes", "minimal_cover"})
        self.assertEqual(rc["root_causes"], ["database/pg"])
        self.assertEqual(rc["minimal_cover"], ["database/pg"])
        self.assertEqual(rc["candidates"][0]["ref"], "database/pg")
        self.assertEqual(rc["candidates"][0]["health"], "down")
        # The change is recorded like a health PUT: actor and source of the token.
        last = [c for c in self.changes()[0] if c["ref"] == "database/pg"][-1]
        self.assertEqual((last["op"], last["actor"], last["source"]),
                         ("node.updated", "write", "api:write"))
        self.assertEqual(last["after"]["health"], "down")

    def test_severity_mapping(self):
        cases = [("critical", "down"), (None, "down"), ("page", "down"),
                 ("warning", "degraded"), ("info", "degraded"), ("Warning", "degraded")]
        for severity, want in cases:
            with self.subTest(severity=severity):
                body = notification([alert("service/api", severity=severity)])
                self.assertStatus(self.hook(body), 200)
                self.assertEqual(self.node("service/api")["health"], want)

    def test_resolved_sets_ok(self):
        self.assertStatus(self.hook(notification([alert("service/web", name="WebErrors",
                                                        summary="5xx above 5%")])), 200)
        self.assertEqual(self.node("service/web")["health"], "down")
        r = self.assertStatus(self.hook(notification([alert("service/web", status="resolved",
                                                            name="WebErrors",
                                                            summary="5xx above 5%")])), 200)
        self.assertEqual(r["updated"], ["service/web"])
        n = self.node("service/web")
        self.assertEqual(n["health"], "ok")
        self.assertEqual(n["health_reason"], "WebErrors: 5xx above 5%")
        self.assertEqual(r["rootcause"],
                         {"candidates": [], "root_causes": [], "minimal_cover": []},
                         "nothing is failing any more")

    def test_reason_without_summary_or_alertname(self):
        a = alert("service/api", summary=None, name="ApiSlow")
        self.assertStatus(self.hook(notification([a])), 200)
        self.assertEqual(self.node("service/api")["health_reason"], "ApiSlow")
        a = alert("service/api", summary="p99 above 2s")
        del a["labels"]["alertname"]
        self.assertStatus(self.hook(notification([a])), 200)
        self.assertEqual(self.node("service/api")["health_reason"], "alert: p99 above 2s")

    def test_long_reason_is_cut_at_a_character(self):
        summary = "é" * 3000  # 6000 bytes: over the 4096-byte reason limit
        for name in ("PgDown", "PgDown1"):  # the cut falls after a whole é, then inside one
            with self.subTest(name=name):
                self.assertStatus(self.hook(notification([alert("service/api", name=name,
                                                                summary=summary)])), 200)
                reason = self.node("service/api")["health_reason"]
                self.assertEqual(reason, (name + ": " + summary).encode()[:4096]
                                 .decode(errors="ignore"))
                self.assertIn(len(reason.encode()), (4095, 4096))

    def test_alerts_without_cmdb_ref_are_counted(self):
        body = notification([alert(None, name="Watchdog"), alert("service/api"),
                             alert(None, name="DiskFull")])
        r = self.assertStatus(self.hook(body), 200)
        self.assertEqual(r["updated"], ["service/api"])
        self.assertEqual(r["ignored"], 2)
        self.assertEqual(r["unknown"], [])
        r = self.assertStatus(self.hook(notification([alert(None)])), 200)
        self.assertEqual((r["updated"], r["ignored"]), ([], 1))

    def test_unknown_and_malformed_refs_are_ignored_not_refused(self):
        body = notification([alert("service/nope"), alert("database/pg"),
                             alert("not a ref"), alert(None)])
        r = self.assertStatus(self.hook(body), 200)
        self.assertEqual(r["updated"], ["database/pg"])
        self.assertEqual(r["ignored"], 3)
        self.assertEqual(sorted(r["unknown"]), ["not a ref", "service/nope"])
        self.assertEqual(self.node("database/pg")["health"], "down")
        self.assertEqual(self.srv.get(node_path("service/nope"))[0], 404, "nothing created")
        # ignored counts alerts; unknown names each ref once.
        body = notification([alert("service/nope"), alert("service/nope", name="B"),
                             alert("bad"), alert("bad", name="B"), alert("service/api")])
        r = self.assertStatus(self.hook(body), 200)
        self.assertEqual((r["updated"], r["ignored"]), (["service/api"], 4))
        self.assertEqual(sorted(r["unknown"]), ["bad", "service/nope"])

    def test_alerts_of_one_node_fold_worst_wins(self):
        body = notification([alert("service/api", severity="warning", name="A", summary="a"),
                             alert("service/api", severity="critical", name="B", summary="b"),
                             alert("service/api", status="resolved", name="C", summary="c")])
        r = self.assertStatus(self.hook(body), 200)
        self.assertEqual(r["updated"], ["service/api"], "one update per node")
        n = self.node("service/api")
        self.assertEqual((n["health"], n["health_reason"]), ("down", "B: b"))
        body = notification([alert("service/api", status="resolved", name="C", summary="c"),
                             alert("service/api", severity="info", name="D", summary="d")])
        self.assertStatus(self.hook(body), 200)
        n = self.node("service/api")
        self.assertEqual((n["health"], n["health_reason"]), ("degraded", "D: d"))

    def test_many_nodes_in_one_transaction(self):
        before = self.changes()[1]
        refs = ["service/web", "service/api", "database/pg", "host/db1"]
        r = self.assertStatus(self.hook(notification([alert(x) for x in reversed(refs)])), 200)
        self.assertEqual(r["updated"], sorted(refs), "applied in ref order")
        feed, after = self.changes(before)
        self.assertEqual([c["ref"] for c in feed], sorted(refs))
        # One transaction: the rows share one commit (consecutive seqs, same time).
        self.assertEqual([c["seq"] for c in feed], list(range(before + 1, before + 5)))
        self.assertEqual(len({c["at"] for c in feed}), 1, feed)
        self.assertEqual(r["rootcause"]["root_causes"], ["host/db1"])
        # The same notification again changes nothing (no change rows) but is still 200.
        r = self.assertStatus(self.hook(notification([alert(x) for x in refs])), 200)
        self.assertEqual(r["updated"], sorted(refs))
        self.assertEqual(self.changes(after)[0], [])

    def test_a_bad_alert_anywhere_writes_nothing(self):
        bad = alert("service/web")
        bad["labels"]["severity"] = 3
        r = self.hook(notification([alert("database/pg"), bad]))
        self.assertError(r, 400, "bad_request", mentions=["alerts[1].labels"])
        self.assertEqual(self.node("database/pg")["health"], "unknown")

    def test_scopes(self):
        body = notification([alert("database/pg")])
        self.assertError(self.hook(body, token="read"), 403)
        self.assertError(self.hook(body, token=None), 401)
        self.assertEqual(self.node("database/pg")["health"], "unknown")
        self.assertStatus(self.hook(body, token="admin"), 200)

    def test_malformed_notifications_name_the_field(self):
        good = notification([alert("database/pg")])

        def variant(edit):
            b = json.loads(json.dumps(good))
            edit(b)
            return b

        cases = [
            ("alerts", variant(lambda b: b.pop("alerts"))),
            ("alerts", variant(lambda b: b.__setitem__("alerts", {"a": 1}))),
            ("version", variant(lambda b: b.pop("version"))),
            ("version", variant(lambda b: b.__setitem__("version", "3"))),
            ("version", variant(lambda b: b.__setitem__("version", 4))),
            ("status", variant(lambda b: b.__setitem__("status", 1))),
            ("truncatedAlerts", variant(lambda b: b.__setitem__("truncatedAlerts", "0"))),
            ("commonLabels", variant(lambda b: b["commonLabels"].__setitem__("x", None))),
            ("alerts[0]", variant(lambda b: b["alerts"].__setitem__(0, "firing"))),
            ("alerts[0].status", variant(lambda b: b["alerts"][0].pop("status"))),
            ("alerts[0].status", variant(lambda b: b["alerts"][0].__setitem__("status", "open"))),
            ("alerts[0].labels", variant(lambda b: b["alerts"][0].pop("labels"))),
            ("alerts[0].labels",
             variant(lambda b: b["alerts"][0]["labels"].__setitem__("cmdb_ref", ["x"]))),
            ("alerts[0].annotations",
             variant(lambda b: b["alerts"][0].__setitem__("annotations", []))),
            ("alerts[0].endsAt", variant(lambda b: b["alerts"][0].__setitem__("endsAt", 0))),
        ]
        for field, body in cases:
            with self.subTest(field=field, body=body):
                err = self.assertError(self.hook(body), 400, "bad_request", mentions=[field])
                self.assertEqual(err["details"]["field"].split(".")[0].split("[")[0],
                                 field.split(".")[0].split("[")[0])
        for raw in (b"", b"[]", b"null", b'{"version":"4","alerts":[]} x'):
            with self.subTest(raw=raw):
                self.assertError(self.hook(None, raw=raw), 400)
        self.assertError(self.srv.post(HOOK + "?x=1", good, token="write"), 400, mentions=["x"])
        self.assertEqual(self.node("database/pg")["health"], "unknown")

    def test_fields_alertmanager_may_add_are_accepted(self):
        body = notification([alert("database/pg")])
        body["someFutureField"] = {"a": [1, 2]}
        body["alerts"][0]["silencedBy"] = []
        r = self.assertStatus(self.hook(body), 200)
        self.assertEqual(r["updated"], ["database/pg"])

    def test_empty_notification(self):
        r = self.assertStatus(self.hook(notification([], status="resolved")), 200)
        self.assertEqual((r["updated"], r["ignored"], r["unknown"]), ([], 0, []))

    def test_alert_cap(self):
        body = notification([{"status": "firing", "labels": {}}] * 10001)
        err = self.assertError(self.hook(body), 413, mentions=["alerts", "10000"])
        self.assertEqual(err["details"], {"field": "alerts", "limit": 10000})
        r = self.assertStatus(self.hook(notification([{"status": "firing", "labels": {}}] * 10000)),
                              200)
        self.assertEqual(r["ignored"], 10000)


class RootcauseNow(EstateCase):
    server_name = "am_rc"

    def set_health(self, ref, state):
        self.assertStatus(self.srv.put(node_path(ref) + "/health", {"state": state}), 200)

    def test_failing_omitted_means_everything_down_or_degraded(self):
        empty = self.assertStatus(self.srv.post("/v1/rootcause", {}, token="read"), 200)
        self.assertEqual(empty, {"candidates": [], "root_causes": [], "minimal_cover": []})
        self.set_health("service/web", "degraded")
        self.set_health("database/pg", "down")
        self.set_health("service/lonely", "ok")
        self.set_health("service/api", "unknown")
        implicit = self.assertStatus(self.srv.post("/v1/rootcause", {}, token="read"), 200)
        named = self.assertStatus(self.srv.post(
            "/v1/rootcause", {"failing": ["database/pg", "service/web"]}, token="read"), 200)
        self.assertEqual(implicit, named)
        self.assertEqual(implicit["root_causes"], ["database/pg"])
        # The CLI's rootcause without refs asks the same question.
        p = self.srv.cmdb("rootcause", "--json", token="read")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), implicit)
        self.assertEqual(
            self.assertStatus(self.srv.post("/v1/rootcause", {"max_depth": 0}), 200),
            self.assertStatus(self.srv.post(
                "/v1/rootcause", {"failing": ["database/pg", "service/web"], "max_depth": 0}),
                200))

    def test_empty_failing_is_still_refused(self):
        self.assertError(self.srv.post("/v1/rootcause", {"failing": []}), 400, mentions=["failing"])
        self.assertError(self.srv.post("/v1/rootcause", {"failing": None}), 400,
                         mentions=["failing"])


# ----------------------------------------------------------------------------- the real one

class ChatSink:
    """A Slack-compatible incoming webhook: records the JSON bodies POSTed to it."""

    def __init__(self):
        self.messages = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                try:
                    sink.messages.append(json.loads(self.rfile.read(n)))
                except ValueError as e:
                    sink.messages.append({"unreadable": str(e)})
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def wait_for(what, fn, timeout=30.0, interval=0.2):
    """fn() until it returns something true; fails with what after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


def start_relay(add_cleanup, cmdb_url, token_file, chat_url):
    """relay.py on a free port, stopped by a cleanup given to add_cleanup (a test's
    addCleanup or a class's addClassCleanup). Returns its URL."""
    port = free_port()
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(
        [PYTHON, os.path.join(AM_DIR, "relay.py"), "--listen", "127.0.0.1:%d" % port,
         "--cmdb-url", cmdb_url, "--token-file", token_file, "--chat-url", chat_url],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)

    def stop():
        p.terminate()
        p.wait(10)
        log.close()
    add_cleanup(stop)
    url = "http://127.0.0.1:%d" % port

    def up():
        try:
            urllib.request.urlopen(url, timeout=1)
        except urllib.error.HTTPError:
            return True  # it answers (501 for GET)
        except OSError:
            if p.poll() is not None:
                log.seek(0)
                raise AssertionError("relay.py exited: %s" % log.read().decode(errors="replace"))
            return False
        return True
    wait_for("relay.py listening", up, 15, 0.05)
    return url


def post_json(url, body):
    """(status, text) of a POST."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Relay(EstateCase):
    """relay.py on its own: the message goes out when cmdbd cannot help, and a chat
    webhook that fails makes Alertmanager retry (502)."""
    server_name = "am_relay"

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="cmdb-relay-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.token = os.path.join(self.tmp, "read.token")
        with open(self.token, "w") as f:
            f.write(self.srv.token("read") + "\n")
        self.chat = ChatSink()
        self.addCleanup(self.chat.close)

    def test_message_names_cause_owner_and_oncall(self):
        self.assertStatus(self.srv.put(node_path("host/db1") + "/health", {"state": "down"}), 200)
        url = start_relay(self.addCleanup, self.srv.url, self.token, self.chat.url)
        st, _ = post_json(url, notification([alert("service/web", name="WebErrors",
                                                   summary="5xx above 5%")]))
        self.assertEqual(st, 200)
        self.assertEqual(self.chat.messages, [{
            "text": "[FIRING] WebErrors on service/web: 5xx above 5%\n"
                    "likely root cause host/db1 — owned by team/payments, on-call alice"}])

    def test_unknown_node_and_unreachable_cmdbd_still_send(self):
        url = start_relay(self.addCleanup, self.srv.url, self.token, self.chat.url)
        self.assertEqual(post_json(url, notification([alert("service/ghost")]))[0], 200)
        self.assertEqual(self.chat.messages[-1]["text"],
                         "[FIRING] PgDown on service/ghost: pg is down\n"
                         "(cmdb has no node service/ghost)")
        body = notification([alert("service/ghost"), alert("service/lonely", name="Lonely")])
        self.assertEqual(post_json(url, body)[0], 200)
        self.assertEqual(self.chat.messages[-1]["text"].splitlines()[2:],
                         ["likely root cause service/lonely — no owner on record",
                          "(cmdb has no node service/ghost)"])
        dead = start_relay(self.addCleanup, "http://127.0.0.1:%d" % free_port(), self.token,
                           self.chat.url)
        self.assertEqual(post_json(dead, notification([alert("database/pg")]))[0], 200)
        text = self.chat.messages[-1]["text"]
        self.assertTrue(text.startswith("[FIRING] PgDown on database/pg: pg is down\n"), text)
        self.assertIn("cmdb could not analyse this alert: cannot reach", text)

    def test_chat_failure_is_a_502_and_bad_bodies_a_400(self):
        url = start_relay(self.addCleanup, self.srv.url, self.token,
                          "http://127.0.0.1:%d/hook" % free_port())
        st, text = post_json(url, notification([alert("database/pg")]))
        self.assertEqual(st, 502, text)
        self.assertEqual(post_json(url, [1, 2])[0], 400)


def render_config(path, cmdb_url, token_file, relay_url):
    """examples/alertmanager/alertmanager.yml with its placeholders filled in, and the
    test's short timers (the example's are for production)."""
    with open(os.path.join(AM_DIR, "alertmanager.yml")) as f:
        text = f.read()
    for old, new in (("http://cmdbd.example:8080", cmdb_url),
                     ("/etc/prometheus/cmdb-alertmanager.token", token_file),
                     ("http://127.0.0.1:9095", relay_url),
                     ("group_wait: 30s", "group_wait: 1s"),
                     ("group_interval: 5m", "group_interval: 1s")):
        if old not in text:
            raise AssertionError("alertmanager.yml no longer contains %r" % old)
        text = text.replace(old, new)
    with open(path, "w") as f:
        f.write(text)


@unittest.skipUnless(ALERTMANAGER, "prometheus-alertmanager not installed "
                                   "(sh cmdbd/dev/deps.sh test)")
class RealAlertmanager(EstateCase):
    server_name = "am_real"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-am-")
        cls.procs = []
        try:
            cls._start()
        except BaseException:
            cls._stop()
            raise

    @classmethod
    def _start(cls):
        token_file = os.path.join(cls.tmp, "cmdb.token")
        with open(token_file, "w") as f:
            f.write(cls.srv.token("write") + "\n")
        os.chmod(token_file, 0o600)
        read_token = os.path.join(cls.tmp, "read.token")
        with open(read_token, "w") as f:
            f.write(cls.srv.token("read") + "\n")
        cls.chat = ChatSink()
        relay = start_relay(cls.addClassCleanup, cls.srv.url, read_token, cls.chat.url)
        config = os.path.join(cls.tmp, "alertmanager.yml")
        render_config(config, cls.srv.url, token_file, relay)
        if AMTOOL:
            p = subprocess.run([AMTOOL, "check-config", config], capture_output=True, text=True,
                               timeout=30)
            if p.returncode != 0:
                raise AssertionError("amtool check-config: %s%s" % (p.stdout, p.stderr))
        cls.am_port = free_port()
        cls.am_url = "http://127.0.0.1:%d" % cls.am_port
        cls.am_log = open(os.path.join(cls.tmp, "alertmanager.log"), "wb")
        cls.procs.append(subprocess.Popen(
            [ALERTMANAGER, "--config.file=" + config,
             "--storage.path=" + os.path.join(cls.tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % cls.am_port,
             "--cluster.listen-address=", "--log.level=debug"],
            stdin=subprocess.DEVNULL, stdout=cls.am_log, stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig))

        def ready():
            try:
                with urllib.request.urlopen(cls.am_url + "/-/ready", timeout=2) as r:
                    return r.status == 200
            except (OSError, urllib.error.URLError):
                for p in cls.procs:
                    if p.poll() is not None:
                        raise AssertionError("%s exited (%s); log %s" % (
                            p.args[0], p.returncode, cls.tmp))
                return False
        wait_for("Alertmanager ready", ready, 30)

    @classmethod
    def _stop(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if getattr(cls, "chat", None):
            cls.chat.close()
        if getattr(cls, "am_log", None):
            cls.am_log.close()

    @classmethod
    def tearDownClass(cls):
        cls._stop()
        shutil.rmtree(cls.tmp, True)
        super().tearDownClass()

    def logs(self):
        out = []
        for name in ("alertmanager.log",):
            try:
                with open(os.path.join(self.tmp, name), errors="replace") as f:
                    out.append("--- %s:\n%s" % (name, "".join(f.readlines()[-30:])))
            except OSError:
                pass
        return "\n".join(out) + "\n--- cmdbd:\n" + self.srv.log_tail(20)

    def post_alerts(self, alerts):
        """POST /api/v2/alerts: Alertmanager's own API, as Prometheus calls it."""
        req = urllib.request.Request(self.am_url + "/api/v2/alerts",
                                     data=json.dumps(alerts).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            self.assertEqual(r.status, 200)

    @staticmethod
    def am_alert(ref, name, summary, severity, resolved=False):
        now = datetime.datetime.now(datetime.timezone.utc)
        a = {"labels": {"alertname": name, "cmdb_ref": ref, "severity": severity},
             "annotations": {"summary": summary},
             "startsAt": (now - datetime.timedelta(minutes=5)).isoformat(),
             "generatorURL": "http://prometheus.example/graph"}
        if resolved:
            a["endsAt"] = (now - datetime.timedelta(seconds=1)).isoformat()
        return a

    def health(self, ref):
        return self.node(ref)["health"]

    def test_health_and_rootcause_follow_alertmanager(self):
        try:
            self.post_alerts([self.am_alert("database/pg", "PgDown", "pg is down", "critical"),
                              self.am_alert("service/web", "WebSlow", "p99 above 2s", "warning")])
            wait_for("database/pg down", lambda: self.health("database/pg") == "down")
            wait_for("service/web degraded", lambda: self.health("service/web") == "degraded")
            self.assertEqual(self.node("database/pg")["health_reason"], "PgDown: pg is down")
            rc = self.assertStatus(self.srv.post("/v1/rootcause", {}, token="read"), 200)
            self.assertEqual(rc["root_causes"], ["database/pg"])
            self.assertEqual(rc["minimal_cover"], ["database/pg"])

            # The relay turned the pg notification into one chat line.
            msg = wait_for("the chat message about pg", lambda: [
                m for m in self.chat.messages
                if "likely root cause database/pg" in m.get("text", "")])
            self.assertIn("likely root cause database/pg — owned by team/payments, on-call alice",
                          msg[0]["text"])

            # Resolved in Alertmanager → ok in cmdbd, and nothing left to explain.
            self.post_alerts([self.am_alert("database/pg", "PgDown", "pg is down", "critical",
                                            resolved=True)])
            wait_for("database/pg ok", lambda: self.health("database/pg") == "ok")
            rc = self.assertStatus(self.srv.post("/v1/rootcause", {}, token="read"), 200)
            self.assertEqual(rc["root_causes"], ["service/web"])
            self.post_alerts([self.am_alert("service/web", "WebSlow", "p99 above 2s", "warning",
                                            resolved=True)])
            wait_for("service/web ok", lambda: self.health("service/web") == "ok")
            rc = self.assertStatus(self.srv.post("/v1/rootcause", {}, token="read"), 200)
            self.assertEqual(rc["candidates"], [])
            wait_for("the resolved chat message", lambda: [
                m for m in self.chat.messages if m.get("text", "").startswith("resolved")])
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.logs())) from None


if __name__ == "__main__":
    unittest.main(verbosity=2)
