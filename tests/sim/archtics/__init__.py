"""Ticketmaster Archtics Transaction Services (ATS) simulator for stagedoor's tests.

    from sim.archtics import Simulator      # with tests/ on sys.path
    with Simulator(seed=12) as sim:
        url = sim.endpoint()                # {base}/sth-customer/ticketing_services.aspx?dsn=…

See README.md in this folder for the protocol it enforces, its options, faults and call record.
"""

from .clock import SimClock
from .commands import INCREMENTAL
from .data import World
from .server import Call, Simulator

__all__ = ["Simulator", "Call", "SimClock", "World", "INCREMENTAL"]
