"""The operation core: record a job, move it one step, end it; the operations queue and the sweeper.

A step is short: one ARM read (or the one ARM request that starts an operation), one transition,
then the next step is queued with a visibility delay taken from ARM's Retry-After. Whoever holds a
message, polls over HTTP, or sweeps may take a step; the transition's ETag makes sure only one of
them moves the job, and a message naming an older step than the job's is dropped, so a message
delivered twice or a poll racing the queue changes nothing. A job whose message was lost (its
instance died between a transition and the send) is found by the sweeper once it is overdue; a job
past its state's deadline is ended by whoever finds it. What a step does per kind of job lives with
that kind (backup.py, restore.py); this module knows only the model.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from dataclasses import dataclass
from typing import Callable, Protocol

from . import clock, events, lifecycle, logs, work_queue
from .errors import MccfBackupError, OperationAbandoned, OperationInProgress, TargetNotAllowed
from .jobs import Job, StaleJob, operation_not_found
from .leases import Lease
from .lifecycle import ACCEPTED, FINISHING, RUNNING, STARTING
from .redaction import redact
from .run import Run, ThreadSetup, for_each

log = logs.logger("mccf_backup")
LEASED_KINDS = ("backup", "restore")  # the kinds that hold their target's lease while they run
SWEEP_GRACE = dt.timedelta(minutes=2)  # overdue by this much, a job's next message is presumed lost
MAX_CHAINED_STEPS = 4  # steps due at once (finishing right after ARM ended) run in the same invocation
MAX_BACKOFF_SECONDS = 300
HOLDER_RECORD_WAIT_SECONDS = 3.0  # a lease's job is recorded milliseconds after the lease is taken


class Steps(Protocol):
    """What one kind of job does at each state; each method makes at most one transition's worth of calls."""

    def send(self, job: Job) -> Job: ...  # accepted: send the ARM request

    def poll(self, job: Job) -> Job: ...  # running: look at the operation once

    def finish(self, job: Job) -> Job: ...  # finishing: the work after ARM's end

    def expire(self, job: Job) -> Job: ...  # past its state's deadline: end it, or move it on

    def ended(self, job: Job) -> None: ...  # after the job's final transition (e.g. end what it started)


@dataclass
class SweepResult:
    looked_at: int = 0
    advanced: int = 0
    ended: int = 0


