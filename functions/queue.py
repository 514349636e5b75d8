"""The two queue functions: start a target's backup (scale-out mode), and take a job's next step.

A failure raises, so the host retries the message and, after host.json's maxDequeueCount, moves it
to the poison queue; the job history holds the reason, and the sweeper takes up a lost step.
"""

from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func

from mccf_backup import logs

from .engine import service_from_environment

bp = func.Blueprint()
log = logs.logger("mccf_backup.queue")
HOST_DEFAULT_MAX_DEQUEUE_COUNT = 5  # the Functions host's default when host.json does not set it


def max_dequeue_count(host_json: Path = Path(__file__).resolve().parents[1] / "host.json") -> int:
    """host.json's extensions.queues.maxDequeueCount: the attempt after which the host poisons a message."""
    try:
        queues = json.loads(host_json.read_text()).get("extensions", {}).get("queues", {})
        return int(queues.get("maxDequeueCount", HOST_DEFAULT_MAX_DEQUEUE_COUNT))
    except (OSError, ValueError):
        return HOST_DEFAULT_MAX_DEQUEUE_COUNT


def _body(message: func.QueueMessage) -> str:
    return message.get_body().decode("utf-8", "replace")


@bp.queue_trigger(arg_name="message", queue_name="%BACKUP_QUEUE_NAME%", connection="AzureWebJobsStorage")
def backup_target(message: func.QueueMessage) -> None:
    """Start the backup of the target the message names, and return (scale-out mode)."""
    attempt = message.dequeue_count or 1
    job = service_from_environment().start_from_queue(_body(message), attempt, max_dequeue_count())
    log.info("queued backup of %s: operation %s %s (attempt %d)", job.target, job.id, job.state, attempt)


@bp.queue_trigger(arg_name="message", queue_name="%OPERATIONS_QUEUE_NAME%", connection="AzureWebJobsStorage")
def advance_operation(message: func.QueueMessage) -> None:
    """Take the named job's next step (one ARM read, one transition) and queue the one after."""
    job = service_from_environment().advance_from_queue(_body(message))
    if job is not None:
        log.info("%s %s of %s: %s", job.kind, job.id, job.target.rsplit("/", 1)[-1], job.state)
