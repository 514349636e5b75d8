"""The scheduled backup of every target: start each and return, inline or through the targets queue.

A scheduled run starts every target's backup (one ARM request each, ``BACKUP_CONCURRENCY`` at a
time) and returns; the operations queue follows the operations. Or, with ``BACKUP_FANOUT=queue``,
it only enqueues one message per target, and the ``backup_target`` queue function starts each. A
target whose backup is still running from before is joined, not started twice. One target's
failure never stops the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import catalog as cat
from . import logs, work_queue
from .backup import Backups
from .errors import AzureRequestFailed, MccfBackupError
from .jobs import Job, StaleJob, new_job_id
from .lifecycle import FAILED
from .operations import Operations
from .redaction import redact
from .run import Run, ThreadSetup, for_each
from .targets import Target

log = logs.logger("mccf_backup")


@dataclass
class TargetResult:
    target: str
    job: Job | None
    joined: bool = False  # an earlier backup of the target was still running: this run follows it
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.job is not None and self.job.status != "failed"


@dataclass
class RunSummary:
    results: list[TargetResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TargetResult]:
        return [r for r in self.results if not r.ok]

    def text(self) -> str:
        started = sum(1 for r in self.results if r.ok and not r.joined)
        joined = sum(1 for r in self.results if r.ok and r.joined)
        lines = [
            f"Scheduled backup: {started} of {len(self.results)} targets started"
            + (f", {joined} still running from before" if joined else "")
            + (f", {len(self.failed)} failed to start" if self.failed else "")
            + "."
        ]
        for result in self.results:
            app = result.target.rsplit("/", 1)[-1]
            if result.ok:
                lines.append(f"  {'joined' if result.joined else 'started'} {app}: operation {result.job.id}")
            else:
                lines.append(f"  FAILED  {app}: {result.error_code}: {result.error_message}")
        return "\n".join(lines)


class Scheduler:
    def __init__(self, run: Run, operations: Operations, backups: Backups) -> None:
        self.run = run
        self.ops = operations
        self.backups = backups

    def run_scheduled(self, trigger: str = "timer", setup: ThreadSetup | None = None) -> RunSummary:
        """Start every target's backup, several at once; returns once each was started (or refused)."""
        summary = RunSummary()
        try:
            self.run.storage()  # one Key Vault read for the whole run, before the fan-out
        except MccfBackupError as err:
            for target in self.run.targets:
                job = self._record_failure(target.resource_id, trigger, err.code, err.message)
                summary.results.append(TargetResult(target.resource_id, job, False, err.code, err.message))
            return summary
        self.run.prefetch_locations(setup)
        unclaimed = self._unclaimed()

        def one(target: Target) -> TargetResult:
            try:
                job, started = self.backups.start(target, trigger, unclaimed=unclaimed)
            except MccfBackupError as err:
                return TargetResult(target.resource_id, None, False, err.code, err.message)
            except Exception as exc:  # noqa: BLE001 - one target's bug must not stop the others
                log.exception("backup of %s failed unexpectedly", target.resource_id)
                return TargetResult(target.resource_id, None, False, "internal_error", redact(str(exc)))
            return TargetResult(target.resource_id, job, not started, job.error_code, job.error_message)

        summary.results.extend(
            for_each(one, list(self.run.targets), self.run.settings.concurrency, setup, "mccf-backup")
        )
        return summary

    def _unclaimed(self) -> dict[str, list] | None:
        """Every share no job has tagged, by app name, listed once for the run (None: list per target)."""
        try:
            listed = self.run.catalog().list_all()
        except MccfBackupError as err:
            log.warning("could not list the backup shares for the run (%s); listing them per target", err.code)
            return None
        unclaimed: dict[str, list] = {}
        for item in listed:
            parsed = cat.parse_backup_name(item.name)
            if parsed is not None and not (item.metadata or {}).get(cat.META_JOB):
                unclaimed.setdefault(parsed[0], []).append(item)
        return unclaimed

    def _record_failure(self, target: str, trigger: str, code: str, message: str) -> Job | None:
        job = Job(new_job_id(), "backup", target, trigger, state=FAILED, error_code=code, error_message=message)
        try:
            return self.ops.record(job)
        except MccfBackupError:
            log.warning("could not record the failed backup of %s", target)
            return None

    # --- scale-out through the targets queue (BACKUP_FANOUT=queue) ---
    def enqueue_scheduled(self) -> dict[str, str | None]:
        """One queue message per target; returns target -> None (enqueued) or why not (also a failed job)."""
        run_id = new_job_id()
        client = work_queue.queue_client(self.run.settings.jobs, self.run.settings.queue_name, self.run.credential)
        messages = [work_queue.TargetMessage(t.resource_id, run_id) for t in self.run.targets]
        outcome = work_queue.enqueue(client, messages)
        for target, reason in outcome.items():
            if reason is not None:
                self._record_failure(target, "timer", AzureRequestFailed.code, reason)
        return outcome

    def start_from_queue(self, body: str, dequeue_count: int, max_dequeue_count: int) -> Job:
        """Start the backup of one target message's target. Raises (so the host retries, then moves the
        message to the poison queue) when it cannot; the last attempt's job says where it went."""
        last = dequeue_count >= max_dequeue_count
        poison = f"attempt {dequeue_count} of {max_dequeue_count}; the message goes to '{self.run.settings.queue_name}-poison'"
        try:
            message = work_queue.TargetMessage.parse(body)
            target = self.run.targets.resolve(message.target)
            job, _ = self.backups.start(target, message.trigger)
        except MccfBackupError as err:
            if last:
                self._note_poison(err, poison)
            raise
        return job

    def _note_poison(self, err: MccfBackupError, poison: str) -> None:
        """The last attempt's failed job says the message went to the poison queue. A message that names
        no configured target records no job (nor event): its text is the sender's, not a target's."""
        failed: Job | None = getattr(err, "job", None)
        target = self.run.targets.find(err.target or "")
        try:
            if failed is not None:
                failed.error_message = f"{failed.error_message} ({poison})"
                self.run.jobs.replace(failed)
            elif target is not None:
                self._record_failure(target.resource_id, "queue", err.code, f"{err.message} ({poison})")
            else:
                log.warning("a targets-queue message was refused (%s) and goes to the poison queue", err.code)
        except (MccfBackupError, StaleJob):  # the message goes to poison whatever happens here
            log.warning("could not note the poisoned message (%s)", err.code)
