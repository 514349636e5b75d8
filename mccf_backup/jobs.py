"""Job history: every backup and restore, in Azure Table storage (the Functions storage account).

One entity per job. The RowKey is the job id and starts with an inverted timestamp, so a plain
query returns the newest jobs first. The HTTP API's operation state lives here too, which is
what lets any Functions instance answer a poll for a job another instance started.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import secrets
import threading
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from . import clock
from .errors import JobStoreUnavailable, OperationNotFound
from .redaction import redact
from .settings import JobStoreLocation

PARTITION = "job"
IDEMPOTENCY_PARTITION = "idempotency"
_MAX_MS = 10**13


def _key_row(key: str) -> str:
    """The table row of an Idempotency-Key: its hash, so any key the client sends is a valid RowKey."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_job_id(now: dt.datetime | None = None) -> str:
    moment = now or clock.utcnow()
    return f"{_MAX_MS - int(moment.timestamp() * 1000):013d}{secrets.token_hex(4)}"


@dataclass
class Job:
    id: str
    kind: str  # backup | restore | delete (a share removed by pruning) | delete_instance (replace-restore)
    target: str  # resource ID
    trigger: str  # timer | http | cli
    status: str = "running"  # running | succeeded | failed
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
    reason: str | None = None  # why a prune deleted a share
    phase: str | None = None  # replace-restore: "deleting" the live instance, then "restoring"
    related_job: str | None = None  # replace-restore: the delete job of the restore, and back
    etag: str | None = dataclasses.field(default=None, compare=False, repr=False)  # from the table, not stored

    @property
    def done(self) -> bool:
        return self.status != "running"

    @property
    def duration_seconds(self) -> float | None:
        return round((self.ended - self.started).total_seconds(), 3) if self.ended else None

    def fail(self, code: str, message: str) -> None:
        self.status = "failed"
        self.error_code = code
        self.error_message = redact(message)
        self.ended = clock.utcnow()

    def succeed(self) -> None:
        self.status = "succeeded"
        self.ended = clock.utcnow()

    def to_dict(self) -> dict:
        """The public view (API, CLI --json): no ARM URLs."""
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "trigger": self.trigger,
            "status": self.status,
            "started": self.started.isoformat(),
            "ended": self.ended.isoformat() if self.ended else None,
            "share": self.share,
            "error": {"code": self.error_code, "message": self.error_message} if self.error_code else None,
            "caller": self.caller,
            "restoreRegion": self.restore_region,
            "reason": self.reason,
        }

    def to_entity(self) -> dict:
        entity = {"PartitionKey": PARTITION, "RowKey": self.id}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name not in ("id", "etag") and value is not None:
                entity[item.name] = value
        return entity

    @classmethod
    def from_entity(cls, entity: dict) -> "Job":
        names = {f.name for f in dataclasses.fields(cls)} - {"id", "etag"}
        values = {name: entity[name] for name in names if name in entity and entity[name] is not None}
        for name in ("started", "ended"):
            if name in values and isinstance(values[name], dt.datetime) and values[name].tzinfo is None:
                values[name] = values[name].replace(tzinfo=dt.timezone.utc)
        metadata = getattr(entity, "metadata", None) or {}
        return cls(id=entity["RowKey"], etag=metadata.get("etag"), **values)


