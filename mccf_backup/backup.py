"""Backups: start one under the target's lease, follow it a step at a time, tag and protect its share.

Starting sends the one ARM request and returns; the operations queue follows the operation. ARM
may lose an answer (5xx, reset, timeout) after acting on the request: the engine never retries a
POST blindly. It looks for the backup's share, then asks once more at once: while the first backup
runs ARM answers 409, and the job follows it by the share it writes; a 202 means none had started.
An operation ARM forgets (its status URL answers 404) is followed by its share too, for
LOST_OPERATION_GRACE_SECONDS at most. A backup share no job claims (a manual backup, or one whose
job ended before it appeared) is adopted when the target's next backup starts.
"""

from __future__ import annotations

import datetime as dt

from . import catalog as cat
from . import clock, errors, logs
from .arm import LOST, OperationStatus, StartedOperation
from .catalog import Backup
from .errors import BackupFailed, MccfBackupError, OperationAbandoned, OperationInProgress, OperationOutcomeUnknown
from .errors import OperationTimedOut
from .jobs import Job, new_job_id
from .lifecycle import ABANDONED, FAILED, FINISHING, RUNNING, STARTING, SUCCEEDED
from .operations import Operations
from .run import Run
from .storage_config import BACKUP
from .targets import Target

log = logs.logger("mccf_backup")
# Share timestamps come from the Managed CCF service's clock; allow for skew when matching a new share.
SHARE_CLOCK_SKEW = dt.timedelta(minutes=2)
# ARM said the backup ended, but the share is not listed yet: how long to look before failing the job.
SHARE_APPEAR_GRACE = dt.timedelta(minutes=2)
SHARE_LOOK_SECONDS = 5


def started_of(job: Job) -> StartedOperation:
    completed = not (job.status_url or job.location_url)
    return StartedOperation(job.status_url, job.location_url, job.retry_after, completed)


