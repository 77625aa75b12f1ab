"""clock.py — the simulator's test-controlled clock, in the venue's time zone.

Archtics stamps everything in venue-local time without an offset, to the minute. The clock keeps
the true instant (epoch seconds, UTC) and renders it venue-local; quotas and polling expiry read
it, so a test moves a minute or a day with advance()/next_day() instead of sleeping. With
real_time=True the clock also runs with the wall clock (monotonic) from its start; with
real_time=False it moves only when a test moves it.
"""

import datetime
import threading
import time
from zoneinfo import ZoneInfo

LOCAL_FMT = "%Y-%m-%d %H:%M"


class SimClock:
    def __init__(self, start="2026-03-02 09:00", venue_time_zone="America/New_York",
                 real_time=True):
        self.tz = ZoneInfo(venue_time_zone)
        self.tz_name = venue_time_zone
        self.real_time = real_time
        self._lock = threading.Lock()
        self._base = self.epoch_of(start)
        self._mono0 = time.monotonic()
        self._offset = 0.0

    # -- reading
    def now(self):
        """The simulated instant, epoch seconds (float)."""
        with self._lock:
            run = (time.monotonic() - self._mono0) if self.real_time else 0.0
            return self._base + self._offset + run

    def local(self, epoch=None):
        """Venue-local "YYYY-MM-DD HH:MM" of an instant (default: now)."""
        return self.local_dt(epoch).strftime(LOCAL_FMT)

    def local_dt(self, epoch=None):
        e = self.now() if epoch is None else epoch
        return datetime.datetime.fromtimestamp(e, tz=self.tz)

    def epoch_of(self, local, fold=0):
        """Instant of a venue-local "YYYY-MM-DD HH:MM" (fold=1: the second of a repeated hour)."""
        dt = datetime.datetime.strptime(local, LOCAL_FMT).replace(tzinfo=self.tz, fold=fold)
        return dt.timestamp()

    def utc_day(self, epoch=None):
        e = self.now() if epoch is None else epoch
        return datetime.datetime.fromtimestamp(e, tz=datetime.timezone.utc).date().isoformat()

    def seconds_to_utc_midnight(self, epoch=None):
        e = self.now() if epoch is None else epoch
        d = datetime.datetime.fromtimestamp(e, tz=datetime.timezone.utc)
        nxt = (d + datetime.timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return nxt.timestamp() - e

    # -- moving
    def advance(self, seconds):
        with self._lock:
            self._offset += float(seconds)

    def set(self, local, fold=0):
        """Jump to a venue-local time (forward or back)."""
        target = self.epoch_of(local, fold)
        with self._lock:
            run = (time.monotonic() - self._mono0) if self.real_time else 0.0
            self._offset = target - self._base - run

    def next_day(self):
        """Jump to just after the next UTC midnight: the day quota's new window."""
        self.advance(self.seconds_to_utc_midnight() + 1.0)
