"""Restores: checked before any ARM write, started under the target's lease, followed a step at a time.

A restore recreates the instance under its own name from a backup share; it ends when ARM's
operation ended and the instance reached provisioningState Succeeded. A replace-restore (delete
the live instance, then restore) is one restore job in two phases, with the delete recorded as a
``delete_instance`` job of its own; the restore request is sent by exactly one step after the
delete ended (the transition that sends it is the one that wins).
"""

from __future__ import annotations

import datetime as dt

from azure.core.exceptions import ResourceExistsError

from . import clock, errors, logs
from .arm import LOST, OperationStatus
from .backup import started_of
from .errors import MccfBackupError, OperationAbandoned, OperationInProgress, OperationOutcomeUnknown
from .errors import OperationTimedOut, RestoreFailed
from .jobs import Job, StaleJob, new_job_id
from .leases import Lease
from .lifecycle import ABANDONED, FAILED, FINISHING, RUNNING, STARTING, SUCCEEDED
from .operations import Operations
from .restore_checks import RestoreRequest, check_restore
from .run import Run
from .storage_config import RESTORE
from .targets import Target

log = logs.logger("mccf_backup")
DELETING, RESTORING = "deleting", "restoring"
INSTANCE_LOOK_SECONDS = 10


def _busy(target: Target, holder: Lease) -> OperationInProgress:
    return OperationInProgress(
        f"A {holder.kind} of '{target.name}' is already running (operation {holder.job}); wait for it to end "
        "(GET /api/operations/{id} with Backup.Read or the role that started it), then try again.",
        target=target.resource_id,
    )


def _provisioning(instance: dict | None) -> str | None:
    return ((instance or {}).get("properties") or {}).get("provisioningState")


