"""benchlib.py — what the Python bench drivers share (imported, not run): the stagedoor CLI,
a tenant with its limits out of the way, a hub served on 127.0.0.1:0 and spoken to as JSON, and
a watcher that notes when something first arrives.

    cli(binary, data, *args)        run `stagedoor ARGS --data DATA`; its stdout, or exit
    bench_tenant(binary, data, c)   tenant c with limits raised out of the way; a TEST key
    Hub(binary, data, work)         `serve` in the background (log in WORK/serve.log), its
                                    port and admin token; .call(method, path, body, auth)
                                    answers (status, JSON); .stop() ends it (SIGTERM, then
                                    SIGKILL after 60 s)
    run_threads(n, fn)              fn(0) … fn(n-1) on n threads at once; the seconds until
                                    all returned (a reference's clients)
    FirstArrival(probe)             a thread calling probe() every 5 ms until it is true; .at
                                    is the time.monotonic() it first was (None while not)

Every failure of setup ends the bench with "bench: …" (sys.exit), as the drivers' own do."""

import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time


def cli(binary, data, *args):
    cp = subprocess.run([binary] + list(args) + ["--data", data], capture_output=True, text=True,
                        timeout=120)
    if cp.returncode != 0:
        sys.exit("bench: stagedoor %s failed: %s" % (" ".join(args), cp.stderr.strip()))
    return cp.stdout


def bench_tenant(binary, data, client="bench"):
    """Create tenant `client` with its rate limit out of the way; return a new TEST key."""
    cli(binary, data, "tenant", "create", client)
    cli(binary, data, "tenant", "limits", client, "--per-minute", "100000000",
        "--burst", "100000000")
    out = cli(binary, data, "key", "create", client, "--env", "test")
    return [ln for ln in out.splitlines() if ln.strip()][-1].strip()


class Hub:
    """`stagedoor serve` on 127.0.0.1:0 with loopback egress allowed (the bench's receivers),
    plus `env`; waits up to 60 s for its address."""

    def __init__(self, binary, data, work, env=None, log_level="warn"):
        full_env = dict(os.environ, STAGEDOOR_EGRESS_ALLOW="loopback", **(env or {}))
        self.log_path = os.path.join(work, "serve.log")
        self.log = open(self.log_path, "w")
        self.p = subprocess.Popen([binary, "serve", "--listen", "127.0.0.1:0", "--data", data,
                                   "--log-level", log_level], stdout=self.log,
                                  stderr=subprocess.STDOUT, env=full_env)
        self.port = None
        deadline = time.monotonic() + 60
        while self.port is None and time.monotonic() < deadline:
            time.sleep(0.05)
            with open(self.log_path) as f:
                m = re.search(r"listening on http://[0-9.]+:(\d+)", f.read())
            self.port = int(m.group(1)) if m else None
            if self.p.poll() is not None:
                sys.exit("bench: the hub exited; see %s" % self.log_path)
        if self.port is None:
            self.stop()
            sys.exit("bench: the hub did not listen within 60 s")
        with open(os.path.join(data, "admin.token")) as f:
            self.token = f.read().strip()

    def call(self, method, path, body=None, auth=None):
        """One request with a JSON body (None: no body) and Bearer auth (None: the admin
        token); (status, parsed JSON answer or None)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request(method, path, body=json.dumps(body) if body is not None else None,
                  headers={"Content-Type": "application/json",
                           "Authorization": "Bearer " + (auth or self.token)})
        r = c.getresponse()
        out = json.loads(r.read() or b"null")
        c.close()
        return r.status, out

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(60)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.log.close()


def run_threads(n, fn):
    t0 = time.monotonic()
    ts = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return time.monotonic() - t0


class FirstArrival(threading.Thread):
    """Calls probe() every `interval` seconds until it is true (then .at = time.monotonic()),
    until stop() or `timeout` seconds."""

    def __init__(self, probe, interval=0.005, timeout=1800):
        super().__init__(daemon=True)
        self.probe, self.interval = probe, interval
        self.deadline = time.monotonic() + timeout
        self.at = None
        self.done = threading.Event()
        self.start()

    def run(self):
        while not self.done.is_set() and time.monotonic() < self.deadline:
            if self.probe():
                self.at = time.monotonic()
                return
            time.sleep(self.interval)

    def stop(self):
        self.done.set()
        self.join()
