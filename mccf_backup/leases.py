"""Single flight per target: one lease entity in the job table, the only gate to an ARM write.

A backup, restore or delete of an instance is sent to ARM only by the job that holds the target's
lease. Taking it is a create-if-absent (the table refuses a second create) or an ETag-conditional
takeover of a lease whose job has ended, whose job was never recorded (its request died between the
lease and the job), or which outlived every deadline its job could have. However many instances ask
at once, one wins; the others learn which job holds it. ARM's own 409 is never the gate.

The lease is released when its job ends; a release that never happens (the instance died) costs
nothing, since an ended job's lease is free to take.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass


from . import clock
from .jobs import JobStore, JobTable, StaleJob

PARTITION = "lease"
# A lease whose job was never recorded is free after this: the request that took it died before the
# job's first write, which comes milliseconds after the lease.
UNRECORDED_GRACE = dt.timedelta(seconds=60)


@dataclass(frozen=True)
class Lease:
    target: str
    job: str
    kind: str
    acquired: dt.datetime
    expires: dt.datetime


def _row(target: str) -> str:
    """RowKeys cannot hold '/': the lease of a target is keyed by its lower-cased resource ID's hash."""
    return hashlib.sha256(target.lower().encode()).hexdigest()


def _lease(entity) -> Lease:
    return Lease(entity["target"], entity["job"], entity["kind"], _utc(entity["acquired"]), _utc(entity["expires"]))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


class Leases:
    def __init__(self, table: JobTable, jobs: JobStore, lifetime: dt.timedelta) -> None:
        self._table = table
        self._jobs = jobs
        self._lifetime = lifetime  # longer than any job can live: the last resort for a lost holder

    def _entity(self, target: str, job_id: str, kind: str) -> dict:
        now = clock.utcnow()
        return {
            "PartitionKey": PARTITION,
            "RowKey": _row(target),
            "target": target,
            "job": job_id,
            "kind": kind,
            "acquired": now,
            "expires": now + self._lifetime,
        }

    def _read(self, target: str) -> Lease | None:
        entity = self._table.read(PARTITION, _row(target), "read a lease")
        return None if entity is None else _lease(entity)

    def holder(self, target: str) -> Lease | None:
        """The lease of a job still holding the target, or None when it is free (nothing is changed)."""
        lease = self._read(target)
        return None if lease is None or self._free(lease) else lease

    def _free(self, lease: Lease) -> bool:
        now = clock.utcnow()
        if lease.expires <= now:
            return True
        job = self._jobs.find(lease.job)
        if job is None:
            return lease.acquired + UNRECORDED_GRACE <= now
        return job.done

    def acquire(self, target: str, job_id: str, kind: str) -> Lease | None:
        """Take the target's lease for ``job_id``: None when taken, else the lease of the job holding it."""
        try:
            held = self._table.claim(
                self._entity(target, job_id, kind), "take a lease", lambda entity: not self._free(_lease(entity))
            )
        except StaleJob:
            raise RuntimeError(f"the lease of {target} kept changing") from None
        return None if held is None else _lease(held)

    def release(self, target: str, job_id: str) -> None:
        """Give the lease back if ``job_id`` still holds it (a lease taken over since is left alone)."""
        self._table.release(PARTITION, _row(target), "release a lease", lambda entity: entity["job"] == job_id)
