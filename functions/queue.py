"""Scale-out mode (BACKUP_FANOUT=queue): back up the one target a queue message names.

The scheduled timer enqueues one message per target; the Functions platform hands messages to as
many instances as the queue needs. A failure raises, so the host retries the message and, after
host.json's maxDequeueCount, moves it to the poison queue; the job history holds the reason.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import azure.functions as func

from .engine import service_from_environment

bp = func.Blueprint()
log = logging.getLogger("mccf_backup.queue")
HOST_DEFAULT_MAX_DEQUEUE_COUNT = 5  # the Functions host's default when host.json does not set it


def max_dequeue_count(host_json: Path = Path(__file__).resolve().parents[1] / "host.json") -> int:
    """host.json's extensions.queues.maxDequeueCount: the attempt after which the host poisons a message."""
    try:
        queues = json.loads(host_json.read_text()).get("extensions", {}).get("queues", {})
        return int(queues.get("maxDequeueCount", HOST_DEFAULT_MAX_DEQUEUE_COUNT))
    except (OSError, ValueError):
        return HOST_DEFAULT_MAX_DEQUEUE_COUNT


class QueuedBackupFailed(Exception):
    """Raised so the host retries the message (and poisons it after the last attempt)."""


@bp.queue_trigger(arg_name="message", queue_name="%BACKUP_QUEUE_NAME%", connection="AzureWebJobsStorage")
def backup_target(message: func.QueueMessage) -> None:
    attempt = message.dequeue_count or 1
    job = service_from_environment().backup_from_queue(
        message.get_body().decode("utf-8", "replace"), attempt, max_dequeue_count()
    )
    log.info("queued backup of %s: %s (attempt %d)", job.target, job.status, attempt)
    if job.status != "succeeded":
        raise QueuedBackupFailed(f"backup of {job.target} failed: {job.error_code}: {job.error_message}")
