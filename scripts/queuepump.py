"""Run the app's queue-triggered functions the way the Functions host does, where no host runs.

For each function with a ``queueTrigger`` in ``app.get_functions()``: resolve its queue name
(``%SETTING%`` from the environment) and connection, receive messages with a visibility timeout,
call the function with an ``azure.functions.QueueMessage`` carrying the dequeue count, delete the
message when the function returns, and when it raises on the last attempt
(host.json ``maxDequeueCount``) move it to ``<queue>-poison``, as the host documents. Otherwise a
failed message becomes visible again after the timeout and is retried.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass

import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from functions.queue import max_dequeue_count
from scripts.devserver import functions_of

log = logging.getLogger("queuepump")


@dataclass
class PumpStats:
    succeeded: int = 0
    failed_attempts: int = 0
    poisoned: int = 0


def _resolve(name: str) -> str:
    return re.sub(r"%(\w+)%", lambda m: os.environ[m.group(1)], name)


class QueuePump:
    def __init__(self, app: func.FunctionApp, visibility_timeout: int = 30, batch_size: int = 4) -> None:
        self.stats = PumpStats()
        self._lock = threading.Lock()
        self._visibility_timeout = visibility_timeout
        self._batch_size = batch_size
        self._max_dequeue = max_dequeue_count()
        self._queues = []
        for function in functions_of(app):
            trigger = function.get_trigger().get_dict_repr()
            if trigger.get("type") != "queueTrigger":
                continue
            queue_name = _resolve(trigger["queueName"])
            connection = os.environ[trigger.get("connection") or "AzureWebJobsStorage"]
            policies = {
                "message_encode_policy": TextBase64EncodePolicy(),
                "message_decode_policy": TextBase64DecodePolicy(),
            }
            client = QueueClient.from_connection_string(connection, queue_name, **policies)
            poison = QueueClient.from_connection_string(connection, f"{queue_name}-poison", **policies)
            self._queues.append((function, client, poison))

    def drain(self) -> PumpStats:
        """Process until every queue is empty, failed messages included (they come back after the timeout)."""
        while self._pump_once() or self._any_invisible():
            threading.Event().wait(0.2)
        return self.stats

    def _any_invisible(self) -> bool:
        for _, client, _ in self._queues:
            try:
                if client.get_queue_properties().approximate_message_count:
                    return True
            except Exception:  # noqa: BLE001 - a queue that does not exist yet holds nothing
                continue
        return False

    def _pump_once(self) -> bool:
        worked = False
        for function, client, poison in self._queues:
            try:
                messages = list(
                    client.receive_messages(
                        messages_per_page=self._batch_size,
                        max_messages=self._batch_size,
                        visibility_timeout=self._visibility_timeout,
                    )
                )
            except Exception:  # noqa: BLE001 - not created yet
                continue
            threads = [threading.Thread(target=self._run, args=(function, client, poison, m)) for m in messages]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            worked = worked or bool(messages)
        return worked

    def _run(self, function, client: QueueClient, poison: QueueClient, message) -> None:
        body = message.content
        queue_message = QueueMessage(
            id=message.id,
            body=body.encode() if isinstance(body, str) else body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            pop_receipt=message.pop_receipt,
        )
        try:
            function.get_user_function()(queue_message)
        except Exception as exc:  # noqa: BLE001 - what the host does with a failed invocation
            with self._lock:
                self.stats.failed_attempts += 1
            if message.dequeue_count >= self._max_dequeue:
                log.warning(
                    "message %s failed %d times, moving it to the poison queue: %s",
                    message.id,
                    message.dequeue_count,
                    exc,
                )
                try:
                    poison.create_queue()
                except ResourceExistsError:
                    pass
                poison.send_message(body)
                client.delete_message(message)
                with self._lock:
                    self.stats.poisoned += 1
            return
        client.delete_message(message)
        with self._lock:
            self.stats.succeeded += 1
