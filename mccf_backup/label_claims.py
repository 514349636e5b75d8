"""One backup per pin label and target: a claim entity in the job table, taken before the pin is written.

A pin lives in share metadata, which has no conditional write, so two operators pinning two backups
under one label at once would both succeed if each only looked at the catalog first. The claim is a
create-if-absent (the table refuses the second create), or an ETag-conditional takeover of a claim
whose share no longer holds the label: unpinned or deleted since, or a pin that died between its
claim and its metadata write (after CLAIM_GRACE). Whoever does not get the claim is refused with
the share that holds the label. The metadata stays the source of truth; the claim only orders writers.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Callable


from . import clock
from .jobs import JobTable, StaleJob

PARTITION = "pinlabel"
CLAIM_GRACE = dt.timedelta(seconds=60)  # a claim whose pin has not been written yet is live this long


def _row(target: str, label: str) -> str:
    return hashlib.sha256(f"{target.lower()}\n{label}".encode()).hexdigest()


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class LabelClaims:
    def __init__(self, table: JobTable) -> None:
        self._table = table

    def _entity(self, target: str, label: str, share: str) -> dict:
        return {"PartitionKey": PARTITION, "RowKey": _row(target, label), "share": share, "claimed": clock.utcnow()}

    def claim(self, target: str, label: str, share: str, still_holds: Callable[[str], bool]) -> str | None:
        """Claim ``label`` for ``share``: None when it is ours now, else the share that holds it."""

        def held(entity) -> bool:
            holder = str(entity.get("share") or "")
            claimed = _utc(entity.get("claimed") or clock.utcnow())
            return holder != share and (clock.utcnow() < claimed + CLAIM_GRACE or still_holds(holder))

        try:
            current = self._table.claim(self._entity(target, label, share), "claim a pin label", held)
        except StaleJob:
            return "another pin made at this moment"
        return None if current is None else str(current.get("share"))

    def holder(self, target: str, label: str) -> str | None:
        """The share the claim names now (a pin re-reads it after writing: a claim taken over meanwhile,
        by a writer whose clock ran ahead or whose write outlasted the grace, means back off)."""
        current = self._table.read(PARTITION, _row(target, label), "read a pin label")
        return None if current is None else str(current.get("share"))

    def release(self, target: str, label: str, share: str) -> None:
        """Give the label back if ``share`` still holds the claim (one taken over since is left alone)."""
        self._table.release(PARTITION, _row(target, label), "release a pin label", lambda e: e.get("share") == share)
