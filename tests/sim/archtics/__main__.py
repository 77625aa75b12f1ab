"""Run the ATS simulator by hand:

    python3 tests/sim/archtics/__main__.py --port 0 [--seed 12] [--key K] [--dsn D]
    python3 -m sim.archtics --port 0          (from tests/)

Prints the endpoint URL, the key and the DSN, then serves until interrupted (or --seconds N).
"""

import argparse
import os
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))))
    from sim.archtics import Simulator
else:
    from . import Simulator


def main():
    ap = argparse.ArgumentParser(description="Archtics ATS simulator")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--key", default="test-key-1")
    ap.add_argument("--dsn", default="stagedoor_test")
    ap.add_argument("--queue-mode", default="random", choices=("random", "always", "never"))
    ap.add_argument("--venue-time-zone", default="America/New_York")
    ap.add_argument("--seconds", type=float, default=0.0,
                    help="stop after this many seconds (0: until interrupted)")
    a = ap.parse_args()
    sim = Simulator(api_keys={a.key: {a.dsn}}, dsn=a.dsn, seed=a.seed, queue_mode=a.queue_mode,
                    venue_time_zone=a.venue_time_zone)
    sim.start(a.port)
    print("%s" % sim.endpoint(), flush=True)
    print("apikey: %s  dsn: %s  base: %s" % (a.key, a.dsn, sim.url), flush=True)
    try:
        if a.seconds > 0:
            time.sleep(a.seconds)
        else:
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        print("%d calls served" % len(sim.record()), flush=True)


if __name__ == "__main__":
    main()
