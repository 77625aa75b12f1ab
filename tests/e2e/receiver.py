"""receiver.py — a local receiving system for the audience push (seed §5), for the end-to-end
tests: a ThreadingHTTPServer on 127.0.0.1:0 that records every request it gets (headers, body,
arrival time) and answers from a script per path.

    rx = Receiver().start()
    rx.script("/crm/a", Answer(500), Answer(201, {"segment_id": "R-1"}))
    url = rx.url("/crm/a")
    ...
    reqs = rx.wait_for("/crm/a", 2, timeout)     # the requests that arrived, in order
    rx.stop()

An Answer is (status, JSON body or None, extra headers, delay in seconds before answering). When
a path's script is used up, it answers from the path's handler (handle()), else 201
{"segment_id": "<path>-<n>"} with a new id each time.

Like a careful receiver it honours Idempotency-Key: a request whose key already got a 2xx is
answered with that same stored answer and recorded with "duplicate": True, so a retry that
follows a lost answer never creates a second remote segment. GET requests serve static JSON
registered with serve_json() (the tests use it as a customer feed).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Answer:
    def __init__(self, status=201, body=None, headers=None, delay=0.0):
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.delay = delay

    def __repr__(self):
        return "Answer(%r, %r, delay=%r)" % (self.status, self.body, self.delay)


class Receiver:
    def __init__(self):
        self.lock = threading.Condition()
        self.requests = []          # every POST, in arrival order
        self.scripts = {}           # path -> [Answer]
        self.counters = {}          # path -> segments created
        self.answered = {}          # idempotency key -> (status, body bytes)
        self.static = {}            # path -> bytes (GET)
        self.handlers = {}          # path -> fn(request record) -> Answer, after the script
        self.server = None
        self.thread = None

    # -- lifecycle
    def start(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_GET(self):
                data = owner.static.get(self.path.split("?")[0])
                if data is None:
                    self._send(404, b'{"error":"not_found"}', {})
                else:
                    self._send(200, data, {})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else None
                except ValueError:
                    body = None
                key = self.headers.get("Idempotency-Key")
                rec = {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                       "body": body, "raw": raw, "t": time.monotonic(), "wall": time.time(),
                       "duplicate": False}
                with owner.lock:
                    stored = owner.answered.get(key) if key else None
                    if stored is not None:
                        rec["duplicate"] = True
                        ans = Answer(stored[0])
                        payload = stored[1]
                    else:
                        queue = owner.scripts.get(self.path)
                        handler = owner.handlers.get(self.path)
                        if queue:
                            ans = queue.pop(0)
                        elif handler:
                            ans = handler(rec)
                        else:
                            c = owner.counters.get(self.path, 0) + 1
                            owner.counters[self.path] = c
                            name = self.path.strip("/").replace("/", "-")
                            ans = Answer(201, {"segment_id": "%s-%d" % (name, c)})
                        payload = json.dumps(ans.body).encode() if ans.body is not None else b""
                    # A 2xx is remembered under its key before any delay: the receiver has
                    # done the work even if the answer never reaches the sender.
                    if key and 200 <= ans.status < 300 and stored is None:
                        owner.answered[key] = (ans.status, payload)
                    rec["answer"] = ans.status
                    owner.requests.append(rec)
                    owner.lock.notify_all()
                if ans.delay:
                    time.sleep(ans.delay)
                try:
                    self._send(ans.status, payload, ans.headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the sender gave up (timeout): that is the point of a slow answer

            def _send(self, status, payload, headers):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if payload:
                    self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # -- configuration
    @property
    def port(self):
        return self.server.server_address[1]

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def script(self, path, *answers):
        with self.lock:
            self.scripts.setdefault(path, []).extend(answers)

    def handle(self, path, fn):
        """Answer POSTs to path with fn(rec) (rec: the request record, body parsed) once its
        script is used up; fn runs under the receiver's lock, so it must not block."""
        with self.lock:
            self.handlers[path] = fn

    def serve_json(self, path, obj):
        self.static[path] = json.dumps(obj).encode()

    # -- what arrived
    def received(self, path):
        with self.lock:
            return [r for r in self.requests if r["path"] == path]

    def wait_for(self, path, n, timeout):
        """Wait until at least n requests reached path; return them all (AssertionError on
        timeout)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                got = [r for r in self.requests if r["path"] == path]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("receiver: %d of %d request(s) to %s within %.1fs"
                                         % (len(got), n, path, timeout))
                self.lock.wait(min(left, 0.1))
