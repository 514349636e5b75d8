"""Resource time for the engine: when jobs start and end, how old a backup is.

One seam, so that a test can move the engine's time together with the emulator's (a month of daily
backups in seconds). SAS expiry and tokens stay on the real clock, as Azure Storage checks them.
"""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)