class Operations:
    def __init__(self, run: Run) -> None:
        self.run = run
        self._steps: dict[str, Steps] = {}

    def register(self, kind: str, steps: Steps) -> None:
        self._steps[kind] = steps

    # --- recording and transitions ---
    def record(self, job: Job, deadline: dt.datetime | None = None) -> Job:
        """Write a new job. A non-final one gets its state's deadline; a final one is history."""
        now = clock.utcnow()
        if job.done:
            job.ended = job.ended or now
            job.deadline = job.next_check = None
        else:
            job.deadline = deadline or self.run.deadlines.for_state(job.state, job.started, now)
            job.next_check = job.next_check or now
        self.run.jobs.create(job)
        if job.kind in LEASED_KINDS and not job.done:
            events.emit(f"{job.kind}.attempt", target=job.target, trigger=job.trigger, job=job.id)
        if job.done:
            self._outcome_event(job)
        return job

    def transition(self, job: Job, to: str, *, delay: float | None = None, **changes) -> Job:
        """Move ``job`` to ``to`` (or record a poll, to the same state): one ETag-conditional write.

        Raises StaleJob when another instance moved the job first; nothing is written then.
        """
        lifecycle.check(job.state, to)
        now = clock.utcnow()
        moved = dataclasses.replace(job, **changes, state=to, step=job.step + 1)
        moved.etag = job.etag
        if lifecycle.is_final(to):
            moved.ended, moved.deadline, moved.next_check = now, None, None
        else:
            entering = to != job.state or moved.deadline is None  # (a job recorded before deadlines existed)
            if entering and "deadline" not in changes:
                moved.deadline = self.run.deadlines.for_state(to, job.started, now)
            if to != job.state and "failures" not in changes:
                moved.failures = 0  # failed looks count per state
            wait = moved.retry_after if delay is None else delay
            moved.next_check = now + dt.timedelta(seconds=max(0.0, wait))
        self.run.jobs.replace(moved)
        if moved.done:
            self._ended(moved)
        return moved

    def fail(self, job: Job, error: MccfBackupError, state: str = lifecycle.FAILED) -> Job:
        return self.transition(job, state, error_code=error.code, error_message=redact(error.message))

    def looked_and_failed(self, job: Job, error: MccfBackupError) -> Job:
        """A look that failed (a status URL answering 500): the job goes on, a little later each time;
        its deadline ends it if the looks never succeed."""
        failures = job.failures + 1
        wait = min(MAX_BACKOFF_SECONDS, 5 * 2 ** min(failures, 10))
        log.warning("%s %s: %s (look %d failed; next in %d s)", job.kind, job.id, error.code, failures, wait)
        return self.transition(
            job, job.state, delay=wait, failures=failures, last_error=redact(f"{error.code}: {error.message}")
        )

    def _ended(self, job: Job) -> None:
        log.info("%s %s of %s ended %s", job.kind, job.id, job.target, job.state)
        steps = self._steps.get(job.kind)
        if steps is not None:
            try:
                steps.ended(job)
            except (MccfBackupError, StaleJob) as err:  # what it tidies, the sweeper ends at its deadline
                log.warning("%s %s ended; tidying after it failed: %s", job.kind, job.id, err)
        if job.kind in LEASED_KINDS:
            try:
                self.run.leases.release(job.target, job.id)
            except MccfBackupError as err:  # an ended job's lease is free to take anyway
                log.warning("could not release the lease of %s: %s", job.target, err.code)
        self._outcome_event(job)

    @staticmethod
    def _outcome_event(job: Job) -> None:
        if job.kind not in LEASED_KINDS:
            return
        if job.state == lifecycle.SUCCEEDED:
            events.emit(
                f"{job.kind}.success",
                target=job.target,
                trigger=job.trigger,
                job=job.id,
                share=job.share,
                durationSeconds=job.duration_seconds,
                lastSuccess=job.ended,
            )
        else:
            events.emit(
                f"{job.kind}.failure",
                logging.WARNING,
                target=job.target,
                trigger=job.trigger,
                job=job.id,
                durationSeconds=job.duration_seconds,
                code=job.error_code,
            )

    # --- stepping ---
    def advance(self, job: Job | str, step: int | None = None, *, when_due: bool = False) -> Job:
        """Take the job's next step if it is still at ``step`` (and, with ``when_due``, if it is due),
        then queue the step after. Steps due at once run here too, a few at most."""
        current = self.run.jobs.get(job) if isinstance(job, str) else job
        for _ in range(MAX_CHAINED_STEPS):
            if current.done or (step is not None and current.step != step):
                return current  # ended, or a stale or repeated message: someone else moved it on
            now = clock.utcnow()
            expired = current.deadline is not None and now >= current.deadline
            if when_due and not expired and current.next_check is not None and now < current.next_check:
                return current
            try:
                moved = self._step(current, now, expired)
            except StaleJob:
                return self.run.jobs.get(current.id)
            if moved.step == current.step or moved.done:
                return moved  # nothing written (its sender is at work), or ended
            current, step, when_due = moved, moved.step, False
            if moved.next_check is not None and moved.next_check > clock.utcnow():
                break
        self.schedule(current)
        return current

    def _step(self, job: Job, now: dt.datetime, expired: bool) -> Job:
        steps = self._steps.get(job.kind)
        if steps is None:  # a record another job moves (a replace-restore's delete), or a queued verification
            if expired:
                return self.fail(
                    job, OperationAbandoned(f"The {job.kind} did not end by its deadline."), lifecycle.ABANDONED
                )
            return job
        if self.run.targets.find(job.target) is None:  # MCCF_TARGETS changed: the allowlist gates every call
            return self.fail(
                job,
                TargetNotAllowed(
                    "The target was removed from MCCF_TARGETS while this operation ran; it is no longer followed. "
                    "Check the instance in Azure.",
                    target=job.target,
                ),
                lifecycle.ABANDONED,
            )
        if expired:
            return steps.expire(job)
        if job.state == ACCEPTED:
            return steps.send(job)
        if job.state == RUNNING:
            return steps.poll(job)
        if job.state == FINISHING:
            return steps.finish(job)
        return job  # STARTING: its sender is sending the ARM request; the deadline covers a sender that died

    def schedule(self, job: Job) -> None:
        """Queue the job's next step, visible when it is due. A failed send is logged, not raised: the
        transition is recorded, and the sweeper takes up a job whose message never came."""
        if job.done or job.state == STARTING or job.kind not in self._steps:
            return
        delay = max(0.0, ((job.next_check or clock.utcnow()) - clock.utcnow()).total_seconds())
        try:
            work_queue.send(self.run.operations_queue(), work_queue.StepMessage(job.id, job.step), delay)
        except MccfBackupError as err:
            log.warning(
                "%s %s: the next step was not queued (%s: %s); the sweeper takes it up",
                job.kind,
                job.id,
                err.code,
                err.message,
            )

    def advance_from_queue(self, body: str) -> Job | None:
        """The operations queue's message: advance the job it names if it is still at that step."""
        message = work_queue.StepMessage.parse(body)
        job = self.run.jobs.find(message.job)
        if job is None:
            log.warning("operations message for unknown job %s dropped", message.job[:64])
            return None
        return self.advance(job, message.step)

    def poll(self, job_id: str, visible: Callable[[Job], bool] | None = None) -> Job:
        """A caller's look (HTTP poll, CLI): the job as it is, moved on first if its next step is due.
        A job the caller may not see (``visible``) is not found, and not moved on by that caller."""
        job = self.run.jobs.get(job_id)
        if visible is not None and not visible(job):
            raise operation_not_found()
        return self.advance(job, when_due=True)

    def stuck(self, job: Job, now: dt.datetime) -> bool:
        """Past its deadline, or overdue long enough that its next message must have been lost (only a
        kind with steps has messages: a queued verification waits for its timer)."""
        if job.deadline is not None and job.deadline <= now:
            return True
        if job.state == STARTING or job.kind not in self._steps:
            return False
        return job.next_check is None or job.next_check + SWEEP_GRACE <= now

    # --- single flight ---
    def take_lease(self, target: str, job_id: str, kind: str) -> Lease | None:
        """The target's lease for a new job: None when taken, else the lease of the job holding it.
        A holder that is stuck is moved on first (whoever finds a stuck job ends it)."""
        holder = self.run.leases.acquire(target, job_id, kind)
        if holder is not None and self._moved_on(holder):
            return self.run.leases.acquire(target, job_id, kind)
        return holder

    def holder(self, target: str) -> Lease | None:
        """The lease of the job running on the target, if one is (a stuck holder is moved on first)."""
        holder = self.run.leases.holder(target)
        if holder is not None and self._moved_on(holder):
            return self.run.leases.holder(target)
        return holder

    def _moved_on(self, lease: Lease) -> bool:
        """Advance the lease's job if it is stuck; True when that ended it."""
        job = self.run.jobs.find(lease.job)
        if job is None or job.done or not self.stuck(job, clock.utcnow()):
            return False
        try:
            return self.advance(job, job.step).done
        except MccfBackupError as err:
            log.warning("could not move on stuck %s %s: %s", job.kind, job.id, err.code)
            return False

    def holder_job(self, lease: Lease) -> Job:
        """The job holding a lease, once its request has recorded it (milliseconds after the lease)."""
        deadline = time.monotonic() + HOLDER_RECORD_WAIT_SECONDS
        while True:
            job = self.run.jobs.find(lease.job)
            if job is not None:
                return job
            if time.monotonic() >= deadline:
                raise OperationInProgress(
                    f"Another request is starting a {lease.kind} of '{lease.target.rsplit('/', 1)[-1]}' "
                    f"(operation {lease.job}); retry in a moment.",
                    target=lease.target,
                )
            time.sleep(0.1)

    def sweep(self, setup: ThreadSetup | None = None) -> SweepResult:
        """Advance every job that is overdue (its message was lost) or past its deadline."""
        result = SweepResult()
        now = clock.utcnow()
        jobs = self.run.jobs.running()
        result.looked_at = len(jobs)
        stuck = [job for job in jobs if self.stuck(job, now)]

        def one(job: Job) -> Job | None:
            try:
                return self.advance(job, job.step)
            except MccfBackupError as err:
                log.warning("sweep: %s %s could not be advanced: %s", job.kind, job.id, err.code)
                return None

        for moved in for_each(one, stuck, self.run.settings.concurrency, setup, "mccf-backup-sweep"):
            if moved is not None:
                result.advanced += 1
                result.ended += moved.done
        if stuck:
            log.info("sweep: %d of %d running jobs were overdue; %d ended", len(stuck), len(jobs), result.ended)
        return result
