"""The scheduled backup of every target (schedule from the BACKUP_SCHEDULE app setting)."""

from __future__ import annotations

import logging

import azure.functions as func

from mccf_backup.service import BackupService

bp = func.Blueprint()
log = logging.getLogger("mccf_backup.timer")


class ScheduledBackupFailed(Exception):
    """Raised after every target was tried, so Azure Monitor records the invocation as failed."""


@bp.timer_trigger(schedule="%BACKUP_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True)
def scheduled_backup(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("The scheduled backup is running late (past due); running it now.")
    summary = BackupService.from_environment().run_scheduled("timer")
    log.info(summary.text())
    if summary.failed:
        failed = ", ".join(result.target.rsplit("/", 1)[-1] for result in summary.failed)
        raise ScheduledBackupFailed(f"{len(summary.failed)} of {len(summary.results)} targets failed: {failed}")
