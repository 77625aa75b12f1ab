"""The Tradable Bits simulator: `from sim.tradablebits import Simulator` (with tests/ on
sys.path). See README.md in this folder."""

from .simulator import (API_PREFIX, DEFAULT_PATHS, ApiError, Call, Clock, Simulator, gmt, iso,
                        time_key)
from .data import DEFAULT_START, generate

__all__ = ["API_PREFIX", "DEFAULT_PATHS", "ApiError", "Call", "Clock", "Simulator", "gmt", "iso",
           "time_key", "DEFAULT_START", "generate"]