class Restores:
    def __init__(self, run: Run, operations: Operations) -> None:
        self.run = run
        self.ops = operations

    def start(self, request: RestoreRequest, job_id: str | None = None) -> Job:
        """Check every precondition, take the target's lease, record the job, send the first request.
        Refused with 409 ``operation_in_progress`` while any operation runs on the target."""
        target = self.run.targets.resolve(request.target)
        job_id = job_id or new_job_id()
        holder = self.ops.holder(target.resource_id)  # before the checks: "in progress" says more than they would
        if holder is not None:
            raise _busy(target, holder)
        check = check_restore(self.run, request)
        if not check.ok:
            holder = self.ops.holder(target.resource_id)  # a restore that started meanwhile explains it best
            if holder is not None:
                raise _busy(target, holder)
            check.raise_first()
        holder = self.ops.take_lease(target.resource_id, job_id, "restore")
        if holder is not None:
            raise _busy(target, holder)
        try:
            job = Job(
                job_id,
                "restore",
                target.resource_id,
                request.trigger,
                caller=request.caller,
                share=check.backup.share,
                restore_region=check.region,
            )
            if check.replacing:
                job.phase, job.related_job = DELETING, new_job_id()
            job = self.ops.record(job)
        except BaseException:
            self.run.leases.release(target.resource_id, job_id)
            raise
        log.info("restore %s of %s from %s accepted", job.id, target.resource_id, job.share)
        job = self.ops.advance(job, job.step)
        if job.state == FAILED and job.error_code:
            error = errors.from_code(job.error_code, job.error_message or "", target=job.target)
            error.job = job  # the recorded failure, for a caller that adds to it (a queue message's last attempt)
            raise error
        return job

    # --- the steps (operations.Steps) ---
    def send(self, job: Job) -> Job:
        target = self.run.targets.resolve(job.target)
        if job.phase == DELETING:
            self._record_delete(job, target)  # before the claim: if this fails, nothing was sent and it is retried
        job = self.ops.transition(job, STARTING)  # the claim: only this step sends the request
        if job.phase == DELETING:
            return self._send_delete(job, target)
        return self._send_restore(job, target)

    def _record_delete(self, job: Job, target: Target) -> None:
        if self.run.jobs.find(job.related_job) is not None:
            return
        delete = Job(
            job.related_job,
            "delete_instance",
            target.resource_id,
            job.trigger,
            state=RUNNING,
            caller=job.caller,
            share=job.share,
            related_job=job.id,
            reason=f"replace-restore: delete the live instance, then restore {job.share}",
        )
        try:
            self.ops.record(delete, deadline=self.run.deadlines.for_state(RUNNING, job.started, clock.utcnow()))
        except ResourceExistsError:
            pass  # another step recorded it a moment ago

    def _send_delete(self, job: Job, target: Target) -> Job:
        try:
            started = self.run.arm.start_delete(target, job.related_job)
        except MccfBackupError as err:
            return self._after_unanswered(job, target, err)
        log.info("replace-restore %s: deleting %s first (job %s)", job.id, target.resource_id, job.related_job)
        return self._running(job, started)

    def _send_restore(self, job: Job, target: Target, deadline: dt.datetime | None = None) -> Job:
        try:
            sas_url = self.run.storage().sas_url(RESTORE, self.run.deadlines.running)
            started = self.run.arm.start_restore(target, sas_url, job.share, job.restore_region, job.id)
        except OperationOutcomeUnknown as err:
            return self._after_unanswered(job, target, err, deadline)
        except MccfBackupError as err:
            return self.ops.fail(job, err)
        return self._running(job, started, deadline)

    def _after_unanswered(self, job: Job, target: Target, err: MccfBackupError, deadline=None) -> Job:
        """ARM may have acted on a request whose answer was lost: the instance tells. A delete acted on
        leaves it Deleting or gone; a restore acted on recreates it. A restore that left no instance is
        asked once more: ARM refuses (409) a second restore into an instance that exists."""
        try:
            instance = self.run.arm.get(target)
        except MccfBackupError:
            return self.ops.fail(job, err)
        state = _provisioning(instance)
        if job.phase == DELETING:
            acted = instance is None or state == "Deleting"
        else:
            acted = instance is not None
            if not acted and isinstance(err, OperationOutcomeUnknown):
                try:
                    sas_url = self.run.storage().sas_url(RESTORE, self.run.deadlines.running)
                    started = self.run.arm.start_restore(target, sas_url, job.share, job.restore_region, job.id)
                except OperationInProgress:
                    acted = True
                except MccfBackupError as again:
                    return self.ops.fail(job, again)
                else:
                    return self._running(job, started, deadline)
        if not acted:
            return self.ops.fail(job, err)
        log.warning("%s %s: %s ARM acted on it; following the instance", job.kind, job.id, err.code)
        changes = {"deadline": deadline} if deadline else {}
        return self.ops.transition(job, RUNNING, watch="instance", watch_since=clock.utcnow(), **changes)

    def _running(self, job: Job, started, deadline: dt.datetime | None = None) -> Job:
        changes = {"deadline": deadline} if deadline else {}
        return self.ops.transition(
            job,
            RUNNING,
            delay=0 if started.completed else None,
            status_url=started.status_url,
            location_url=started.location_url,
            retry_after=started.retry_after,
            arm_status="Succeeded" if started.completed else "InProgress",
            watch="status",
            **changes,
        )

    def poll(self, job: Job) -> Job:
        target = self.run.targets.resolve(job.target)
        if job.watch == "instance":
            return self._poll_instance(job, target)
        try:
            status = self.run.arm.status(started_of(job), target)
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        if status.status == LOST:
            log.warning("%s %s: ARM no longer knows its operation; following the instance", job.kind, job.id)
            return self.ops.transition(job, RUNNING, watch="instance", watch_since=clock.utcnow())
        if not status.done:
            return self.ops.transition(
                job, RUNNING, retry_after=status.retry_after, arm_status=status.status, failures=0
            )
        if job.phase == DELETING:
            return self._after_delete(job, target, status)
        if status.status == "Succeeded":
            return self.ops.transition(job, FINISHING, delay=0, arm_status="Succeeded")
        return self.ops.fail(job, _failed("restore", status))

    def _poll_instance(self, job: Job, target: Target) -> Job:
        """An operation ARM lost track of: the instance tells (gone for a delete; Succeeded for a restore)."""
        try:
            instance = self.run.arm.get(target)
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        state = _provisioning(instance)
        if job.phase == DELETING and instance is None:
            return self._after_delete(job, target, OperationStatus("Succeeded"))
        if job.phase != DELETING and state == "Succeeded":
            return self.ops.transition(job, FINISHING, delay=0, arm_status="Succeeded")
        if job.phase != DELETING and state in ("Failed", "Canceled"):
            return self.ops.fail(job, RestoreFailed(f"'{target.name}' is in provisioningState {state}."))
        return self.ops.transition(job, RUNNING, delay=INSTANCE_LOOK_SECONDS, arm_status=f"instance {state}")

    def _after_delete(self, job: Job, target: Target, status: OperationStatus) -> Job:
        """The live instance's delete ended: record it, then send the restore (this step's claim wins
        once). The restore is a new operation: it gets the whole operation lifetime again."""
        if status.status != "Succeeded":
            error = _failed("delete", status)
            self._end_delete(job, error, FAILED)
            return self.ops.fail(
                job, RestoreFailed(f"Deleting the live instance before the restore failed: {error.message}")
            )
        self._end_delete(job, None)
        job = self.ops.transition(job, STARTING, phase=RESTORING, status_url=None, location_url=None, watch=None)
        return self._send_restore(job, target, clock.utcnow() + self.run.deadlines.running)

    def _end_delete(self, job: Job, error: MccfBackupError | None, state: str = ABANDONED) -> None:
        """End the replace-restore's delete record (if another step has not): succeeded, or with ``error``."""
        delete = self.run.jobs.find(job.related_job) if job.related_job else None
        if delete is None or delete.done:
            return
        try:
            if error is None:
                self.ops.transition(delete, SUCCEEDED)
            else:
                self.ops.fail(delete, error, state)
        except StaleJob:
            pass  # another step ended it meanwhile

    def finish(self, job: Job) -> Job:
        """ARM's operation ended: the restore is done when the instance is Succeeded."""
        target = self.run.targets.resolve(job.target)
        try:
            instance = self.run.arm.get(target)
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        state = _provisioning(instance)
        if state == "Succeeded":
            return self.ops.transition(job, SUCCEEDED, last_error=None)
        if instance is None or state in ("Failed", "Canceled"):
            where = "missing" if instance is None else f"in provisioningState {state}"
            return self.ops.fail(job, RestoreFailed(f"ARM reported the restore done, but '{target.name}' is {where}."))
        return self.ops.transition(job, FINISHING, delay=INSTANCE_LOOK_SECONDS, arm_status=f"instance {state}")

    def expire(self, job: Job) -> Job:
        target = self.run.targets.resolve(job.target)
        if job.state == STARTING:  # its sender died while asking ARM: the instance tells what happened
            return self.ops.transition(job, RUNNING, watch="instance", watch_since=clock.utcnow())
        if job.state == RUNNING:
            looked = self.poll(job)  # one last look: it may have ended, or its delete, so the restore was sent
            if looked.done or looked.state != RUNNING or looked.phase != job.phase:
                return looked
            return self.ops.fail(
                looked,
                OperationTimedOut(
                    f"The {job.phase or 'restore'} did not finish within {self.run.settings.operation_timeout_minutes} "
                    "minutes (BACKUP_OPERATION_TIMEOUT_MINUTES); it may still be running. Check the instance in "
                    f"the portal (az resource show --ids {target.resource_id}) before restoring again."
                ),
                ABANDONED,
            )
        if job.state == FINISHING:
            looked = self.finish(job)  # one last look at the instance
            if looked.done:
                return looked
            return self.ops.fail(
                looked,
                RestoreFailed(
                    f"'{target.name}' did not reach provisioningState Succeeded in time ({looked.arm_status})."
                ),
            )
        return self.ops.fail(
            job, OperationAbandoned("The restore was recorded but never sent to ARM in time."), ABANDONED
        )

    def ended(self, job: Job) -> None:
        """A restore that ended leaves no running delete record behind it."""
        if job.related_job and job.kind == "restore":
            self._end_delete(job, OperationAbandoned(f"The replace-restore {job.id} ended {job.state}."))


def _failed(what: str, status: OperationStatus) -> RestoreFailed:
    return RestoreFailed(
        f"The ARM {what} operation ended {status.status}: {status.error_code or 'no code'}: "
        f"{status.error_message or 'no message'}"
    )
