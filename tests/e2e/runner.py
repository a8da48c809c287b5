#!/usr/bin/env python3
"""runner.py — runs the end-to-end and SQL tests and reports every test by name.

build/check_cmdb starts it (tests/check_e2e.c: each test here becomes a Check test of its
own, so Check's summary line counts them). The work is split in units, each run in a
process of its own, CMDB_E2E_JOBS (default 2) at a time, the longest first (durations
of the last run: build/e2e-times.json):

  test_*.py  every such file in tests/e2e, found by glob (a new file needs no
             registration); its tests are named Class.test_method
  sql        tests/sql/t_*.sql through tests/sql/run.sh on a fresh database; its tests
             are named after the files (t_01_nodes)

and every unit also has a test named "(file)": the unit ran to its end within
CMDB_E2E_TIMEOUT seconds (600, times CK_TIMEOUT_MULTIPLIER) with no error outside its
tests (setUpClass, tearDownClass: a server that exited badly, ...).

A file that sets E2E_RUN_LAST = True starts only when every other unit has ended
(test_openapi.py: it checks the responses the others received, which every unit records
under DIR/.api-records, CMDB_API_RECORD_DIR: see lib.record_response).

  runner.py --list                  print "UNIT<TAB>NAME" for every selected test
  runner.py --results DIR           print the list, close stdout, then run the units,
                                    writing DIR/UNIT/NAME (JSON: lib.write_result) for
                                    every test, and DIR/UNIT.log (the unit's output);
                                    holds an exclusive flock on DIR/.lock while it lives
  runner.py --unit UNIT --results DIR   (internal) run one unit

Selection (both optional): CK_RUN_CASE=UNIT (Check's own: one unit) and CMDB_E2E_TESTS,
a list of UNIT, UNIT::Class or UNIT::Class.test_method (e.g. test_auth.py::Auth,
sql::t_02_edges; the ".py" may be left out). A name that matches nothing is reported as
a failing test "(selection)".

Environment in: as lib.py (CMDB_TEST_ADMIN_URL, CMDBD_BIN, CMDB_BIN, CMDB_REPO), and
CMDB_E2E_DIR / CMDB_SQL_DIR (where the units are; default tests/e2e and tests/sql: the
runner's own test points them at fixtures).
"""

import ctypes
import fcntl
import glob
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import lib  # noqa: E402

E2E_DIR = os.path.abspath(os.environ.get("CMDB_E2E_DIR") or HERE)
SQL_DIR = os.path.abspath(os.environ.get("CMDB_SQL_DIR") or os.path.join(lib.REPO, "tests", "sql"))
SQL_RUN = os.path.join(lib.REPO, "tests", "sql", "run.sh")
FILE = "(file)"
SELECTION = "(selection)"
PYTHON = sys.executable or "/usr/bin/python3"


def _float_env(name, default):
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return float(default)


UNIT_TIMEOUT = _float_env("CMDB_E2E_TIMEOUT", 600) * _float_env("CK_TIMEOUT_MULTIPLIER", 1)


# --------------------------------------------------------------------------- units and names

def all_units():
    """The units, sorted: test_*.py files, then "sql" when there are SQL tests."""
    units = sorted(os.path.basename(p) for p in glob.glob(os.path.join(E2E_DIR, "test_*.py")))
    if glob.glob(os.path.join(SQL_DIR, "t_*.sql")):
        units.append("sql")
    return units


def load_module(unit):
    """Import tests/e2e/UNIT as a module named after the file."""
    name = unit[:-3]
    spec = importlib.util.spec_from_file_location(name, os.path.join(E2E_DIR, unit))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def python_tests(mod):
    return list(flatten(unittest.defaultTestLoader.loadTestsFromModule(mod)))


def sql_cases():
    """{name: path} of the SQL tests, in order."""
    paths = sorted(glob.glob(os.path.join(SQL_DIR, "t_*.sql")))
    return {os.path.basename(p)[:-4]: p for p in paths}


def unit_names(unit):
    """The names of UNIT's tests in run order (without FILE); raises when the file does
    not import."""
    if unit == "sql":
        return list(sql_cases())
    return [lib.NamedResult.name_of(t) for t in python_tests(load_module(unit))]


