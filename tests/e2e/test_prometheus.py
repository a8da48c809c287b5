#!/usr/bin/python3
"""Prometheus (SPEC §2 Operations, §6): cmdbd's /metrics as Prometheus reads it, and
examples/prometheus/ checked by Prometheus's own tools.

- Rules: `promtool check rules` on cmdbd-rules.yml, its unit tests
  (`promtool test rules cmdbd-rules.test.yml`), `promtool check config` on prometheus.yml.
- RealPrometheus: `promtool check metrics` on a /metrics page of a server that has seen
  traffic of every kind (2xx, 4xx, a manifest, the Alertmanager webhook); then a real
  Prometheus with examples/prometheus/prometheus.yml (the target and timers filled in)
  scrapes cmdbd, and its query API returns cmdb_graph_nodes equal to the map's node count,
  and the example rules loaded and healthy.

Skipped (saying why) when prometheus is not installed (sh cmdbd/dev/deps.sh test).

Run: /usr/bin/python3 tests/e2e/test_prometheus.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import REPO, ServerTestCase, _pdeathsig, free_port  # noqa: E402

PROM_DIR = os.path.join(REPO, "examples", "prometheus")
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")


def promtool(*args, stdin=None):
    return subprocess.run([PROMTOOL] + list(args), input=stdin, capture_output=True, text=True,
                          timeout=60, cwd=PROM_DIR)


@unittest.skipUnless(PROMTOOL, "promtool not installed (apt-get install prometheus)")
class Rules(unittest.TestCase):
    def check(self, p):
        self.assertEqual(p.returncode, 0, "%s\n%s%s" % (p.args, p.stdout, p.stderr))
        return p.stdout + p.stderr

    def test_rules_are_valid(self):
        out = self.check(promtool("check", "rules", "cmdbd-rules.yml"))
        self.assertIn("SUCCESS: 7 rules found", out)

    def test_rules_unit_tests_pass(self):
        out = self.check(promtool("test", "rules", "cmdbd-rules.test.yml"))
        self.assertIn("SUCCESS", out)

    def test_rules_unit_tests_can_fail(self):
        # The unit tests are not vacuous: a rule that never fires fails them.
        d = tempfile.mkdtemp(prefix="cmdb-promrules-")
        self.addCleanup(shutil.rmtree, d, True)
        with open(os.path.join(PROM_DIR, "cmdbd-rules.yml")) as f:
            rules = f.read()
        broken = rules.replace("expr: up{job=\"cmdbd\"} == 0", "expr: up{job=\"cmdbd\"} == 2")
        self.assertNotEqual(broken, rules)
        with open(os.path.join(d, "cmdbd-rules.yml"), "w") as f:
            f.write(broken)
        shutil.copy(os.path.join(PROM_DIR, "cmdbd-rules.test.yml"), d)
        p = subprocess.run([PROMTOOL, "test", "rules", "cmdbd-rules.test.yml"], cwd=d,
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("CmdbdDown", p.stdout + p.stderr)

    def test_config_is_valid(self):
        self.check(promtool("check", "config", "prometheus.yml"))


def http_json(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.load(r)


@unittest.skipUnless(PROMETHEUS and PROMTOOL,
                     "prometheus not installed (sh cmdbd/dev/deps.sh test)")
class RealPrometheus(ServerTestCase):
    server_name = "prom"

    def traffic(self):
        """Requests of every kind, so /metrics has every family and label shape."""
        s = self.srv
        self.assertStatus(s.put_node("service/a", {}), (200, 201))
        self.assertStatus(s.put_node("database/b", {}), (200, 201))
        self.assertStatus(s.put_edge("service/a", "depends_on", "database/b"), (200, 201))
        self.assertEqual(s.get("/v1/nodes/service/nope")[0], 404)
        self.assertEqual(s.get("/v1/nodes", token=None)[0], 401)
        self.assertEqual(s.post("/v1/manifests", {"manifest": "cmdb/v0"})[0], 400)
        self.assertStatus(s.post("/v1/manifests", {
            "manifest": "cmdb/v1", "source": "ci:a", "nodes": [{"ref": "service/c"}]}), 200)
        self.assertStatus(s.post("/v1/integrations/alertmanager", {
            "version": "4", "status": "firing", "alerts": [
                {"status": "firing", "labels": {"cmdb_ref": "database/b"}}]}), 200)
        self.assertStatus(s.post("/v1/rootcause", {}), 200)

    def metrics(self):
        st, h, body = self.srv.get("/metrics", token=None)
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/plain; version=0.0.4"), h)
        return body

    def test_promtool_check_metrics_is_clean(self):
        self.traffic()
        text = self.metrics()
        for name in ("cmdb_http_requests_total", "cmdb_graph_nodes", "cmdb_change_seq_latest",
                     "cmdb_graph_ready 1", 'route="integrations.alertmanager"'):
            self.assertIn(name, text)
        # Quiet now: the graph has applied everything NOTIFY announced (no lag).
        def value(name):
            return [float(line.split()[1]) for line in self.metrics().splitlines()
                    if line.startswith(name + " ")][0]
        deadline = time.monotonic() + 10
        while value("cmdb_change_seq_latest") != value("cmdb_change_seq") \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(value("cmdb_change_seq_latest"), value("cmdb_change_seq"))
        self.assertGreater(value("cmdb_change_seq"), 0)
        p = promtool("check", "metrics", stdin=text)
        self.assertEqual((p.returncode, p.stdout + p.stderr), (0, ""),
                         "promtool check metrics must be clean")

    def test_prometheus_scrapes_cmdbd(self):
        self.traffic()
        tmp = tempfile.mkdtemp(prefix="cmdb-prom-")
        self.addCleanup(shutil.rmtree, tmp, True)
        with open(os.path.join(PROM_DIR, "prometheus.yml")) as f:
            config = f.read()
        for old, new in (("cmdbd.example:8080", "127.0.0.1:%d" % self.srv.port),
                         ("alertmanager.example:9093", "127.0.0.1:%d" % free_port()),
                         ("scrape_interval: 15s", "scrape_interval: 1s"),
                         ("evaluation_interval: 15s", "evaluation_interval: 1s")):
            self.assertIn(old, config)
            config = config.replace(old, new)
        with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
            f.write(config)
        shutil.copy(os.path.join(PROM_DIR, "cmdbd-rules.yml"), tmp)
        port = free_port()
        url = "http://127.0.0.1:%d" % port
        log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.addCleanup(log.close)
        proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + os.path.join(tmp, "prometheus.yml"),
             "--storage.tsdb.path=" + os.path.join(tmp, "data"),
             "--web.listen-address=127.0.0.1:%d" % port],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=_pdeathsig)

        def stop():
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.addCleanup(stop)

        def logtail():
            with open(os.path.join(tmp, "prometheus.log"), errors="replace") as f:
                return "".join(f.readlines()[-20:])

        want = len(self.assertStatus(self.srv.get("/v1/nodes?limit=1000"), 200)["items"])
        q = url + "/api/v1/query?" + urllib.parse.urlencode(
            {"query": 'cmdb_graph_nodes{job="cmdbd"}'})
        deadline = time.monotonic() + 45
        got = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.fail("prometheus exited %s:\n%s" % (proc.returncode, logtail()))
            try:
                res = http_json(q)
                series = res["data"]["result"]
                if series:
                    got = series
                    break
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                pass
            time.sleep(0.3)
        self.assertTrue(got, "no cmdb_graph_nodes in Prometheus:\n%s" % logtail())
        self.assertEqual(len(got), 1)
        self.assertEqual(got[0]["metric"]["instance"], "127.0.0.1:%d" % self.srv.port)
        self.assertEqual(float(got[0]["value"][1]), want)
        # The target is healthy and the example rules loaded and evaluate cleanly.
        targets = http_json(url + "/api/v1/targets")["data"]["activeTargets"]
        self.assertEqual([(t["labels"]["job"], t["health"]) for t in targets],
                         [("cmdbd", "up")], targets)
        deadline = time.monotonic() + 20
        while True:
            groups = http_json(url + "/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            if rules and all(r.get("lastEvaluation", "").startswith("20") for r in rules) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertEqual(len(rules), 7, groups)
        self.assertEqual({r["health"] for r in rules}, {"ok"}, rules)
        self.assertEqual([r["name"] for r in rules if r["state"] != "inactive"], [],
                         "a healthy cmdbd raises no alert")
        # A manifest refused now (counted after the first scrape) fires the rule for it.
        self.assertEqual(self.srv.post("/v1/manifests", {"manifest": "cmdb/v0"})[0], 400)
        deadline = time.monotonic() + 30
        while True:
            groups = http_json(url + "/api/v1/rules")["data"]["groups"]
            firing = sorted(r["name"] for g in groups for r in g["rules"] if r["state"] == "firing")
            if firing or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        self.assertEqual(firing, ["CmdbdManifestsRejected"], groups)


if __name__ == "__main__":
    unittest.main(verbosity=2)
