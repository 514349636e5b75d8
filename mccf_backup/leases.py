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

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError

from . import clock
from .jobs import JobStore, JobTable, StaleJob

PARTITION = "lease"
# A lease whose job was never recorded is free after this: the request that took it died before the
# job's first write, which comes milliseconds after the lease.
UNRECORDED_GRACE = dt.timedelta(seconds=60)
_ATTEMPTS = 5  # takeover races: re-read and try again this often before reporting the winner


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

    def _read(self, target: str) -> tuple[Lease, str] | None:
        client = self._table.client
        try:
            entity = self._table.call("read a lease", client.get_entity, PARTITION, _row(target))
        except ResourceNotFoundError:
            return None
        lease = Lease(
            entity["target"], entity["job"], entity["kind"], _utc(entity["acquired"]), _utc(entity["expires"])
        )
        return lease, entity.metadata["etag"]

    def holder(self, target: str) -> Lease | None:
        """The lease of a job still holding the target, or None when it is free (nothing is changed)."""
        found = self._read(target)
        if found is None or self._free(found[0]):
            return None
        return found[0]

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
        client = self._table.client
        for _ in range(_ATTEMPTS):
            try:
                self._table.call("take a lease", client.create_entity, self._entity(target, job_id, kind))
                return None
            except ResourceExistsError:
                pass
            found = self._read(target)
            if found is None:
                continue  # released in between: create again
            lease, etag = found
            if not self._free(lease):
                return lease
            try:
                self._table.replace_if_unchanged(self._entity(target, job_id, kind), etag, "take a lease")
                return None
            except StaleJob:
                continue  # another request took it first: look at who
        found = self._read(target)
        if found is None:
            raise RuntimeError(f"the lease of {target} kept changing")
        return found[0]

    def release(self, target: str, job_id: str) -> None:
        """Give the lease back if ``job_id`` still holds it (a lease taken over since is left alone)."""
        found = self._read(target)
        if found is None or found[0].job != job_id:
            return
        try:
            self._table.call(
                "release a lease",
                self._table.client.delete_entity,
                PARTITION,
                _row(target),
                etag=found[1],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass
