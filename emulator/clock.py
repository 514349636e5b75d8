"""The emulator's movable clock.

Resource time (when a backup share was made, when an operation started) comes
from this clock so tests can age a backup past the 90-day restore limit
without waiting. Authentication time (token and SAS expiry) stays on the real
clock, because the clients that mint SAS tokens and read token expiries run
on the real clock too; moving both would make every fresh SAS look expired.
"""

from __future__ import annotations

import datetime as dt
import threading


class Clock:
    def __init__(self, offset_seconds: float = 0.0) -> None:
        self._offset = dt.timedelta(seconds=offset_seconds)
        self._lock = threading.Lock()

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(dt.timezone.utc) + self._offset

    def advance(self, **delta: float) -> None:
        """Move resource time forward (or back, with negative values); kwargs as for timedelta."""
        with self._lock:
            self._offset += dt.timedelta(**delta)

    def reset(self) -> None:
        with self._lock:
            self._offset = dt.timedelta()

    @property
    def offset_seconds(self) -> float:
        with self._lock:
            return self._offset.total_seconds()


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with a Z suffix, as ARM and Key Vault responses carry it."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc1123(moment: dt.datetime) -> str:
    """The HTTP date format that Azure Storage uses in Last-Modified and listings."""
    return moment.astimezone(dt.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