class Backups:
    def __init__(self, run: Run, operations: Operations) -> None:
        self.run = run
        self.ops = operations

    @property
    def lifetime(self) -> dt.timedelta:
        return self.run.deadlines.running

    # --- starting ---
    def start(
        self, target: Target, trigger: str, caller: str | None = None, job_id: str | None = None, unclaimed=None
    ) -> tuple[Job, bool]:
        """Start a backup of ``target``; returns (job, True), or (the running backup, False) under
        single flight. Raises what refused it (the failed job is recorded first)."""
        job_id = job_id or new_job_id()
        holder = self.ops.take_lease(target.resource_id, job_id, "backup")
        if holder is not None:
            if holder.kind != "backup":
                raise OperationInProgress(
                    f"A {holder.kind} of '{target.name}' is running (operation {holder.job}); back it up after.",
                    target=target.resource_id,
                )
            return self.ops.holder_job(holder), False
        try:
            job = self.ops.record(Job(job_id, "backup", target.resource_id, trigger, caller=caller))
        except BaseException:
            self.run.leases.release(target.resource_id, job_id)
            raise
        log.info("backup %s of %s accepted (trigger %s)", job.id, target.resource_id, trigger)
        try:  # recorded first, so concurrent requests find the job they join at once; still before the POST
            self.adopt(target, unclaimed)
        except MccfBackupError as err:
            log.warning(
                "could not adopt the unclaimed shares of %s (%s); the next backup tries again", target.name, err.code
            )
        job = self.ops.advance(job, job.step)
        if job.state == FAILED and job.error_code:
            error = errors.from_code(job.error_code, job.error_message or "", target=job.target)
            error.job = job  # the recorded failure, for a caller that adds to it (a queue message's last attempt)
            raise error
        return job, True

    # --- the steps (operations.Steps) ---
    def send(self, job: Job) -> Job:
        target = self.run.targets.resolve(job.target)
        job = self.ops.transition(job, STARTING)  # the claim: only this step sends the POST
        try:
            region = self.run.location(target)
            sas_url = self.run.storage().sas_url(BACKUP, self.lifetime)
            try:
                started = self.run.arm.start_backup(target, sas_url, self.run.settings.restore_region, job.id)
            except OperationOutcomeUnknown as err:
                return self._after_ambiguous(job, target, sas_url, err, region)
            except OperationInProgress as busy:
                # ARM runs a backup we do not hold (one whose job ended before it did, or a manual one):
                # its share is the backup this job asked for
                log.info(
                    "backup %s: ARM is already backing up %s; following that backup by its share", job.id, target.name
                )
                return self._watch_share(
                    job, getattr(busy, "retry_after", None) or SHARE_LOOK_SECONDS, restore_region=region
                )
        except MccfBackupError as err:
            return self.ops.fail(job, err)
        return self._started(job, started, region)

    def _started(self, job: Job, started: StartedOperation, region: str | None) -> Job:
        if started.completed:
            return self.ops.transition(job, FINISHING, delay=0, restore_region=region, arm_status="Succeeded")
        return self.ops.transition(
            job,
            RUNNING,
            restore_region=region,
            status_url=started.status_url,
            location_url=started.location_url,
            retry_after=started.retry_after,
            arm_status="InProgress",
            watch="status",
        )

    def _after_ambiguous(self, job: Job, target: Target, sas_url: str, err: MccfBackupError, region: str) -> Job:
        """ARM may or may not have started the backup: look, then ask once more at once, so none is made
        twice. A share already there means it ran. ARM answering 409 means a backup of the instance
        runs, the one the lost answer was about (nothing else of ours runs: we hold the lease)."""
        log.warning("backup %s of %s: %s Looking before asking again.", job.id, target.resource_id, err.message)
        try:
            found = self.run.catalog().find_new(target, job.started - SHARE_CLOCK_SKEW, job.id)
        except MccfBackupError:
            found = None  # cannot look: asking again still tells (409 while the first one runs)
        if found is not None:
            return self.ops.transition(job, FINISHING, delay=0, restore_region=region, share=found.share)
        try:
            started = self.run.arm.start_backup(target, sas_url, self.run.settings.restore_region, job.id)
        except OperationInProgress as busy:
            log.info("backup %s: ARM is running a backup of %s; following it by its share", job.id, target.name)
            return self._watch_share(
                job, getattr(busy, "retry_after", None) or SHARE_LOOK_SECONDS, restore_region=region
            )
        return self._started(job, started, region)

    def _watch_share(self, job: Job, retry_after: float, **changes) -> Job:
        return self.ops.transition(
            job,
            RUNNING,
            retry_after=retry_after,
            watch="share",
            watch_since=clock.utcnow(),
            arm_status="Unknown",
            **changes,
        )

    def poll(self, job: Job) -> Job:
        if job.watch == "share":
            return self._poll_share(job)
        target = self.run.targets.resolve(job.target)
        try:
            status = self.run.arm.status(started_of(job), target)
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        return self._apply(job, status)

    def _apply(self, job: Job, status: OperationStatus) -> Job:
        if status.status == LOST:
            log.warning("backup %s: ARM no longer knows its operation; following it by its share", job.id)
            return self._watch_share(job, status.retry_after)
        if not status.done:
            return self.ops.transition(
                job, RUNNING, retry_after=status.retry_after, arm_status=status.status, watch="status", failures=0
            )
        if status.status == "Succeeded":
            return self.ops.transition(job, FINISHING, delay=0, arm_status="Succeeded", watch_since=clock.utcnow())
        return self.ops.fail(
            job,
            BackupFailed(
                f"The ARM backup operation ended {status.status}: {status.error_code or 'no code'}: "
                f"{status.error_message or 'no message'}"
            ),
        )

    def _poll_share(self, job: Job) -> Job:
        """A backup known by the share it will write: the share, else ARM's status URL if it answers
        again, else (past the grace) the end of the job. A share appearing later is adopted."""
        target = self.run.targets.resolve(job.target)
        try:
            found = self.run.catalog().find_new(target, job.started - SHARE_CLOCK_SKEW, job.id)
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        if found is not None:
            return self.ops.transition(job, FINISHING, delay=0, share=found.share, watch_since=clock.utcnow())
        if job.status_url or job.location_url:
            try:
                status = self.run.arm.status(started_of(job), target)
            except MccfBackupError:
                status = None
            if status is not None and status.status != LOST:
                return self._apply(job, status)
        grace = self.run.deadlines.lost
        if job.watch_since is not None and clock.utcnow() >= job.watch_since + grace:
            return self.ops.fail(
                job,
                OperationAbandoned(
                    f"ARM lost track of this backup and no backup share appeared within {grace.total_seconds():.0f} "
                    "seconds (LOST_OPERATION_GRACE_SECONDS). If one appears later, the next backup adopts it."
                ),
                ABANDONED,
            )
        return self.ops.transition(job, RUNNING, delay=max(1.0, job.retry_after))

    def finish(self, job: Job) -> Job:
        """Tag the share with what made it and lease it against deletion; then the job succeeded."""
        target = self.run.targets.resolve(job.target)
        catalog = self.run.catalog()
        try:
            backup = (
                catalog.get(target, job.share)
                if job.share
                else catalog.find_new(target, job.started - SHARE_CLOCK_SKEW, job.id)
            )
            if backup is None:
                return self._no_share_yet(job, target)
            now = clock.utcnow()
            metadata = {
                cat.META_TARGET: target.resource_id,
                cat.META_JOB: job.id,
                cat.META_TRIGGER: job.trigger,
                cat.META_STARTED: job.started.isoformat(),
                cat.META_ENDED: now.isoformat(),
                cat.META_OUTCOME: "succeeded",
            }
            if job.restore_region:
                metadata[cat.META_LOCATION] = job.restore_region
            catalog.tag(backup.share, metadata, current=backup.metadata)  # as just read: no second read
        except MccfBackupError as err:
            return self.ops.looked_and_failed(job, err)
        self._protect_quietly(job, backup.share)
        return self.ops.transition(job, SUCCEEDED, share=backup.share, last_error=None)

    def _no_share_yet(self, job: Job, target: Target) -> Job:
        since = job.watch_since or job.started
        if clock.utcnow() < since + SHARE_APPEAR_GRACE:
            return self.ops.transition(job, FINISHING, delay=SHARE_LOOK_SECONDS)
        return self.ops.fail(
            job,
            BackupFailed(
                f"ARM reported the backup done, but no new share '{target.share_prefix}<timestamp>' appeared in the "
                "storage account."
            ),
        )

    def _protect_quietly(self, job: Job, share: str) -> None:
        try:
            self.run.catalog().protect(share)
        except MccfBackupError as err:  # the backup is good; say it is unprotected rather than fail it
            log.warning("backup %s: could not lease share %s against deletion: %s", job.id, share, err.message)

    def expire(self, job: Job) -> Job:
        if job.state == STARTING:  # its sender died while asking ARM: the outcome is unknown
            return self._watch_share(job, job.retry_after)
        if job.state == RUNNING:
            looked = self.poll(job)  # one last look: it may have ended
            if looked.done or looked.state != RUNNING:
                return looked
            return self.ops.fail(
                looked,
                OperationTimedOut(
                    f"The backup did not finish within {self.run.settings.operation_timeout_minutes} minutes "
                    "(BACKUP_OPERATION_TIMEOUT_MINUTES); it may still be running. If its share appears later, the "
                    "next backup adopts it."
                ),
                ABANDONED,
            )
        if job.state == FINISHING:
            return self.ops.fail(
                job,
                errors.from_code(
                    (job.last_error or "").split(":", 1)[0] or BackupFailed.code,
                    f"The backup ended, but its share could not be tagged in time ({job.last_error or 'no share'}). "
                    "The next backup adopts the share.",
                ),
            )
        return self.ops.fail(
            job, OperationAbandoned("The backup was recorded but never sent to ARM in time."), ABANDONED
        )

    def ended(self, job: Job) -> None:
        pass

    # --- adoption ---
    def adopt(self, target: Target, unclaimed: dict[str, list] | None = None) -> list[Job]:
        """Claim the target's recent backup shares no job has tagged: each gets a succeeded job (trigger
        ``reconcile``). Only under the target's lease, so no job of ours is about to claim them; only
        shares still restorable (under 90 days), the ones a lost job or a manual backup just made: an
        old untagged share is someone else's business, and retention never touches it."""
        catalog = self.run.catalog()
        listed = unclaimed.get(target.name.lower(), []) if unclaimed is not None else None
        backups = catalog.backups_in(target, listed) if listed is not None else catalog.backups(target)
        adopted = []
        now = clock.utcnow()
        for backup in backups:
            if backup.metadata.get(cat.META_JOB) or not backup.restorable(now):
                continue
            job = self._adopt_one(target, backup)
            if job is not None:
                adopted.append(job)
        return adopted

    def _adopt_one(self, target: Target, backup: Backup) -> Job | None:
        backup = self.run.catalog().get(target, backup.share)  # as it is now: a listing may be minutes old
        if backup.metadata.get(cat.META_JOB):
            return None  # its job tagged it since the listing
        job = Job(new_job_id(backup.created), "backup", target.resource_id, "reconcile", started=backup.created)
        job.state, job.share, job.ended = SUCCEEDED, backup.share, clock.utcnow()
        self.run.catalog().tag(
            backup.share,
            {
                cat.META_TARGET: target.resource_id,
                cat.META_JOB: job.id,
                cat.META_TRIGGER: "reconcile",
                cat.META_STARTED: backup.created.isoformat(),
                cat.META_ENDED: job.ended.isoformat(),
                cat.META_OUTCOME: "succeeded",
            },
            current=backup.metadata,
        )
        self._protect_quietly(job, backup.share)
        self.ops.record(job)
        log.warning(
            "adopted backup share %s of %s, which no job had claimed; verification will check its ledger files",
            backup.share,
            target.name,
        )
        return job

    def reconcile(self, target: Target) -> list[Job]:
        """Move on the target's stuck backups, then, if none runs, adopt the shares no job claims.
        Returns the backups still running."""
        running = []
        for job in self.run.jobs.running(target.resource_id, "backup"):
            job = self.ops.advance(job, job.step) if self.ops.stuck(job, clock.utcnow()) else job
            if not job.done:
                running.append(job)
        if running:
            return running
        token = new_job_id()
        if self.run.leases.acquire(target.resource_id, token, "reconcile") is not None:
            return self.run.jobs.running(target.resource_id, "backup")
        try:
            self.adopt(target)
        finally:
            self.run.leases.release(target.resource_id, token)
        return []
