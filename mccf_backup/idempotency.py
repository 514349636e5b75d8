"""Idempotency-Key: a repeated start request returns the first request's operation.

Shared by the HTTP API and anything else that starts operations on a caller's behalf. A key is
bound atomically (the table refuses a second create) to the job its request started, or to the job
it joined under single flight. A key whose request died before recording its job is taken over by
the next request with it after a minute, so no key stays burned. A key whose request was refused before any operation started for it
(a restore refused while another runs, a failed precondition, ARM refusing the request) is
released, so a retry with the same key is judged afresh once the cause is gone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any, Callable

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from . import clock, inputs
from .errors import IdempotencyKeyReused, MccfBackupError, OperationInProgress
from .jobs import Job, JobStore, JobTable, StaleJob, new_job_id

PARTITION = "idempotency"
FIRST_REQUEST_WAIT_SECONDS = 3.0  # a concurrent first request records its job within milliseconds
# A key whose job was never recorded this long after it was bound belongs to a request that died:
# the next request with it takes it over (a live first request records its job within milliseconds).
ORPHAN_GRACE = dt.timedelta(seconds=60)


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _row(scope: str, key: str) -> str:
    """The row of a key: its hash, so any key the client sends is a valid RowKey."""
    return hashlib.sha256(f"{scope}:{key}".encode()).hexdigest()


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class IdempotencyKeys:
    def __init__(self, table: JobTable, jobs: JobStore) -> None:
        self._table = table
        self._jobs = jobs

    def _entity(self, row: str, digest: str, job_id: str) -> dict:
        return {"PartitionKey": PARTITION, "RowKey": row, "bodyHash": digest, "jobId": job_id, "bound": clock.utcnow()}

    def start_once(self, scope: str, key: str | None, body: dict[str, Any], start: Callable[[str], Job]) -> Job:
        """Run ``start(job_id)`` at most once per (scope, key, body); returns the job that answers.

        Without a key, just ``start``. With one: the same key and body returns the first request's
        job; the same key with another body is refused (``idempotency_key_reused``).
        """
        job_id = new_job_id()
        if key is None:
            return start(job_id)
        inputs.idempotency_key(key)
        row, digest = _row(scope, key), body_hash(body)
        client = self._table.client
        try:
            self._table.call("record an idempotency key", client.create_entity, self._entity(row, digest, job_id))
        except ResourceExistsError:
            first = self._replay(row, digest, job_id)
            if first is not None:
                return first
        try:
            job = start(job_id)
        except MccfBackupError:
            self.release(row)  # refused before any operation started for it: judge a retry afresh
            raise
        except BaseException:
            if self._jobs.find(job_id) is None:
                self.release(row)
            raise
        if job.id != job_id:  # joined the operation already running for the target
            self._table.call("record an idempotency key", client.upsert_entity, self._entity(row, digest, job.id))
        return job

    def _replay(self, row: str, digest: str, job_id: str) -> Job | None:
        """The first request's job; or None when the key was orphaned (its request died before recording
        its job) and this request took it over, to start afresh."""
        deadline = time.monotonic() + FIRST_REQUEST_WAIT_SECONDS
        while True:
            try:
                first = self._table.call("read an idempotency key", self._table.client.get_entity, PARTITION, row)
            except ResourceNotFoundError as exc:  # the first request was refused and released it meanwhile
                raise OperationInProgress(
                    "The first request with this Idempotency-Key was just refused; retry it to be judged afresh."
                ) from exc
            if first["bodyHash"] != digest:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used with a different request body; use a new key.",
                    field="Idempotency-Key",
                )
            job = self._jobs.find(first["jobId"])
            if job is not None:
                return job
            bound = first.get("bound")
            if bound is not None and _utc(bound) + ORPHAN_GRACE <= clock.utcnow():
                try:
                    self._table.replace_if_unchanged(
                        self._entity(row, digest, job_id), first.metadata["etag"], "record an idempotency key"
                    )
                    return None
                except StaleJob:
                    continue  # another request took it over first: look at its job
            if time.monotonic() >= deadline:
                raise OperationInProgress(
                    "The first request with this Idempotency-Key is still starting; retry in a moment."
                )
            time.sleep(0.1)

    def release(self, row: str) -> None:
        try:
            self._table.call("forget an idempotency key", self._table.client.delete_entity, PARTITION, row)
        except ResourceNotFoundError:
            pass