def runs_last(unit):
    """Whether UNIT starts only once every other unit has ended: a test file that sets
    E2E_RUN_LAST = True (it reads what the others left, e.g. their recorded responses).
    listing() has imported the files."""
    return bool(getattr(sys.modules.get(unit[:-3]), "E2E_RUN_LAST", False))


def parse_selection():
    """({unit: [prefix, ...] or None (all of it)}, or None when nothing is selected; the
    selectors that name no test) from CMDB_E2E_TESTS and CK_RUN_CASE. CK_RUN_CASE alone
    selects a unit, or nothing when it names a C test case (Check runs only that case)."""
    units = all_units()
    case = os.environ.get("CK_RUN_CASE") or None
    words = [w for w in re.split(r"[\s,]+", os.environ.get("CMDB_E2E_TESTS", "")) if w]
    if not words:
        return (None if case is None else {case: None}), []
    sel, unknown = {}, []
    for w in words:
        unit, _, name = w.partition("::")
        if unit not in units and unit + ".py" in units:
            unit += ".py"
        if unit not in units:
            unknown.append(w)
        elif case is not None and unit != case:
            continue
        elif not name:
            sel[unit] = None
        elif sel.get(unit, []) is not None:
            sel.setdefault(unit, []).append(name)
    return sel, unknown


def selected(names, prefixes):
    if prefixes is None:
        return names
    return [n for n in names if any(n == p or n.startswith(p + ".") for p in prefixes)]


def listing():
    """[(unit, [names...])] of the selected tests (FILE last in each unit), plus the
    selectors that matched nothing. A unit that cannot be listed gets FILE only: running
    it reports why."""
    sel, unknown = parse_selection()
    out = []
    for unit in all_units():
        if sel is not None and unit not in sel:
            continue
        try:
            names = unit_names(unit)
        except BaseException:  # noqa: B036 — a broken file must not stop the others
            out.append((unit, [FILE]))
            continue
        prefixes = sel.get(unit) if sel is not None else None
        chosen = selected(names, prefixes)
        if prefixes is not None:
            unknown += ["%s::%s" % (unit, p) for p in prefixes
                        if not selected(names, [p])]
        if chosen or prefixes is None:
            out.append((unit, chosen + [FILE]))
    return out, unknown


# --------------------------------------------------------------------------- one unit

def run_python_unit(unit, outdir):
    mod = load_module(unit)
    sel, _ = parse_selection()
    tests = python_tests(mod)
    prefixes = sel.get(unit) if sel is not None else None
    if prefixes is not None:
        keep = set(selected([lib.NamedResult.name_of(t) for t in tests], prefixes))
        tests = [t for t in tests if lib.NamedResult.name_of(t) in keep]
    result = lib.NamedResult(unit, mod.__file__, sys.stdout, outdir)
    result.startTestRun()
    unittest.TestSuite(tests).run(result)
    result.stopTestRun()
    result.finish([lib.NamedResult.name_of(t) for t in tests])
    return result.outside


SQL_LINE = re.compile(r"^(PASS|FAIL) (\S+) \((\d+(?:\.\d+)?) s\)$")


def run_sql_unit(outdir):
    """tests/sql/run.sh on a fresh database; its "PASS/FAIL name (t s)" lines, each FAIL
    followed by its output indented by four spaces, become the results."""
    admin = lib.admin_url()
    sel, _ = parse_selection()
    cases = sql_cases()
    names = selected(list(cases), sel.get("sql") if sel is not None else None)
    dbname = "sqltest_%d" % os.getpid()
    lib.psql(admin, 'CREATE DATABASE "%s"' % dbname)
    try:
        run = subprocess.run(["sh", SQL_RUN, lib.with_dbname(admin, dbname)]
                             + [cases[n] for n in names],
                             capture_output=True, text=True, timeout=UNIT_TIMEOUT)
    finally:
        lib.psql(admin, 'DROP DATABASE IF EXISTS "%s"' % dbname)
    sys.stdout.write(run.stdout + run.stderr)
    seen, current = {}, None
    for line in run.stdout.splitlines():
        m = SQL_LINE.match(line)
        if m:
            current = m.group(2)
            seen[current] = [m.group(1), float(m.group(3)), []]
        elif current is not None and line.startswith("    "):
            seen[current][2].append(line[4:])
    outside = []
    if run.returncode not in (0, 1) or run.stderr.strip():
        outside.append(("tests/sql/run.sh (exit status %d)" % run.returncode,
                        run.stdout + run.stderr))
    for name in names:
        if name not in seen:
            lib.write_result(os.path.join(outdir, name), "ERROR", 0.0,
                             "not run: tests/sql/run.sh gave no result for %s" % name,
                             run.stdout + run.stderr)
            continue
        status, secs, lines = seen[name]
        text = "\n".join(lines)
        where = (os.path.relpath(cases[name], lib.REPO), _sql_line(text))
        lib.write_result(os.path.join(outdir, name), status, secs, _sql_message(lines), text,
                         where if status == "FAIL" else None)
    return outside


