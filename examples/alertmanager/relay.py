#!/usr/bin/python3
"""relay.py — an Alertmanager webhook receiver that tells a chat room the likely root cause.

Alertmanager posts each notification here (a second receiver beside cmdbd: see
alertmanager.yml). For the firing alerts that carry a cmdb_ref label, the relay asks cmdbd
which failing thing explains the most of what is failing now (POST /v1/rootcause with the
alerting nodes plus every node whose health is down or degraded), who owns it
(GET /v1/nodes/{ref}/owners), and posts one message to a Slack-compatible incoming
webhook ({"text": ...}):

    [FIRING] PgDown on database/pg: pg is down
    likely root cause database/pg — owned by team/payments, on-call alice

A resolved notification becomes "resolved: PgDown on database/pg". The alert always goes
out: when cmdbd is unreachable or does not know a node, the message says so. The relay
answers Alertmanager 200 once the chat webhook took the message, 502 when it did not
(Alertmanager then retries), 400 for a body that is not a notification.

Usage:
  relay.py --listen 127.0.0.1:9095 --cmdb-url http://cmdbd:8080 \\
           --token-file /etc/prometheus/cmdb-read.token --chat-url https://hooks.slack.com/…

Options fall back to the environment: RELAY_LISTEN, CMDB_URL, CMDB_TOKEN (the token
itself; a read-scope token is enough), CHAT_WEBHOOK_URL. Python 3 standard library only.
"""

import argparse
import http.server
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request

HTTP_TIMEOUT_S = 10
MAX_DEPTH = 16
MAX_BODY = 4 << 20


class CmdbError(Exception):
    """cmdbd could not answer; the message says why, for the chat message."""


