#!/usr/bin/env python3
"""`make install`: the installed programs run, the man pages lint clean and document
every command and option the programs print, the bash completion completes, and the
systemd example passes `systemd-analyze verify` and a hardening threshold.

setUpModule runs `make install DESTDIR=<tmp> PREFIX=/usr/local` in the repository with
BUILD set to the directory of the binaries under test (CMDB_BIN's: under valgrind
CMDBD_BIN is a wrapper), so nothing is rebuilt — the test checks that the installed
programs are byte for byte the ones under test. Everything else runs the installed
files from DESTDIR, with a clean environment and a working directory outside the
repository.

The documentation checks render the pages with man(1) (ASCII, 1000 columns: no line is
broken) and look, for every option line of `cmdbd --help`, for an entry in cmdbd(8) that
names the option, its environment variable and its default; for every command of
`cmdb help`, for a subsection of cmdb(1) that names every option of `cmdb help COMMAND`.
A new flag or command without its documentation fails here, saying what to add where.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib  # noqa: E402

PREFIX = "/usr/local"
MANWIDTH = "1000"
TMP = None
DESTDIR = None
BUILD = None        # the build directory, relative to the repository when inside it
SOURCES = {}        # installed path (without DESTDIR) -> the file it must equal


def inst(path):
    """An installed file's path under DESTDIR."""
    return DESTDIR + path