class JobStore:
    def __init__(self, location: JobStoreLocation, credential: TokenCredential | None = None) -> None:
        if location.connection_string:
            self._table = TableClient.from_connection_string(location.connection_string, location.table_name)
        else:
            self._table = TableClient(location.table_endpoint, location.table_name, credential=credential)
        self._name = location.table_name
        self._ready = False
        self._lock = threading.Lock()

    def _call(self, action: str, function, *args, **kwargs):
        try:
            if not self._ready:
                with self._lock:
                    if not self._ready:
                        try:
                            self._table.create_table()
                        except AzureError as exc:
                            if getattr(exc, "error_code", None) != "TableAlreadyExists" and "Conflict" not in str(
                                getattr(exc, "reason", "")
                            ):
                                raise
                        self._ready = True
            return function(*args, **kwargs)
        except (ResourceNotFoundError, ResourceModifiedError, ResourceExistsError):
            raise
        except AzureError as exc:
            raise JobStoreUnavailable(
                f"The job history (table '{self._name}' in the Functions storage account) could not {action}: "
                f"{redact(str(exc).splitlines()[0])}. Check AzureWebJobsStorage."
            ) from exc

    def save(self, job: Job) -> Job:
        self._call("record a job", self._table.upsert_entity, job.to_entity(), mode=UpdateMode.REPLACE)
        return job

    def claim(self, job: Job) -> bool:
        """Save ``job`` only if nobody changed it since it was read (ETag); False when another poll won."""
        try:
            self._call(
                "record a job",
                self._table.update_entity,
                job.to_entity(),
                mode=UpdateMode.REPLACE,
                etag=job.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except ResourceModifiedError:
            return False
        return True

    def claim_idempotency_key(self, key: str, body_hash: str, job_id: str) -> tuple[str, str] | None:
        """Bind an Idempotency-Key to a job, atomically: None if this call won, else (job id, body hash) of
        the first request with that key."""
        row = _key_row(key)
        entity = {"PartitionKey": IDEMPOTENCY_PARTITION, "RowKey": row, "bodyHash": body_hash, "jobId": job_id}
        try:
            self._call("record an idempotency key", self._table.create_entity, entity)
            return None
        except ResourceExistsError:
            existing = self._call("read an idempotency key", self._table.get_entity, IDEMPOTENCY_PARTITION, row)
            return existing["jobId"], existing["bodyHash"]

    def rebind_idempotency_key(self, key: str, body_hash: str, job_id: str) -> None:
        """Point a key at another job (the one already running, under single flight)."""
        entity = {
            "PartitionKey": IDEMPOTENCY_PARTITION,
            "RowKey": _key_row(key),
            "bodyHash": body_hash,
            "jobId": job_id,
        }
        self._call("record an idempotency key", self._table.upsert_entity, entity, mode=UpdateMode.REPLACE)

    def release_idempotency_key(self, key: str) -> None:
        """Forget a key whose request was refused before any job existed, so a retry is judged afresh."""
        row = _key_row(key)
        try:
            self._call("forget an idempotency key", self._table.delete_entity, IDEMPOTENCY_PARTITION, row)
        except ResourceNotFoundError:
            pass

    def get(self, job_id: str) -> Job:
        try:
            entity = self._call("read a job", self._table.get_entity, PARTITION, job_id)
        except ResourceNotFoundError as exc:
            raise OperationNotFound(f"No operation with id '{job_id[:64]}' exists.") from exc
        return Job.from_entity(entity)

    def running(self, target: str | None, kind: str) -> list[Job]:
        """Jobs of a kind still marked running (for one target, or all), newest first (job ids invert
        time): what reconciliation looks at. Filtered by the table service, so it costs one query however long the history is."""
        condition = "PartitionKey eq @p and status eq 'running' and kind eq @kind"
        parameters = {"p": PARTITION, "kind": kind}
        if target is not None:
            condition += " and target eq @target"
            parameters["target"] = target

        def query() -> list[Job]:
            return [Job.from_entity(entity) for entity in self._table.query_entities(condition, parameters=parameters)]

        return sorted(self._call("list running jobs", query), key=lambda job: job.id)

    def list(self, target: str | None = None, kind: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first; filtered by target resource ID (case-insensitive) and kind."""

        def query() -> list[Job]:
            jobs = []
            for entity in self._table.query_entities(f"PartitionKey eq '{PARTITION}'"):
                job = Job.from_entity(entity)
                if target and job.target.lower() != target.lower():
                    continue
                if kind and job.kind != kind:
                    continue
                jobs.append(job)
                if len(jobs) >= limit:
                    break
            return jobs

        return self._call("list jobs", query)
