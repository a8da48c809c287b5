#!/usr/bin/python3
"""The deploy-tool examples, run for real against a real cmdbd.

- examples/load-estate.sh loads the sample estate (examples/manifests/) with curl;
- `fab` (examples/fabric) deploys service/payments over the estate's fabric:payments
  manifest, then deploys again without one dependency: that edge must go, the node only
  that dependency reached must become an orphan, the deployments must be listed;
- `cap` (examples/capistrano, stage `local`) does the same for service/storefront, and
  `cap local cmdb:notify` runs standalone;
- refusals (a token whose source glob does not allow the source, no token) make the tool
  exit non-zero with the server's reason, and change nothing; dry runs change nothing.

Skipped, saying why, when fab or cap is missing (`make test` installs both) or when the
harness has no PostgreSQL cluster (tests/e2e/lib.py).

Run: /usr/bin/python3 tests/e2e/test_deploy_tools.py
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lib import REPO, ServerTestCase, node_path  # noqa: E402

FAB = shutil.which("fab")
CAP = shutil.which("cap")
EXAMPLES = os.path.join(REPO, "examples")
TOOL_TIMEOUT = 180


def report_of(stdout):
    """The apply report: the tools print it as indented JSON after their summary lines,
    so it starts at the last line that is just "{"."""
    lines = stdout.splitlines()
    starts = [i for i, line in enumerate(lines) if line == "{"]
    if not starts:
        raise AssertionError("no JSON report in the tool's output:\n" + stdout)
    return json.loads("\n".join(lines[starts[-1]:]))


class DeployToolsCase(ServerTestCase):
    """Shared set-up: a server with the sample estate loaded and scoped deploy tokens."""

    server_name = "deploytools"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        srv = cls.srv
        srv.create_token("fabric-deployer", "write", source_glob="fabric:*")
        srv.create_token("cap-deployer", "write", source_glob="capistrano:*")
        cls.tmp = tempfile.mkdtemp(prefix="cmdb-deploy-tools-")
        p = subprocess.run([os.path.join(EXAMPLES, "load-estate.sh")], env=cls.env(srv.token("admin")),
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        if p.returncode != 0:
            raise AssertionError("load-estate.sh failed (%d):\n%s\n%s\nserver log:\n%s"
                                 % (p.returncode, p.stdout, p.stderr, srv.log_tail(30)))
        cls.estate_output = p.stdout

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)
        super().tearDownClass()

    @classmethod
    def env(cls, token, **extra):
        """The tools' environment: this server, this token, nothing inherited from CMDB_*/CAP_*."""
        e = {k: v for k, v in os.environ.items()
             if not k.startswith(("CMDB_", "CAP_")) and k not in ("REVISION",)}
        e.update(CMDB_URL=cls.srv.url, CMDB_TOKEN=token, TMPDIR=cls.tmp, USER="e2e-deployer")
        e.update(extra)
        return e

    # -- reading the map

    def out_edges(self, ref):
        resp = self.srv.get(node_path(ref) + "/edges?direction=out")
        body = self.assertStatus(resp, 200, "edges of " + ref)
        return {(e["type"], e["to"]) for e in body["edges"]}

    def node(self, ref, status=200):
        resp = self.srv.get(node_path(ref))
        return self.assertStatus(resp, status, "GET " + ref)

    def deployments(self, ref):
        resp = self.srv.get("/v1/deployments?" + urllib.parse.urlencode({"node": ref}))
        return self.assertStatus(resp, 200, "deployments of " + ref)["items"]

    def map_fingerprint(self):
        """What a refused or dry-run deploy must not change: the change feed's position
        (the seq of the newest change), read page by page."""
        since = 0
        while True:
            resp = self.srv.get("/v1/changes?since=%d&limit=1000" % since)
            body = self.assertStatus(resp, 200, "changes")
            if not body["changes"]:
                return since
            since = body["next"]

    # -- running the tools

    def token_value(self, name):
        """The secret of a harness token by name; any other string is used as is."""
        if name is None:
            return ""
        try:
            return self.srv.token(name)
        except KeyError:
            return name

    def run_tool(self, argv, env, cwd, ok=True):
        p = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                           timeout=TOOL_TIMEOUT)
        what = "%s → %d\nstdout:\n%s\nstderr:\n%s\nserver log:\n%s" % (
            " ".join(argv), p.returncode, p.stdout[-4000:], p.stderr[-4000:], self.srv.log_tail(15))
        if ok:
            self.assertEqual(0, p.returncode, what)
        else:
            self.assertNotEqual(0, p.returncode, "expected a failure: " + what)
        return p