def clean_env(**extra):
    """The environment the installed programs run with: no CMDB_* settings, no make
    state, the installed bin first on PATH, its man pages on MANPATH."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("CMDB_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    env["PATH"] = inst(PREFIX + "/bin") + ":" + env.get("PATH", "/usr/bin:/bin")
    env["MANPATH"] = inst(PREFIX + "/share/man")
    env["MANWIDTH"] = MANWIDTH
    env["LC_ALL"] = "C.UTF-8"
    env.update(extra)
    return env


def run(argv, timeout=60, **kw):
    kw.setdefault("env", clean_env())
    kw.setdefault("cwd", TMP)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def make(*targets, destdir):
    sanitize = "1" if BUILD.rstrip("/").endswith("san") else "0"
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    return subprocess.run(["make", "--no-print-directory", "-C", lib.REPO, "BUILD=" + BUILD,
                           "SANITIZE=" + sanitize, "PREFIX=" + PREFIX, "DESTDIR=" + destdir]
                          + list(targets), capture_output=True, text=True, timeout=300, env=env)


def setUpModule():
    global TMP, DESTDIR, BUILD
    build = os.path.dirname(os.path.abspath(lib.CMDB_BIN))
    lib.require_binaries((lib.CMDB_BIN, "CMDB_BIN"), (os.path.join(build, "cmdbd"), "CMDBD_BIN"))
    rel = os.path.relpath(build, lib.REPO)
    BUILD = build if rel.startswith("..") else rel
    # 0755: the postgres user (peer of the installed server's database) may look in.
    TMP = tempfile.mkdtemp(prefix="cmdb-install-")
    os.chmod(TMP, 0o755)
    DESTDIR = os.path.join(TMP, "root")
    SOURCES.update({
        PREFIX + "/bin/cmdbd": os.path.join(build, "cmdbd"),
        PREFIX + "/bin/cmdb": os.path.join(build, "cmdb"),
        PREFIX + "/share/man/man8/cmdbd.8": os.path.join(lib.REPO, "cmdbd", "cmdbd.8"),
        PREFIX + "/share/man/man1/cmdb.1": os.path.join(lib.REPO, "client", "cmdb.1"),
        PREFIX + "/share/bash-completion/completions/cmdb":
            os.path.join(lib.REPO, "client", "cmdb.bash-completion"),
    })
    before = {p: os.stat(p).st_mtime_ns for p in SOURCES.values()}
    p = make("install", destdir=DESTDIR)
    if p.returncode != 0:
        raise AssertionError("make install failed (%d):\n%s%s" % (p.returncode, p.stdout, p.stderr))
    rebuilt = [s for s in SOURCES.values() if os.stat(s).st_mtime_ns != before[s]]
    if rebuilt or re.search(r"^\S*cc ", p.stdout, re.M):
        raise AssertionError("make install rebuilt %s; its output:\n%s" % (rebuilt, p.stdout))


def tearDownModule():
    if TMP:
        shutil.rmtree(TMP, ignore_errors=True)


def render(page):
    """The page as man(1) shows it, in ASCII, one line per paragraph line."""
    p = run(["man", "-E", "ascii", "-l", page])
    if p.returncode != 0:
        raise AssertionError("man -l %s failed (%d): %s" % (page, p.returncode, p.stderr))
    return re.sub(r".\x08", "", p.stdout)


def entries(text):
    """(first line, whole entry) for every non-blank line of a rendered page: the entry is
    the line and the lines after it indented deeper (a .TP tag and its paragraph, a .SS
    heading and its subsection), whitespace collapsed."""
    lines = text.splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        body = [line]
        for nxt in lines[i + 1:]:
            if nxt.strip() and len(nxt) - len(nxt.lstrip()) <= indent:
                break
            body.append(nxt)
        out.append((line.strip(), " ".join(" ".join(body).split())))
    return out


def entry(text, first_word):
    """The entries whose first line starts with first_word (a whole word)."""
    return [e for head, e in entries(text)
            if head == first_word or head.startswith(first_word + " ")
            or head.startswith(first_word + ",")]


def syscall_group(name, _groups={}):
    """The system calls of a systemd-analyze syscall-filter group, nested groups
    expanded."""
    if not _groups:
        out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                             text=True, check=True).stdout
        cur = None
        for line in out.splitlines():
            if line.startswith("@"):
                cur = _groups.setdefault(line.split()[0], [])
            elif cur is not None and line.startswith("    ") and line.strip() \
                    and not line.strip().startswith("#"):
                cur.append(line.strip())
    calls = set()
    for member in _groups[name]:
        calls |= syscall_group(member) if member.startswith("@") else {member}
    return calls


class Install(unittest.TestCase):

    def test_installs_every_file_with_its_mode(self):
        found = set()
        for d, _, files in os.walk(DESTDIR):
            for f in files:
                found.add(os.path.join(d, f)[len(DESTDIR):])
        self.assertEqual(set(SOURCES), found)
        for path, src in SOURCES.items():
            mode = os.stat(inst(path)).st_mode & 0o777
            self.assertEqual(0o755 if "/bin/" in path else 0o644, mode, "%s: %o" % (path, mode))
            with open(inst(path), "rb") as a, open(src, "rb") as b:
                self.assertTrue(a.read() == b.read(), "%s differs from %s" % (path, src))

    def test_uninstall_removes_what_install_put(self):
        other = os.path.join(TMP, "again")
        p = make("install", destdir=other)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        p = make("uninstall", destdir=other)
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        left = [os.path.join(d, f) for d, _, files in os.walk(other) for f in files]
        self.assertEqual([], left)

    def test_installed_programs_run(self):
        p = run(["cmdbd", "version"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertRegex(p.stdout, r"^cmdbd \d+\.\d+\.\d+ \(schema \d+\)\n$")
        p = run(["cmdbd", "--help"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertIn("CMDB_DATABASE_URL", p.stdout)
        p = run(["cmdb", "--version"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertRegex(p.stdout, r"^cmdb \d+\.\d+\.\d+\n$")
        p = run(["cmdb", "help"])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertIn("dependents", p.stdout)
        # and the installed ones are the ones found on PATH
        for prog in ("cmdbd", "cmdb"):
            self.assertEqual(inst(PREFIX + "/bin/" + prog),
                             shutil.which(prog, path=clean_env()["PATH"]))

    def test_installed_server_serves_the_installed_client(self):
        """The installed cmdbd migrates, makes a token and serves; the installed cmdb
        writes and reads through it."""
        saved = lib.CMDBD_BIN
        lib.CMDBD_BIN = inst(PREFIX + "/bin/cmdbd")
        try:
            srv = lib.Server.start("install")
        finally:
            lib.CMDBD_BIN = saved
        try:
            env = clean_env(CMDB_URL=srv.url, CMDB_TOKEN=srv.token("admin"))
            p = run(["cmdb", "put", "service/installed", "--label", "from=make-install"], env=env)
            self.assertEqual(0, p.returncode, p.stdout + p.stderr)
            p = run(["cmdb", "ls", "--label", "from=make-install"], env=env)
            self.assertEqual(0, p.returncode, p.stderr)
            self.assertIn("service/installed", p.stdout)
        finally:
            srv.stop()

    # -- man pages

    def test_man_pages_lint_clean_with_groff(self):
        for page in ("/share/man/man8/cmdbd.8", "/share/man/man1/cmdb.1"):
            p = run(["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z",
                     inst(PREFIX + page)])
            self.assertEqual(0, p.returncode, p.stderr)
            self.assertEqual("", p.stderr, "%s: groff warnings" % page)

    @unittest.skipUnless(shutil.which("mandoc"),
                         "mandoc not installed: apt-get install mandoc (make test installs it)")
    def test_man_pages_lint_clean_with_mandoc(self):
        for page in ("/share/man/man8/cmdbd.8", "/share/man/man1/cmdb.1"):
            p = run(["mandoc", "-Tlint", "-W", "warning", inst(PREFIX + page)])
            self.assertEqual(0, p.returncode, p.stdout + p.stderr)
            self.assertEqual("", p.stdout + p.stderr)

    def test_man_finds_and_renders_the_installed_pages(self):
        for section, name, title in (("8", "cmdbd", "CMDBD(8)"), ("1", "cmdb", "CMDB(1)")):
            p = run(["man", "-w", section, name])
            self.assertEqual(0, p.returncode, p.stderr)
            self.assertEqual(inst("%s/share/man/man%s/%s.%s" % (PREFIX, section, name, section)),
                             p.stdout.strip())
            p = run(["man", "-E", "ascii", section, name])
            self.assertEqual(0, p.returncode, p.stderr)
            self.assertTrue(p.stdout.startswith(title), p.stdout[:200])
            for heading in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS",
                            "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO"):
                self.assertRegex(p.stdout, r"(?m)^%s$" % heading, "%s(%s)" % (name, section))

    def test_cmdbd_page_documents_every_option_its_env_and_default(self):
        page = render(inst(PREFIX + "/share/man/man8/cmdbd.8"))
        helptext = run(["cmdbd", "--help"]).stdout
        options = re.findall(r"(?m)^  (--[a-z][a-z0-9-]*) +(CMDB_[A-Z0-9_]+) +.*\(default (.*)\)$",
                             helptext)
        self.assertGreater(len(options), 10, helptext)
        for opt, env, default in options:
            found = entry(page, opt)
            self.assertTrue(found, "cmdbd(8) has no entry for %s: add a .TP for it under "
                                   "OPTIONS in cmdbd/cmdbd.8" % opt)
            self.assertTrue(any(env in e and "default %s" % default in e for e in found),
                            "cmdbd(8) entry of %s must name %s and 'default %s': %s"
                            % (opt, env, default, found))

    def test_cmdbd_page_documents_every_command_and_its_options(self):
        page = render(inst(PREFIX + "/share/man/man8/cmdbd.8"))
        helptext = run(["cmdbd", "--help"]).stdout
        usage = re.findall(r"(?m)^(?:usage:)? +cmdbd (.*)$", helptext)
        commands = set()
        for line in usage:
            for alt in line.split(" | "):
                words = []
                for w in alt.split():
                    if not re.fullmatch(r"[a-z]+", w):
                        break
                    words.append(w)
                if words:
                    commands.add(" ".join(words))
        self.assertTrue({"serve", "migrate", "token create", "version"} <= commands, usage)
        heads = [h for h, _ in entries(page.split("\nOPTIONS\n")[0].split("\nCOMMANDS\n")[1])]
        for cmd in sorted(commands):
            self.assertTrue(any(h == cmd or h.startswith(cmd + " ") for h in heads),
                            "cmdbd(8) has no entry for the command '%s' under COMMANDS" % cmd)
        for opt in sorted(set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(usage)))):
            self.assertRegex(page, r"(?<![\w-])%s(?![\w-])" % opt,
                             "cmdbd(8) does not mention %s (cmdbd --help, usage)" % opt)

    def test_cmdb_page_documents_every_command_and_option(self):
        page = render(inst(PREFIX + "/share/man/man1/cmdb.1"))
        helptext = run(["cmdb", "help"]).stdout
        commands = re.findall(r"(?m)^  ([a-z][a-z-]*)  ", helptext.split("Commands:")[1]
                              .split("\n\n")[0])
        self.assertIn("dependents", commands)
        for cmd in commands:
            section = entry(page, cmd)
            section = [s for s in section if s.startswith("%s cmdb %s" % (cmd, cmd))]
            self.assertEqual(1, len(section),
                             "cmdb(1) needs one '.SS %s' under COMMANDS with its usage line"
                             % cmd)
            usage = run(["cmdb", "help", cmd]).stdout.splitlines()[0]
            for opt in sorted(set(re.findall(r"--[a-z][a-z0-9-]*", usage))):
                self.assertIn(opt, section[0], "cmdb(1) '%s' does not mention %s (%s)"
                              % (cmd, opt, usage))
        for opt in re.findall(r"(?m)^  (--[a-z][a-z0-9-]*)", helptext):
            self.assertTrue(entry(page.split("\nOPTIONS\n")[1].split("\nCOMMANDS\n")[0], opt),
                            "cmdb(1) has no entry for the global option %s under OPTIONS" % opt)
        for env in set(re.findall(r"CMDB_[A-Z_]+", helptext)):
            self.assertTrue(entry(page.split("\nENVIRONMENT\n")[1], env),
                            "cmdb(1) has no entry for %s under ENVIRONMENT" % env)

    # -- bash completion

    def complete(self, *words):
        """What the installed completion offers for the command line `words` (the last
        one is the word being completed), in a bash that loaded nothing else."""
        script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); '
                  'COMP_LINE="$*"; _cmdb; printf "%s\\n" "${COMPREPLY[@]}"')
        p = run(["bash", "--norc", "--noprofile", "-c", script, "bash",
                 inst(PREFIX + "/share/bash-completion/completions/cmdb")] + list(words))
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertEqual("", p.stderr)
        return [w for w in p.stdout.splitlines() if w]

    def test_completion_registers_for_cmdb(self):
        p = run(["bash", "--norc", "--noprofile", "-c", 'source "$1"; complete -p cmdb', "bash",
                 inst(PREFIX + "/share/bash-completion/completions/cmdb")])
        self.assertEqual(0, p.returncode, p.stderr)
        self.assertEqual("complete -F _cmdb cmdb", p.stdout.strip())

    def test_completion_completes_commands(self):
        self.assertEqual(["dependents", "dependencies", "deployments"], self.complete("cmdb", "dep"))
        helptext = run(["cmdb", "help"]).stdout
        every = re.findall(r"(?m)^  ([a-z][a-z-]*)  ", helptext.split("Commands:")[1])
        self.assertEqual(every, self.complete("cmdb", ""))
        self.assertEqual(["dependents", "dependencies", "deployments"],
                         self.complete("cmdb", "--url", "http://x:1", "dep"))
        self.assertEqual(["rootcause", "rm"], self.complete("cmdb", "help", "r"))

    def test_completion_completes_options_and_values(self):
        self.assertEqual(["--owner"], self.complete("cmdb", "ls", "--kind", "service", "--ow"))
        self.assertEqual(["--cacert"], self.complete("cmdb", "--ca"))
        self.assertIn("--depth", self.complete("cmdb", "dependents", "service/a", "--"))
        self.assertIn("--json", self.complete("cmdb", "dependents", "service/a", "--"))
        self.assertEqual(["dependents", "dependencies", "both"],
                         self.complete("cmdb", "graph", "service/a", "--direction", ""))
        self.assertEqual(["down"], self.complete("cmdb", "health", "service/a", "do"))
        self.assertEqual(["part_of"], self.complete("cmdb", "link", "a/b", "pa"))

    # -- systemd

    def systemd_root_unit(self):
        """A copy of the example unit whose programs are the installed ones (ExecStart
        must exist for verify): only the /usr/local/bin prefix is rewritten."""
        with open(os.path.join(lib.REPO, "examples", "systemd", "cmdbd.service")) as f:
            unit = f.read()
        self.assertIn("ExecStart=%s/bin/cmdbd serve" % PREFIX, unit)
        self.assertIn("ExecStartPre=%s/bin/cmdbd migrate" % PREFIX, unit)
        d = os.path.join(TMP, "unit")
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "cmdbd.service")
        with open(path, "w") as f:
            f.write(unit.replace("=%s/bin/" % PREFIX, "=%s/bin/" % inst(PREFIX)))
        return path

    @unittest.skipUnless(shutil.which("systemd-analyze"),
                         "systemd-analyze not installed: apt-get install systemd")
    def test_systemd_unit_verifies(self):
        unit = self.systemd_root_unit()
        p = run(["systemd-analyze", "verify", unit])
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        # warnings (an unknown key, a bad value) leave the exit code 0: none allowed
        self.assertEqual("", p.stdout + p.stderr)
        # it checks what it should: a unit with a typo is reported
        with open(unit, "a") as f:
            f.write("ProtectSytem=strict\n")
        p = run(["systemd-analyze", "verify", unit])
        self.assertIn("ProtectSytem", p.stdout + p.stderr)

    @unittest.skipUnless(shutil.which("systemd-analyze"),
                         "systemd-analyze not installed: apt-get install systemd")
    def test_systemd_unit_is_hardened(self):
        """`systemd-analyze security` rates the unit's exposure from 0 (locked down) to
        10; the example scores 1.4 ("OK"). --threshold is that figure times ten."""
        unit = self.systemd_root_unit()
        p = run(["systemd-analyze", "security", "--offline=true", "--threshold=20", unit])
        self.assertEqual(0, p.returncode, p.stdout[-3000:] + p.stderr)
        with open(unit) as f:
            text = f.read()
        for line in ("User=cmdbd", "NoNewPrivileges=yes", "ProtectSystem=strict",
                     "ProtectHome=yes", "PrivateTmp=yes", "PrivateDevices=yes",
                     "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
                     "SystemCallFilter=@system-service", "CapabilityBoundingSet=\n",
                     "MemoryDenyWriteExecute=yes", "Restart=on-failure",
                     "EnvironmentFile=/etc/cmdbd/cmdbd.env"):
            self.assertIn(line, text)

    @unittest.skipUnless(shutil.which("systemd-sysusers"), "systemd-sysusers not installed")
    def test_sysusers_snippet_makes_the_user(self):
        root = os.path.join(TMP, "sysroot")
        os.makedirs(os.path.join(root, "etc"), exist_ok=True)
        p = run(["systemd-sysusers", "--root=" + root,
                 os.path.join(lib.REPO, "examples", "systemd", "cmdbd.sysusers")])
        self.assertEqual(0, p.returncode, p.stdout + p.stderr)
        with open(os.path.join(root, "etc", "passwd")) as f:
            users = [line.split(":") for line in f]
        cmdbd = [u for u in users if u[0] == "cmdbd"]
        self.assertEqual(1, len(cmdbd), users)
        self.assertLess(int(cmdbd[0][2]), 1000)             # a system user
        self.assertEqual("/usr/sbin/nologin", cmdbd[0][6].strip())

    @unittest.skipUnless(shutil.which("strace") and shutil.which("systemd-analyze"),
                         "strace or systemd-analyze not installed: apt-get install strace "
                         "systemd (make test installs them)")
    def test_system_calls_stay_inside_the_units_filter(self):
        """The installed cmdbd, traced through migrate, token create and a serve that
        answers reads, writes, manifests, a parked watcher, the change feed, a
        verification and SIGTERM, makes no system call that SystemCallFilter=
        @system-service ~@privileged would refuse (seccomp would kill the service)."""
        if BUILD.rstrip("/").endswith("san"):
            self.skipTest("a sanitizer build makes system calls of its own; the filter is "
                          "meant for the release build")
        traces = os.path.join(TMP, "strace")
        os.makedirs(traces, exist_ok=True)
        wrapper = os.path.join(TMP, "cmdbd-strace")
        with open(wrapper, "w") as f:
            f.write('#!/bin/sh\nexec strace -f -ff -qq -o %s/t "%s" "$@"\n'
                    % (traces, inst(PREFIX + "/bin/cmdbd")))
        os.chmod(wrapper, 0o755)
        saved = lib.CMDBD_BIN
        lib.CMDBD_BIN = wrapper
        try:
            srv = lib.Server.start("strace", args=["--verify-interval", "1"])
        finally:
            lib.CMDBD_BIN = saved
        try:
            env = clean_env(CMDB_URL=srv.url, CMDB_TOKEN=srv.token("admin"))
            for argv in (["put", "service/a"], ["put", "database/b"],
                         ["link", "service/a", "depends_on", "database/b"]):
                p = run(["cmdb"] + argv, env=env)
                self.assertEqual(0, p.returncode, p.stderr)
            watched = os.path.join(TMP, "watch.out")

            def watch_output():
                with open(watched, "rb") as f:
                    return f.read()

            out = open(watched, "wb")
            watcher = subprocess.Popen(["cmdb", "dependents", "database/b", "--watch"],
                                       env=env, cwd=TMP, stdout=out,
                                       stderr=subprocess.STDOUT)
            out.close()
            try:
                manifest = ('{"manifest":"cmdb/v1","source":"t:strace","generation":1,'
                            '"nodes":[{"ref":"service/c"}],'
                            '"edges":[{"from":"service/c","type":"depends_on",'
                            '"to":"database/b"}]}')
                lib.poll(watch_output, lambda o: b"service/a" in o, 20)   # parked
                p = run(["cmdb", "push", "-"], env=env, input=manifest)
                self.assertEqual(0, p.returncode, p.stderr)
                for argv in (["owners", "service/a"], ["rootcause", "service/a"],
                             ["graph", "service/a"], ["changes", "--limit", "5"],
                             ["sources"], ["health", "database/b", "down"]):
                    p = run(["cmdb"] + argv, env=env)
                    self.assertEqual(0, p.returncode, p.stdout + p.stderr)
                st, body, _ = srv.request("GET", "/v1/admin/verify")
                self.assertEqual(200, st, body)
                st, _, _ = srv.request("GET", "/metrics", token=None)
                self.assertEqual(200, st)
                self.assertIn(b"service/c", lib.poll(watch_output, lambda o: b"service/c" in o,
                                                     20))
            finally:
                watcher.kill()
                watcher.wait()
            time.sleep(1.5)     # a verification round by --verify-interval
            # SIGTERM to cmdbd itself (strace's child: strace does not pass signals on);
            # strace then exits with cmdbd's status, which stop() checks
            pid = srv.proc.pid
            with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
                os.kill(int(f.read().split()[0]), signal.SIGTERM)
            srv.proc.wait(30)
        finally:
            srv.stop()
        used = set()
        for name in os.listdir(traces):
            with open(os.path.join(traces, name), errors="replace") as f:
                for line in f:
                    m = re.match(r"(?:<\.\.\. )?([a-z0-9_]+)(?:\(| resumed>)", line)
                    if m:
                        used.add(m.group(1))
        self.assertIn("accept4", used)
        self.assertIn("epoll_wait", used)
        allowed = syscall_group("@system-service") - syscall_group("@privileged")
        self.assertEqual(set(), used - allowed,
                         "system calls cmdbd makes that the unit's SystemCallFilter refuses")

    def test_env_file_sets_only_options_cmdbd_has(self):
        helptext = run(["cmdbd", "--help"]).stdout
        known = set(re.findall(r"CMDB_[A-Z0-9_]+", helptext))
        with open(os.path.join(lib.REPO, "examples", "systemd", "cmdbd.env")) as f:
            lines = f.read().splitlines()
        named = {m.group(1) for line in lines
                 for m in [re.match(r"#?(CMDB_[A-Z0-9_]+)=", line)] if m}
        self.assertIn("CMDB_DATABASE_URL", named)
        self.assertEqual(set(), named - known)
        # and cmdbd accepts the values it sets: the environment is read before the
        # flags, so a bad value is reported instead of the unknown flag
        env = clean_env()
        for line in lines:
            m = re.match(r"(CMDB_[A-Z0-9_]+)=(.*)$", line)
            if m:
                env[m.group(1)] = m.group(2)
        p = run(["cmdbd", "serve", "--no-such-option"], env=env)
        self.assertEqual(2, p.returncode, p.stderr)
        self.assertIn("unknown option --no-such-option", p.stderr)
        env["CMDB_DB_POOL"] = "many"
        p = run(["cmdbd", "serve", "--no-such-option"], env=env)
        self.assertIn("CMDB_DB_POOL", p.stderr)

if __name__ == "__main__":
    unittest.main(verbosity=2)
