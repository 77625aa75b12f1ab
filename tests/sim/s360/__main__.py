"""Run the S-360 simulator by hand:

    python3 tests/sim/s360/__main__.py --port 0 [--seed N] [--contacts N --orders N]
        [--contacts-url URL --orders-url URL --access-url URL] [--interval-minutes M]
        [--clock-speed X]

It prints "s360 simulator listening on http://127.0.0.1:PORT" and the API base on stdout, then
serves until SIGINT/SIGTERM. With webhook URLs and a clock speed > 0 it pushes its season on the
schedule (--clock-speed 60 makes a simulated minute last one real second).
"""

import argparse
import os
import signal
import sys
import threading

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from sim.s360 import Simulator
else:
    from . import Simulator


def main(argv=None):
    ap = argparse.ArgumentParser(description="a local S-360 (SecuTix) instance")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--institution", default="myvenue")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--contacts", type=int, default=0, help="contacts to generate and queue")
    ap.add_argument("--orders", type=int, default=0, help="orders to generate and queue")
    ap.add_argument("--scans", action="store_true", help="queue entry scans of the orders")
    ap.add_argument("--contacts-url")
    ap.add_argument("--orders-url")
    ap.add_argument("--access-url")
    ap.add_argument("--interval-minutes", type=int, default=15)
    ap.add_argument("--rate-limit", type=int, default=180)
    ap.add_argument("--clock-speed", type=float, default=1.0)
    a = ap.parse_args(argv)
    sim = Simulator(institution=a.institution, seed=a.seed, host=a.host, port=a.port,
                    interval_minutes=a.interval_minutes, rate_limit=a.rate_limit,
                    clock_speed=a.clock_speed)
    if a.contacts or a.orders:
        sim.make_season(a.contacts, a.orders, scans=a.scans)
    for stream, url in (("contacts", a.contacts_url), ("orders", a.orders_url),
                        ("access", a.access_url)):
        if url:
            sim.set_webhook(stream, url)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    sim.start()
    print("s360 simulator listening on %s" % sim.url)
    print("api base %s (operator=%s partner=%s secret=%s)" % (
        sim.base, sim.credentials["operator"], sim.credentials["partner"],
        sim.credentials["secret"]))
    sys.stdout.flush()
    while not done.wait(1.0):
        pass
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
