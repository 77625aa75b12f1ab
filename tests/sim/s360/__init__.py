"""A local S-360 (SecuTix) instance for the tests: see README.md in this folder.

    from sim.s360 import Simulator     # with tests/ on sys.path
    with Simulator(seed=7) as sim:
        sim.base                        # the API base a client is configured with
"""

from .data import Season, iso_ms, reference_date
from .server import Call, Clock, Payload, Simulator, FAULT_KINDS, STREAMS

__all__ = ["Simulator", "Season", "Clock", "Call", "Payload", "FAULT_KINDS", "STREAMS",
           "iso_ms", "reference_date"]