class TestEstate(DeployToolsCase):
    def test_estate_loaded(self):
        self.assertIn("manifests applied", self.estate_output)
        n = self.node("service/payments")
        self.assertIn("fabric:payments", n["sources"])
        self.assertEqual({("runs_on", "vm/pay-01.prod"), ("runs_on", "vm/pay-02.prod"),
                          ("depends_on", "database/pg-payments:5432"),
                          ("connects_to", "load_balancer/egress-proxy.prod"),
                          ("part_of", "system/payments-platform"),
                          ("owned_by", "team/payments")}, self.out_edges("service/payments"))
        team = self.node("team/payments")
        for k in ("email", "chat", "oncall", "phone"):
            self.assertIn(k, team["attributes"])

    def test_estate_reload_is_a_no_op(self):
        before = self.map_fingerprint()
        p = subprocess.run([os.path.join(EXAMPLES, "load-estate.sh")],
                           env=self.env(self.srv.token("admin")),
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertEqual(before, self.map_fingerprint(), "re-sending the same manifests changed the map")


@unittest.skipUnless(FAB, "fab not installed: apt-get install fabric (make test installs it)")
class TestFabric(DeployToolsCase):
    server_name = "deploytools_fab"
    SERVICE = "service/payments"

    def fab(self, *args, token="fabric-deployer", ok=True):
        """Run fab; token is a token name from the harness, a literal, or None (unset)."""
        argv = [FAB, "-r", os.path.join(EXAMPLES, "fabric")] + list(args)
        e = self.env(self.token_value(token))
        if token is None:
            e.pop("CMDB_TOKEN")
        return self.run_tool(argv, e, cwd=self.tmp, ok=ok)

    def deploy_args(self, version, deps, extra=()):
        args = ["deploy", "--service", "payments", "--version", version,
                "--host", "vm/pay-01.prod", "--team", "payments",
                "--system", "payments-platform", "--root", os.path.join(self.tmp, "releases")]
        for d in deps:
            args += ["--dep", d]
        return args + list(extra)

    def test_deploy_then_drop_a_dependency(self):
        # 1. Replaces the estate's fabric:payments manifest: pay-02 and the egress proxy
        #    edge are no longer asserted, the ledger dependency is new.
        p = self.fab(*self.deploy_args("2.0.0", ["database/pg-payments:5432", "service/ledger"],
                                       ["--revision", "cafe1234"]))
        rep = report_of(p.stdout)
        self.assertEqual(2, rep["edges"]["removed"], rep)
        self.assertEqual({("runs_on", "vm/pay-01.prod"), ("depends_on", "database/pg-payments:5432"),
                          ("depends_on", "service/ledger"), ("part_of", "system/payments-platform"),
                          ("owned_by", "team/payments")}, self.out_edges(self.SERVICE))
        node = self.node(self.SERVICE)
        self.assertEqual("2.0.0", node["attributes"]["version"])
        self.assertEqual("fabric", node["attributes"]["deployed_with"])
        # Merged key by key: the estate's attributes survive the deploy's.
        self.assertEqual("python", node["attributes"]["language"])
        self.assertFalse(self.node("service/ledger")["orphan"])
        dep = self.deployments(self.SERVICE)[0]
        self.assertEqual(("fabric:payments", "2.0.0", "cafe1234", "succeeded", "e2e-deployer"),
                         (dep["source"], dep["version"], dep["revision"], dep["status"], dep["actor"]))
        self.assertEqual(rep["deployment_id"], dep["id"])

        # 2. The same service, one dependency fewer: that edge goes, and the node only it
        #    reached is now asserted by nobody.
        p = self.fab(*self.deploy_args("2.0.1", ["database/pg-payments:5432"],
                                       ["--revision", "cafe5678"]))
        rep = report_of(p.stdout)
        self.assertEqual(1, rep["edges"]["removed"], rep)
        self.assertEqual(0, rep["edges"]["created"], rep)
        self.assertIn("service/ledger", rep["orphaned"])
        self.assertIn("removed 1", p.stdout)
        self.assertNotIn(("depends_on", "service/ledger"), self.out_edges(self.SERVICE))
        self.assertIn(("depends_on", "database/pg-payments:5432"), self.out_edges(self.SERVICE))
        self.assertTrue(self.node("service/ledger")["orphan"])
        versions = [d["version"] for d in self.deployments(self.SERVICE)]
        self.assertEqual(["2.0.1", "2.0.0"], versions[:2], "newest first")

        # 3. Re-loading the estate must not roll the deploy back: its fabric:payments
        #    manifest has an older generation (409), which load-estate.sh skips.
        p = subprocess.run([os.path.join(EXAMPLES, "load-estate.sh")],
                           env=self.env(self.srv.token("admin")),
                           capture_output=True, text=True, timeout=TOOL_TIMEOUT)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        self.assertIn("fabric-payments.json: skipped", p.stdout)
        self.assertNotIn(("runs_on", "vm/pay-02.prod"), self.out_edges(self.SERVICE))
        self.assertEqual("2.0.1", self.node(self.SERVICE)["attributes"]["version"])

    def test_revision_from_git(self):
        repo = os.path.join(self.tmp, "gitrepo-fab")
        os.makedirs(repo)
        git = ["git", "-C", repo, "-c", "user.name=e2e", "-c", "user.email=e2e@example.com"]
        subprocess.run(git + ["init", "-q"], check=True)
        subprocess.run(git + ["commit", "-q", "--allow-empty", "-m", "x"], check=True)
        head = subprocess.run(git + ["rev-parse", "--short=12", "HEAD"], check=True,
                              capture_output=True, text=True).stdout.strip()
        p = self.fab("deploy", "--service", "fab-gitrev", "--version", "0.1.0",
                     "--repo", repo, "--host", "vm/app-01.prod",
                     "--root", os.path.join(self.tmp, "releases"))
        self.assertEqual(head, self.deployments("service/fab-gitrev")[0]["revision"], p.stdout)

    def test_dry_runs_change_nothing(self):
        before = self.map_fingerprint()
        p = self.fab(*self.deploy_args("9.9.9", [], ["--plan"]))
        self.assertIn("dry run", p.stdout)
        self.fab("-R", *self.deploy_args("9.9.8", []))
        self.assertEqual(before, self.map_fingerprint(), "a dry run changed the map")
        self.assertNotIn("9.9.9", [d["version"] for d in self.deployments(self.SERVICE)])

    def test_refused_manifest_fails_the_deploy(self):
        before = self.map_fingerprint()
        # A write token restricted to capistrano:* may not write fabric:payments.
        p = self.fab(*self.deploy_args("6.6.6", []), token="cap-deployer", ok=False)
        self.assertIn("HTTP 403", p.stderr)
        p = self.fab(*self.deploy_args("6.6.7", []), token=None, ok=False)
        self.assertIn("CMDB_TOKEN", p.stderr)
        p = self.fab(*self.deploy_args("6.6.8", []), token="no-such-token", ok=False)
        self.assertIn("HTTP 401", p.stderr)
        self.assertEqual(before, self.map_fingerprint(), "a refused deploy changed the map")


@unittest.skipUnless(CAP, "cap not installed: apt-get install capistrano (make test installs it)")
class TestCapistrano(DeployToolsCase):
    server_name = "deploytools_cap"
    SERVICE = "service/storefront"
    CAPDIR = os.path.join(EXAMPLES, "capistrano")

    def cap(self, *args, deps=None, token="cap-deployer", ok=True, **env):
        e = self.env(self.token_value(token), CAP_DEPLOY_TO=os.path.join(self.tmp, "cap-deploy"),
                     CMDB_SERVICE="storefront", CMDB_HOSTS="vm/app-01.prod,vm/app-02.prod",
                     CMDB_TEAM="web", CMDB_SYSTEM="shop", **env)
        if deps is not None:
            e["CMDB_DEPS"] = ",".join(deps)
        return self.run_tool([CAP, "local"] + list(args), e, cwd=self.CAPDIR, ok=ok)

    def test_deploy_then_drop_a_dependency(self):
        deps = ["service/catalog", "service/cart", "cache/redis-sessions:6379",
                "connects_to=load_balancer/egress-proxy.prod"]
        p = self.cap("deploy", deps=deps, CMDB_VERSION="3.19.0", REVISION="beef0001")
        rep = report_of(p.stdout)
        base = {("runs_on", "vm/app-01.prod"), ("runs_on", "vm/app-02.prod"),
                ("depends_on", "service/catalog"), ("depends_on", "cache/redis-sessions:6379"),
                ("part_of", "system/shop"), ("owned_by", "team/web")}
        expected = base | {("depends_on", "service/cart"),
                           ("connects_to", "load_balancer/egress-proxy.prod")}
        self.assertEqual(expected, self.out_edges(self.SERVICE))
        # The estate's capistrano:storefront also had search and auth.
        self.assertEqual(2, rep["edges"]["removed"], rep)
        dep = self.deployments(self.SERVICE)[0]
        self.assertEqual(("capistrano:storefront", "3.19.0", "beef0001", "succeeded", "local"),
                         (dep["source"], dep["version"], dep["revision"], dep["status"],
                          dep["environment"]))
        self.assertTrue(os.path.islink(os.path.join(self.tmp, "cap-deploy", "current")))

        # Second deploy without service/cart: the edge goes; service/cart itself is still
        # declared by its own source (capistrano:cart), so it is not an orphan.
        p = self.cap("deploy", deps=[d for d in deps if d != "service/cart"],
                     CMDB_VERSION="3.19.1", REVISION="beef0002")
        rep = report_of(p.stdout)
        self.assertEqual(1, rep["edges"]["removed"], rep)
        self.assertNotIn("service/cart", rep["orphaned"])
        self.assertEqual(expected - {("depends_on", "service/cart")}, self.out_edges(self.SERVICE))
        self.assertFalse(self.node("service/cart")["orphan"])

        # cmdb:notify alone re-sends the same assertions: nothing to create or remove.
        p = self.cap("cmdb:notify", deps=[d for d in deps if d != "service/cart"],
                     CMDB_VERSION="3.19.1", REVISION="beef0002")
        rep = report_of(p.stdout)
        self.assertEqual((0, 0), (rep["edges"]["created"], rep["edges"]["removed"]), rep)
        self.assertEqual(["3.19.1", "3.19.1", "3.19.0"],
                         [d["version"] for d in self.deployments(self.SERVICE)][:3])

    def test_plan_and_refusal_change_nothing(self):
        before = self.map_fingerprint()
        p = self.cap("cmdb:notify", deps=[], CMDB_VERSION="0.0.1", CMDB_PLAN="1")
        self.assertIn("dry run", p.stdout)
        p = self.cap("cmdb:notify", deps=[], CMDB_VERSION="0.0.2", token="fabric-deployer", ok=False)
        self.assertIn("HTTP 403", p.stderr)
        self.assertEqual(before, self.map_fingerprint(), "a plan or a refusal changed the map")


if __name__ == "__main__":
    unittest.main(verbosity=2)
