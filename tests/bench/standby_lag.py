#!/usr/bin/python3
"""standby_lag.py — `make bench`: how far behind a cmdbd that reads a hot standby is.

  standby_lag.py PRIMARY_CONNINFO DBNAME WRITER_URL TOKEN CMDBD WORKDIR

Makes a streaming-replication hot standby of the primary (pg_basebackup -R; as the
postgres user when root), starts a second cmdbd with CMDB_READ_DATABASE_URL on it, then
writes N nodes one at a time through WRITER_URL (the cmdbd on the primary) and, after
each reply, reads the node through the second cmdbd with X-Cmdb-Min-Seq set to the
reply's X-Cmdb-Seq: how long that read takes is the lag a reader of the standby
instance sees (standby replay, then the tailer's poll, poked by the primary's NOTIFY). Prints one JSON
line {"label":"standby_lag","count","p50_ms","p99_ms","max_ms","start_to_ready_s"}.
Stops and deletes what it started.
"""

import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time

PGBIN = "/usr/lib/postgresql/15/bin"
N = 200


def as_owner(argv):
    return (["runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


def conn_field(conninfo, key):
    m = re.search(r"(?:^|\s)%s=(\S+)" % key, conninfo)
    return m.group(1) if m else None


def get(conn, path, headers=None):
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()


def main():
    primary, dbname, writer, token, cmdbd, work = sys.argv[1:7]
    os.makedirs(work, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(work, "postgres")
    data = os.path.join(work, "standby")
    sock = conn_field(primary, "host")
    port = conn_field(primary, "port") or "5432"
    subprocess.run(as_owner([PGBIN + "/pg_basebackup", "-D", data, "-R", "-X", "stream", "-c",
                             "fast", "-h", sock, "-p", port, "-U", "postgres"]),
                   check=True, capture_output=True)
    opts = "-k %s -c listen_addresses='' -p %s" % (work, port)
    subprocess.run(as_owner([PGBIN + "/pg_ctl", "-D", data, "-l", os.path.join(work, "pg.log"),
                             "-o", opts, "-w", "-t", "60", "start"]), check=True,
                   capture_output=True)
    proc = None
    try:
        wport = int(writer.rsplit(":", 1)[1])
        s = __import__("socket").socket()
        s.bind(("127.0.0.1", 0))
        rport = s.getsockname()[1]
        s.close()
        env = dict(os.environ, CMDB_DATABASE_URL="%s dbname=%s" % (primary, dbname),
                   CMDB_READ_DATABASE_URL="host=%s port=%s dbname=%s user=postgres"
                   % (work, port, dbname))
        t0 = time.monotonic()
        log = open(os.path.join(work, "cmdbd-standby.log"), "ab")
        proc = subprocess.Popen([cmdbd, "serve", "--listen", "127.0.0.1:%d" % rport], env=env,
                                stdout=log, stderr=log)
        reader = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
        while True:
            try:
                if get(reader, "/readyz")[0] == 200:
                    break
            except OSError:
                reader.close()
            if time.monotonic() - t0 > 600:
                raise SystemExit("standby_lag: the standby cmdbd did not become ready")
            time.sleep(0.01)
        ready_s = time.monotonic() - t0
        w = http.client.HTTPConnection("127.0.0.1", wport, timeout=10)
        auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
        lags = []
        for i in range(N):
            w.request("PUT", "/v1/nodes/service/bench-lag-%d" % i,
                      body=json.dumps({"attributes": {"i": i}}), headers=auth)
            r = w.getresponse()
            seq = int(r.getheader("X-Cmdb-Seq"))
            r.read()
            t1 = time.monotonic()
            st = get(reader, "/v1/nodes/service/bench-lag-%d" % i,
                     {"Authorization": "Bearer " + token, "X-Cmdb-Min-Seq": str(seq)})[0]
            if st != 200:
                raise SystemExit("standby_lag: GET with X-Cmdb-Min-Seq %d: %d" % (seq, st))
            lags.append((time.monotonic() - t1) * 1000)
        lags.sort()
        print(json.dumps({"label": "standby_lag", "count": N,
                          "p50_ms": round(lags[N // 2], 2),
                          "p99_ms": round(lags[int(N * 0.99) - 1], 2),
                          "max_ms": round(lags[-1], 2), "start_to_ready_s": round(ready_s, 3)}))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(15)
        subprocess.run(as_owner([PGBIN + "/pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"]),
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
