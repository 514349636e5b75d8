"""The two Storage queues of the Functions storage account, and the messages on them.

- The targets queue (``BACKUP_QUEUE_NAME``, scale-out mode ``BACKUP_FANOUT=queue``): one message per
  target from the scheduled timer; the ``backup_target`` queue function starts that target's backup.
- The operations queue (``OPERATIONS_QUEUE_NAME``): one message per step of a running job, sent with
  a visibility delay taken from ARM's Retry-After. The ``advance_operation`` queue function takes the
  next step and sends the next message, so the Functions host spreads the following of every
  operation over its instances, and no invocation waits for one.

Messages are base64 text, the encoding the Functions queue trigger expects by default. A message a
function keeps failing on is retried by the host up to ``maxDequeueCount`` (host.json) and then moved
to ``<queue>-poison``; the job history holds the reason, and the sweeper recovers a lost step.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from .errors import AzureRequestFailed, InvalidRequest, JobStoreUnavailable
from .inputs import JOB_ID
from .redaction import redact
from .settings import JobStoreLocation

MESSAGE_VERSION = 1
MAX_MESSAGE_BYTES = 4096
MAX_DELAY_SECONDS = 7 * 24 * 3600 - 1  # the queue service's limit on a message's visibility delay
MAX_STEP = 10**6
TRIGGERS = ("queue", "timer")  # what a targets-queue message may say started it


def _parse(body: str) -> dict:
    """A message's JSON object. Errors describe the message, never quote it: its text is untrusted."""
    if len(body) > MAX_MESSAGE_BYTES:
        raise InvalidRequest(f"The queue message is {len(body)} bytes; a message of this app is far smaller.")
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest("The queue message is not JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The queue message is not a JSON object.")
    return data


@dataclass(frozen=True)
class TargetMessage:
    target: str  # resource ID
    run: str  # the scheduled run that enqueued it
    trigger: str = "queue"

    def to_json(self) -> str:
        return json.dumps({"v": MESSAGE_VERSION, "target": self.target, "run": self.run, "trigger": self.trigger})

    @classmethod
    def parse(cls, body: str) -> "TargetMessage":
        """A message as enqueued by ``enqueue``; anything else is refused with what was wrong."""
        data = _parse(body)
        if not isinstance(data.get("target"), str) or not data["target"]:
            raise InvalidRequest("The queue message names no target.")
        trigger = data.get("trigger") if data.get("trigger") in TRIGGERS else "queue"  # never what a message says
        return cls(data["target"], str(data.get("run") or "")[:64], trigger)


@dataclass(frozen=True)
class StepMessage:
    """Advance job ``job`` if it is still at step ``step`` (a stale or repeated message does nothing)."""

    job: str
    step: int

    def to_json(self) -> str:
        return json.dumps({"v": MESSAGE_VERSION, "job": self.job, "step": self.step})

    @classmethod
    def parse(cls, body: str) -> "StepMessage":
        data = _parse(body)
        job, step = data.get("job"), data.get("step")
        if not isinstance(job, str) or not JOB_ID.fullmatch(job):
            raise InvalidRequest("The queue message names no job id (21 digits and hex digits).")
        if not isinstance(step, int) or isinstance(step, bool) or not 0 <= step <= MAX_STEP:
            raise InvalidRequest(f"The queue message's step must be a whole number from 0 to {MAX_STEP}.")
        return cls(job, step)


def queue_client(location: JobStoreLocation, queue_name: str, credential: TokenCredential | None) -> QueueClient:
    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    if location.connection_string:
        return QueueClient.from_connection_string(location.connection_string, queue_name, **policies)
    if not location.queue_endpoint:
        raise JobStoreUnavailable(
            "The operations and targets queues live in the Functions storage account's queue service: set "
            "AzureWebJobsStorage, or AzureWebJobsStorage__accountName for an identity-based connection."
        )
    return QueueClient(location.queue_endpoint, queue_name, credential=credential, **policies)


def _create(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        pass


PROBE_JOB = "0" * 21  # a job id no job has (ids start with a 13-digit time)


def probe(client: QueueClient) -> None:
    """Create the queue if missing, then send and delete one message: the preflight's proof that the
    app may write to it. Should the delete fail, the consumer drops a step for a job that does not exist."""
    try:
        _create(client)
        sent = client.send_message(StepMessage(PROBE_JOB, 0).to_json(), visibility_timeout=60)
        client.delete_message(sent)
    except AzureError as exc:
        raise AzureRequestFailed(
            f"Could not write to queue '{client.queue_name}': {redact(str(exc).splitlines()[0])}."
        ) from exc


def send(client: QueueClient, message: StepMessage, delay_seconds: float) -> None:
    """Send a step message that becomes visible after ``delay_seconds`` (whole seconds, rounded up)."""
    delay = min(MAX_DELAY_SECONDS, max(0, math.ceil(delay_seconds)))
    try:
        try:
            client.send_message(message.to_json(), visibility_timeout=delay)
        except AzureError as exc:
            if getattr(exc, "error_code", None) != "QueueNotFound":
                raise
            _create(client)
            client.send_message(message.to_json(), visibility_timeout=delay)
    except AzureError as exc:
        raise AzureRequestFailed(
            f"Could not queue the next step on '{client.queue_name}': {redact(str(exc).splitlines()[0])}. "
            "The sweeper takes it up."
        ) from exc


def enqueue(client: QueueClient, messages: list[TargetMessage]) -> dict[str, str | None]:
    """Send one message per target; returns target -> None (sent) or the reason it was not."""
    try:
        _create(client)
    except AzureError as exc:
        reason = f"The queue '{client.queue_name}' could not be created: {redact(str(exc).splitlines()[0])}"
        return {message.target: reason for message in messages}
    outcome: dict[str, str | None] = {}
    for message in messages:
        try:
            client.send_message(message.to_json())
            outcome[message.target] = None
        except AzureError as exc:
            outcome[message.target] = f"Could not enqueue: {redact(str(exc).splitlines()[0])}"
    return outcome