def _sql_message(lines):
    """psql's error and its DETAIL (a failed cmdb_test.eq shows got/want there): from
    the first line that says ERROR up to its CONTEXT."""
    start = next((i for i, ln in enumerate(lines) if "ERROR" in ln), 0)
    out = []
    for ln in lines[start:]:
        if ln.startswith("CONTEXT:"):
            break
        out.append(ln)
    return "\n".join(out).strip()


def _sql_line(text):
    """The line psql names in "psql:FILE:LINE: ERROR: ...", else 0."""
    m = re.search(r"^psql:[^:]*:(\d+):", text, re.M)
    return int(m.group(1)) if m else 0


def unit_main(unit, results):
    outdir = os.path.join(results, unit)
    outside = run_sql_unit(outdir) if unit == "sql" else run_python_unit(unit, outdir)
    with open(os.path.join(outdir, ".outside.json"), "w", encoding="utf-8") as f:
        json.dump(outside, f)
    return 0


# --------------------------------------------------------------------------- all units

def _pdeathsig_term(parent):
    def preexec():
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)
        except Exception:
            pass
        if os.getppid() != parent:  # the runner died before prctl: nobody to report to
            os._exit(1)
    return preexec


def _tail(path, limit=16 * 1024):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return lib.clip(f.read(), limit, 0.0)
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def _how(rc):
    return ("killed by signal %d" % -rc) if rc < 0 else ("exited with status %d" % rc)


