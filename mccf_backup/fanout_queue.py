"""Scale-out mode: one Storage queue message per target, so the Functions platform spreads the work.

The timer enqueues (``BACKUP_FANOUT=queue``) and a queue-triggered function backs up the target of
each message. The queue lives in the Functions storage account (``AzureWebJobsStorage``). Messages
are base64 text, the encoding the Functions queue trigger expects by default. A message whose
backup keeps failing is retried by the host up to ``maxDequeueCount`` (host.json) and then moved
to ``<queue>-poison``; the job history holds the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from .errors import InvalidRequest, JobStoreUnavailable
from .redaction import redact
from .settings import JobStoreLocation

MESSAGE_VERSION = 1
MAX_MESSAGE_BYTES = 4096


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
        if len(body) > MAX_MESSAGE_BYTES:
            raise InvalidRequest(f"The queue message is {len(body)} bytes; a target message is far smaller.")
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise InvalidRequest(f"The queue message is not JSON: {body[:80]!r}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("target"), str) or not data["target"]:
            raise InvalidRequest(f"The queue message names no target: {body[:120]!r}")
        return cls(data["target"], str(data.get("run") or ""), str(data.get("trigger") or "queue")[:20])


def queue_client(location: JobStoreLocation, queue_name: str, credential: TokenCredential | None) -> QueueClient:
    policies = {"message_encode_policy": TextBase64EncodePolicy(), "message_decode_policy": TextBase64DecodePolicy()}
    if location.connection_string:
        return QueueClient.from_connection_string(location.connection_string, queue_name, **policies)
    if not location.queue_endpoint:
        raise JobStoreUnavailable(
            "BACKUP_FANOUT=queue needs the Functions storage account's queue service: set AzureWebJobsStorage, "
            "or AzureWebJobsStorage__accountName for an identity-based connection."
        )
    return QueueClient(location.queue_endpoint, queue_name, credential=credential, **policies)


def enqueue(client: QueueClient, messages: list[TargetMessage]) -> dict[str, str | None]:
    """Send one message per target; returns target -> None (sent) or the reason it was not."""
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
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
