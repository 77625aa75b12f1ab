"""Run the Tradable Bits simulator by hand:

    python3 tests/sim/tradablebits/__main__.py --port 0 [--seed N] [--fans N] [--tickets N]
        [--key K --secret S] [--rate-limit N] [--run-for SECONDS]

prints "tradablebits simulator listening on http://127.0.0.1:PORT/api/v1/" and the key, then
serves until SIGINT/SIGTERM (or --run-for seconds). Also `python3 -m sim.tradablebits` from tests/.
"""

import argparse
import os
import signal
import sys
import threading

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from sim.tradablebits import Simulator
else:
    from .simulator import Simulator


def main(argv=None):
    ap = argparse.ArgumentParser(description="Tradable Bits API simulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", default="1")
    ap.add_argument("--fans", type=int, default=60)
    ap.add_argument("--tickets", type=int, default=150)
    ap.add_argument("--activities", type=int, default=80)
    ap.add_argument("--key", default="tb-test-key")
    ap.add_argument("--secret", default="tb-test-secret")
    ap.add_argument("--rate-limit", type=int, default=600,
                    help="calls per key per minute; 0: no limit (for benchmarks)")
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--run-for", type=float, default=0.0,
                    help="stop after this many seconds (0: until a signal)")
    a = ap.parse_args(argv)
    sim = Simulator(seed=a.seed, fans=a.fans, tickets=a.tickets, activities=a.activities,
                    keys={a.key: {"secret": a.secret, "scopes": {"crm", "segments"}}},
                    rate_limit=a.rate_limit, latency=a.latency, host=a.host)
    sim.start(a.port)
    done = threading.Event()
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, lambda *_: done.set())
    print("tradablebits simulator listening on %s" % sim.base_url, flush=True)
    print("api key %s, secret %s" % (a.key, a.secret), flush=True)
    done.wait(a.run_for if a.run_for > 0 else None)
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