class Cmdb:
    """The few cmdbd calls the relay needs."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", "Bearer " + self.token)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
                return json.load(resp)
        except urllib.error.HTTPError as e:
            try:
                err = json.load(e)["error"]
            except (ValueError, KeyError, TypeError):
                err = {"message": e.reason}
            raise CmdbError("%s %s: HTTP %d %s" % (method, path, e.code, err.get("message")),
                            err.get("details")) from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise CmdbError("cannot reach %s: %s" % (self.url, getattr(e, "reason", e))) from None

    def failing_now(self, limit=1000, max_pages=20):
        """Refs of every node now down or degraded (paged, bounded)."""
        refs = []
        for health in ("down", "degraded"):
            cursor = None
            for _ in range(max_pages):
                q = {"health": health, "limit": str(limit)}
                if cursor:
                    q["cursor"] = cursor
                page = self.call("GET", "/v1/nodes?" + urllib.parse.urlencode(q))
                refs += [n["ref"] for n in page.get("items", [])]
                cursor = page.get("next_cursor")
                if not cursor:
                    break
        return refs

    def rootcause(self, failing):
        """(the rootcause answer, the refs cmdbd does not know: left out of it)."""
        try:
            return self.call("POST", "/v1/rootcause",
                             {"failing": failing, "max_depth": MAX_DEPTH}), []
        except CmdbError as e:
            details = e.args[1] if len(e.args) > 1 and isinstance(e.args[1], dict) else {}
            missing = details.get("missing") or []
            rest = [r for r in failing if r not in missing]
            if not missing:
                raise
            if not rest:
                return {}, missing
            return self.call("POST", "/v1/rootcause",
                             {"failing": rest, "max_depth": MAX_DEPTH}), missing

    def owners(self, ref):
        kind, name = ref.split("/", 1)
        path = "/v1/nodes/%s/%s/owners" % (kind, urllib.parse.quote(name, safe=""))
        return self.call("GET", path).get("owners", [])


def headline(cause, owners):
    """likely root cause X — owned by team Y, on-call Z."""
    if not owners:
        return "likely root cause %s — no owner on record" % cause
    first = owners[0]
    line = "likely root cause %s — owned by %s" % (cause, first["ref"])
    oncall = (first.get("attributes") or {}).get("oncall")
    if oncall:
        line += ", on-call %s" % oncall
    if len(owners) > 1:
        line += " (+%d more owners)" % (len(owners) - 1)
    return line


def describe(a):
    labels, ann = a.get("labels") or {}, a.get("annotations") or {}
    text = labels.get("alertname", "alert")
    where = labels.get("cmdb_ref") or labels.get("instance")
    if where:
        text += " on " + where
    if ann.get("summary"):
        text += ": " + ann["summary"]
    return text


def compose(notification, cmdb):
    """The chat text for one notification."""
    alerts = [a for a in notification.get("alerts") or [] if isinstance(a, dict)]
    firing = [a for a in alerts if a.get("status") == "firing"]
    if not firing:
        return "resolved: " + "; ".join(describe(a) for a in alerts)
    lines = ["[FIRING] " + describe(a) for a in firing]
    refs = sorted({(a.get("labels") or {}).get("cmdb_ref") for a in firing} - {None, ""})
    if not refs:
        return "\n".join(lines)
    if cmdb is None:
        return "\n".join(lines + ["(cmdb: no token, no root cause)"])
    try:
        rc, missing = cmdb.rootcause(sorted(set(refs + cmdb.failing_now())))
        causes = rc.get("root_causes") or rc.get("minimal_cover") or []
        for cause in causes[:3]:
            lines.append(headline(cause, cmdb.owners(cause)))
        if missing:
            lines.append("(cmdb has no node %s)" % ", ".join(missing))
        elif not causes:
            lines.append("(cmdb found no root cause)")
    except CmdbError as e:
        lines.append("(cmdb could not analyse this alert: %s)" % e.args[0])
    return "\n".join(lines)


def post_chat(url, text):
    req = urllib.request.Request(url, data=json.dumps({"text": text}).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
        resp.read()


def make_handler(cmdb, chat_url):
    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status, text):
            data = (text + "\n").encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            try:
                n = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                n = -1
            if n < 0 or n > MAX_BODY:
                return self.reply(400 if n < 0 else 413, "bad Content-Length")
            try:
                notification = json.loads(self.rfile.read(n))
                if not isinstance(notification, dict):
                    raise ValueError("not an object")
            except ValueError as e:
                return self.reply(400, "not an Alertmanager notification: %s" % e)
            text = compose(notification, cmdb)
            try:
                post_chat(chat_url, text)
            except (urllib.error.URLError, OSError) as e:
                self.log_message("chat webhook failed: %s", e)
                return self.reply(502, "chat webhook failed: %s" % e)
            self.reply(200, "sent")

    return Handler


def main(argv=None):
    env = os.environ
    p = argparse.ArgumentParser(prog="relay.py", description=__doc__.split("\n")[0])
    p.add_argument("--listen", default=env.get("RELAY_LISTEN", "127.0.0.1:9095"))
    p.add_argument("--cmdb-url", default=env.get("CMDB_URL", "http://127.0.0.1:8080"))
    p.add_argument("--token-file")
    p.add_argument("--chat-url", default=env.get("CHAT_WEBHOOK_URL"))
    a = p.parse_args(argv)
    if not a.chat_url:
        p.error("no chat webhook: give --chat-url or CHAT_WEBHOOK_URL")
    host, _, port = a.listen.rpartition(":")
    if not port.isdigit():
        p.error("--listen wants HOST:PORT")
    token = env.get("CMDB_TOKEN", "")
    if a.token_file:
        with open(a.token_file, encoding="utf-8") as f:
            token = f.read().strip()
    cmdb = Cmdb(a.cmdb_url, token) if token else None
    httpd = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)),
                                            make_handler(cmdb, a.chat_url))
    print("relay.py: listening on %s, cmdbd %s" % (a.listen, a.cmdb_url), file=sys.stderr,
          flush=True)
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