class Unit:
    def __init__(self, name, names, results):
        self.name = name
        self.names = names
        self.dir = os.path.join(results, name)
        self.log_path = os.path.join(results, name + ".log")
        self.proc = None
        self.t0 = 0.0
        self.timed_out = False

    def start(self, results):
        os.makedirs(self.dir, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [PYTHON, os.path.abspath(__file__), "--unit", self.name, "--results", results],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_pdeathsig_term(os.getpid()))
        self.t0 = time.monotonic()

    def stop(self, grace=10.0):
        """SIGTERM to the unit's process group (its servers are stopped by lib's atexit),
        SIGKILL after grace seconds."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                pass

    def finish(self):
        """After the process ended: results for the tests it did not report, and FILE."""
        rc, secs = self.proc.returncode, time.monotonic() - self.t0
        try:
            with open(os.path.join(self.dir, ".outside.json"), encoding="utf-8") as f:
                outside = json.load(f)
        except (OSError, ValueError):
            outside = None
        if self.timed_out:
            why = "%s timed out after %.0f s (CMDB_E2E_TIMEOUT) and was killed" % (
                self.name, UNIT_TIMEOUT)
        elif rc != 0 or outside is None:
            why = "%s %s" % (self.name, _how(rc))
            if rc == 3:  # unit_main's traceback: its last line says what went wrong
                why += " (%s)" % _last_line(_tail(self.log_path, 4096))
        else:
            why = None
        try:
            with open(os.path.join(self.dir, ".running"), encoding="utf-8") as f:
                last = f.read()
        except OSError:
            last = None
        for name in self.names:
            if name == FILE or os.path.exists(os.path.join(self.dir, name)):
                continue
            if why is None:
                message = "not run: no result from %s" % self.name
            elif name == last:
                message = "%s while this test ran" % why
            else:
                message = "not run: %s before this test" % why
            lib.write_result(os.path.join(self.dir, name), "ERROR", 0.0, message,
                             "see %s::%s for the unit's output" % (self.name, FILE))
        problems = [(d, t) for d, t in (outside or [])]
        if why is None and not problems:
            lib.write_result(os.path.join(self.dir, FILE), "PASS", secs)
            return
        message = why or "%s failed: %s" % (problems[0][0], _last_line(problems[0][1]))
        if why is None and len(problems) > 1:
            message += "\n(and %d more errors outside the tests)" % (len(problems) - 1)
        output = "".join("%s:\n%s\n" % (d, t) for d, t in problems)
        output += "----- %s (the unit's output), its end: -----\n%s" % (
            os.path.basename(self.log_path), _tail(self.log_path))
        lib.write_result(os.path.join(self.dir, FILE), "FAIL", secs, message, output,
                         (os.path.relpath(os.path.join(E2E_DIR, self.name), lib.REPO), 0)
                         if self.name != "sql" else None)


def _last_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


def supervise(results, jobs):
    lock = open(os.path.join(results, ".lock"), "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    units, unknown = listing()
    # A selector that matches nothing is a failing test of its own, named after it.
    unknown = [w.replace("/", "_") for w in unknown]
    for name in unknown:
        print("%s\t%s" % (SELECTION, name))
    for unit, names in units:
        for name in names:
            print("%s\t%s" % (unit, name))
    sys.stdout.flush()
    # The list is complete: from here on our output goes to runner.log, and the reader
    # of our stdout sees its end.
    log = os.open(os.path.join(results, "runner.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                  0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    if unknown:
        os.makedirs(os.path.join(results, SELECTION), exist_ok=True)
    for name in unknown:
        lib.write_result(os.path.join(results, SELECTION, name), "ERROR", 0.0,
                         "CMDB_E2E_TESTS names %s, which matches no test (units: %s)"
                         % (name, " ".join(all_units())))

    # Longest first (as the last run measured them; new units first), so that a long unit
    # does not start last. Results are still read in list order.
    times = _load_times()
    queue = sorted((Unit(u, names, results) for u, names in units),
                   key=lambda u: (runs_last(u.name), -times.get(u.name, float("inf"))))
    # Every unit records the responses it gets (lib.record_response); the units that run
    # last (test_openapi.py) check them.
    os.environ["CMDB_API_RECORD_DIR"] = os.path.join(results, ".api-records")
    os.makedirs(os.environ["CMDB_API_RECORD_DIR"], exist_ok=True)
    running, took = [], {}
    try:
        while queue or running:
            while queue and len(running) < jobs and (not runs_last(queue[0].name)
                                                      or not running):
                u = queue.pop(0)
                u.start(results)
                running.append(u)
            time.sleep(0.05)
            for u in list(running):
                if u.proc.poll() is None and time.monotonic() - u.t0 > UNIT_TIMEOUT:
                    u.timed_out = True
                    u.stop()
                if u.proc.poll() is not None:
                    running.remove(u)
                    u.finish()
                    took[u.name] = round(time.monotonic() - u.t0, 1)
    finally:
        for u in running:
            u.stop(grace=5.0)
    _save_times(times, took)
    return 0


def _times_path():
    """Where the units' durations are kept between runs: beside the Check runner, in the
    build directory (only for whole runs of the real units: not a selection, not a
    test's fixtures)."""
    check = os.environ.get("CMDB_CHECK_BIN")
    if not check or E2E_DIR != HERE or parse_selection()[0] is not None:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(check)), "e2e-times.json")


def _load_times():
    try:
        with open(_times_path() or "", encoding="utf-8") as f:
            return {k: float(v) for k, v in json.load(f).items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def _save_times(times, took):
    path = _times_path()
    if path is None or not took:
        return
    times = dict(times, **took)
    try:
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(times, f, indent=0, sort_keys=True)
        os.replace(path + ".tmp", path)
    except OSError:
        pass


def main(argv):
    args = argv[1:]
    if args == ["--list"]:
        units, unknown = listing()
        for unit, names in units:
            for name in names:
                print("%s\t%s" % (unit, name))
        for w in unknown:
            print("%s: %s matches no test" % (os.path.basename(argv[0]), w), file=sys.stderr)
        return 1 if unknown else 0
    if len(args) == 2 and args[0] == "--results":
        jobs = max(1, int(_float_env("CMDB_E2E_JOBS", 2)))
        return supervise(os.path.abspath(args[1]), jobs)
    if len(args) == 4 and args[0] == "--unit" and args[2] == "--results":
        try:
            return unit_main(args[1], os.path.abspath(args[3]))
        except BaseException:
            traceback.print_exc()
            return 3
    print("usage: %s --list | --results DIR | --unit UNIT --results DIR"
          % os.path.basename(argv[0]), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
