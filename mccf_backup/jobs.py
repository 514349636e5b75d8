"""Job history and operation state, in Azure Table storage (the Functions storage account).

One entity per job. The RowKey is the job id and starts with an inverted timestamp, so a plain
query returns the newest jobs first. The state of a running operation lives here too, which is
what lets any Functions instance advance, poll or end a job another instance started. Every
change of a job's state is an ETag-conditional replace: of two instances moving the same job, one
wins and the other learns it lost (``StaleJob``) instead of overwriting.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable

from azure.core import MatchConditions
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from . import clock, lifecycle
from .errors import JobStoreUnavailable, OperationNotFound
from .redaction import redact
from .settings import JobStoreLocation

PARTITION = "job"
_MAX_MS = 10**13


def new_job_id(now: dt.datetime | None = None) -> str:
    moment = now or clock.utcnow()
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}{secrets.token_hex(4)}"


class StaleJob(Exception):
    """Another instance changed the job since it was read: this instance's step lost and does nothing."""


@dataclass
class Job:
    id: str
    kind: str  # backup | restore | delete_instance (replace-restore) | delete (pruned share) | verify
    target: str  # resource ID
    trigger: str  # timer | queue | http | cli | reconcile
    state: str = lifecycle.ACCEPTED
    started: dt.datetime = dataclasses.field(default_factory=lambda: clock.utcnow())
    ended: dt.datetime | None = None
    share: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    caller: str | None = None
    restore_region: str | None = None
    status_url: str | None = None
    location_url: str | None = None
    retry_after: float = 10
    arm_status: str | None = None
    reason: str | None = None  # why a prune deleted a share; what a verification found
    phase: str | None = None  # replace-restore: "deleting" the live instance, then "restoring"
    related_job: str | None = None  # replace-restore: the delete job of the restore, and back
    deadline: dt.datetime | None = None  # the current state must be left by then
    next_check: dt.datetime | None = None  # when the next step is due
    step: int = 0  # bumped by every transition; an operations-queue message names the step it is for
    watch: str | None = None  # how a running operation is followed: status | share | instance
    watch_since: dt.datetime | None = None
    last_error: str | None = None  # the last failed look at a job that goes on (e.g. a status URL's 500)
    failures: int = 0  # failed looks in a row: each doubles the wait before the next, up to 5 minutes
    etag: str | None = dataclasses.field(default=None, compare=False, repr=False)  # from the table, not stored

    @property
    def status(self) -> str:
        return lifecycle.coarse_status(self.state)

    @property
    def done(self) -> bool:
        return lifecycle.is_final(self.state)

    def seconds_until_due(self) -> float:
        """When to look again (a poll's Retry-After): the next step's due time, else ARM's Retry-After."""
        if self.next_check is None:
            return self.retry_after
        return max(0.0, (self.next_check - clock.utcnow()).total_seconds())

    @property
    def duration_seconds(self) -> float | None:
        return round((self.ended - self.started).total_seconds(), 3) if self.ended else None

    def to_dict(self) -> dict:
        """The public view (API, CLI --json): no ARM URLs."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "trigger": self.trigger,
            "status": self.status,
            "state": self.state,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "share": self.share,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "caller": self.caller,
            "restoreRegion": self.restore_region,
            "reason": self.reason,
            "deadline": self.deadline.isoformat() if self.deadline else None,
            "lastError": self.last_error,
        }

    def to_entity(self) -> dict:
        entity: dict[str, Any] = {"PartitionKey": PARTITION, "RowKey": self.id, "status": self.status}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name not in ("id", "etag") and value is not None:
                entity[item.name] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict) -> "Job":
        names = {f.name for f in dataclasses.fields(cls)} - {"id", "etag"}
        values = {name: entity[name] for name in names if name in entity and entity[name] is not None}
        for name, value in values.items():
            if isinstance(value, dt.datetime) and value.tzinfo is None:
                values[name] = value.replace(tzinfo=dt.timezone.utc)
        for name in ("step", "failures"):
            if name in values:
                values[name] = int(values[name])
        if "state" not in values:  # a job recorded before the lifecycle had states: running, succeeded, failed
            values["state"] = {"succeeded": lifecycle.SUCCEEDED, "failed": lifecycle.FAILED}.get(
                entity.get("status"), lifecycle.RUNNING
            )
        metadata = getattr(entity, "metadata", None) or {}
        return cls(id=entity["RowKey"], etag=metadata.get("etag"), **values)


def operation_not_found() -> OperationNotFound:
    """One answer for an id that does not exist and one the caller may not see: neither tells which."""
    return OperationNotFound("No operation with that id exists, or none this caller's roles may follow.", field="id")


class JobTable:
    """The table (created on first use) and the one place its errors become ``JobStoreUnavailable``.

    Leases and Idempotency-Keys live in the same table, in their own partitions, so one ETag
    mechanism and one connection serve all three.
    """

    def __init__(self, location: JobStoreLocation, credential: TokenCredential | None = None) -> None:
        if location.connection_string:
            self.client = TableClient.from_connection_string(location.connection_string, location.table_name)
        else:
            self.client = TableClient(location.table_endpoint, location.table_name, credential=credential)
        self._name = location.table_name
        self._ready = False
        self._lock = threading.Lock()

    def call(self, action: str, function: Callable, *args, **kwargs):
        """Run a table call; conflicts and absences pass through, any other failure says what to check."""
        try:
            if not self._ready:
                with self._lock:
                    if not self._ready:
                        try:
                            self.client.create_table()
                        except ResourceExistsError:
                            pass
                        self._ready = True
            return function(*args, **kwargs)
        except (ResourceNotFoundError, ResourceModifiedError, ResourceExistsError):
            raise
        except AzureError as exc:
            raise JobStoreUnavailable(
                f"The job history (table '{self._name}' in the Functions storage account) could not {action}: "
                f"{redact(str(exc).splitlines()[0])}. Check AzureWebJobsStorage."
            ) from exc

    def replace_if_unchanged(self, entity: dict, etag: str | None, action: str) -> str:
        """Replace an entity only if its ETag is still ``etag``; returns the new ETag."""
        try:
            result = self.call(
                action,
                self.client.update_entity,
                entity,
                mode=UpdateMode.REPLACE,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise StaleJob(entity["RowKey"]) from exc
        return (result or {}).get("etag")

    # --- single flight: one entity, created if absent or taken over ETag-conditionally ---
    def read(self, partition: str, row: str, action: str) -> Any | None:
        """The entity (its ETag in ``.metadata``), or None when there is none."""
        try:
            return self.call(action, self.client.get_entity, partition, row)
        except ResourceNotFoundError:
            return None

    def claim(self, entity: dict, action: str, held: Callable[[Any], bool], attempts: int = 5) -> Any | None:
        """Create ``entity``; where one is in its place, take it over (ETag-conditionally) unless ``held``
        says it still holds. None when ours now, else the entity that holds. However many callers try at
        once, one wins. Raises StaleJob when it kept changing under every attempt."""
        partition, row = entity["PartitionKey"], entity["RowKey"]
        for _ in range(attempts):
            try:
                self.call(action, self.client.create_entity, entity)
                return None
            except ResourceExistsError:
                pass
            current = self.read(partition, row, action)
            if current is None:
                continue  # released in between: create again
            if held(current):
                return current
            try:
                self.replace_if_unchanged(entity, current.metadata["etag"], action)
                return None
            except StaleJob:
                continue  # another caller took it first: look at who
        current = self.read(partition, row, action)
        if current is None:
            raise StaleJob(row)
        return current

    def release(self, partition: str, row: str, action: str, ours: Callable[[Any], bool]) -> None:
        """Delete the entity if ``ours`` says so and nobody changed it since (one taken over is left alone)."""
        current = self.read(partition, row, action)
        if current is None or not ours(current):
            return
        try:
            self.call(
                action,
                self.client.delete_entity,
                partition,
                row,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            pass


class JobStore:
    def __init__(self, table: JobTable) -> None:
        self.table = table

    def create(self, job: Job) -> Job:
        """Record a new job; its id is unique, so a second create of it is a bug (or a replayed step)."""
        result = self.table.call("record a job", self.table.client.create_entity, job.to_entity())
        job.etag = (result or {}).get("etag")
        return job

    def replace(self, job: Job) -> Job:
        """Write ``job`` only if nobody changed it since it was read; raises StaleJob when another won."""
        if job.etag is None:
            raise ValueError("a job must be read (or created) before it is replaced")
        job.etag = self.table.replace_if_unchanged(job.to_entity(), job.etag, "record a job")
        return job

    def get(self, job_id: str) -> Job:
        try:
            entity = self.table.call("read a job", self.table.client.get_entity, PARTITION, job_id)
        except ResourceNotFoundError as exc:
            raise operation_not_found() from exc
        return Job.from_entity(entity)

    def find(self, job_id: str) -> Job | None:
        try:
            return self.get(job_id)
        except OperationNotFound:
            return None

    def _query(self, action: str, condition: str, parameters: dict) -> list[Job]:
        def query() -> list[Job]:
            return [Job.from_entity(e) for e in self.table.client.query_entities(condition, parameters=parameters)]

        return sorted(self.table.call(action, query), key=lambda job: job.id)

    def running(self, target: str | None = None, kind: str | None = None) -> list[Job]:
        """Jobs not yet final (for one target, of one kind, or all), newest first (job ids invert
        time). Filtered by the table service, so it costs one query however long the history is."""
        condition = "PartitionKey eq @p and status eq 'running'"
        parameters: dict[str, str] = {"p": PARTITION}
        if kind is not None:
            condition += " and kind eq @kind"
            parameters["kind"] = kind
        if target is not None:
            condition += " and target eq @target"
            parameters["target"] = target
        return self._query("list running jobs", condition, parameters)

    def list(self, target: str | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first; filtered by target resource ID (case-insensitive) and kind."""

        def query() -> list[Job]:
            jobs = []
            for entity in self.table.client.query_entities("PartitionKey eq @p", parameters={"p": PARTITION}):
                job = Job.from_entity(entity)
                if target and job.target.lower() != target.lower():
                    continue
                if kind and job.kind != kind:
                    continue
                jobs.append(job)
                if len(jobs) >= limit:
                    break
            return jobs

        return self.table.call("list jobs", query)
