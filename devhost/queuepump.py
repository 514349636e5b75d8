"""Run the app's queue-triggered functions the way the Functions host does, where no host runs.

For each function with a ``queueTrigger`` in ``app.get_functions()``: resolve its queue name
(``%SETTING%`` from the environment) and connection, receive messages with a visibility timeout,
call the function with an ``azure.functions.QueueMessage`` carrying the dequeue count (in an
invocation context, as the worker does), delete the message when the function returns, and when it
raises on the last attempt (host.json ``maxDequeueCount``) move it to ``<queue>-poison``, as the
host documents. Otherwise a failed message becomes visible again after the timeout and is retried.
Up to ``concurrency`` messages run at once, like several instances. Each invocation's duration is
kept: what Flex Consumption bills is the sum of them.

Use ``drain()`` to run until every queue is empty, or ``with QueuePump(app):`` to run in the
background (the dev server and the demo do, as ``func start`` would).
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from functions.queue import max_dequeue_count
from devhost.devserver import functions_of
from devhost.invocation import invoke

log = logging.getLogger("queuepump")


@dataclass
class PumpStats:
    succeeded: int = 0
    failed_attempts: int = 0
    poisoned: int = 0
    durations: dict[str, list[float]] = field(default_factory=dict)  # function name -> invocation seconds

    @property
    def busy_seconds(self) -> float:
        return sum(sum(values) for values in self.durations.values())


def _resolve(name: str) -> str:
    return re.sub(r"%(\w+)%", lambda m: os.environ[m.group(1)], name)


class QueuePump:
    def __init__(
        self,
        app: func.FunctionApp,
        visibility_timeout: int = 30,
        concurrency: int = 16,
        idle_seconds: float = 0.2,
        only: tuple[str, ...] | None = None,
    ) -> None:
        self.stats = PumpStats()
        self._lock = threading.Lock()
        self._visibility_timeout = visibility_timeout
        self._idle_seconds = idle_seconds
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="queuepump")
        self._max_dequeue = max_dequeue_count()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._queues = []
        policies = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
        for function in functions_of(app):
            trigger = function.get_trigger().get_dict_repr()
            if trigger.get("type") != "queueTrigger" or (only and function.get_function_name() not in only):
                continue
            queue_name = _resolve(trigger["queueName"])
            connection = os.environ[trigger.get("connection") or "AzureWebJobsStorage"]
            client = QueueClient.from_connection_string(connection, queue_name, **policies)
            poison = QueueClient.from_connection_string(connection, f"{queue_name}-poison", **policies)
            self._queues.append((function, client, poison))

    # --- running ---
    def drain(self, timeout: float | None = None) -> PumpStats:
        """Process until every queue is empty, delayed and failed messages included."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._pump_once() or self._busy() or self._any_waiting():
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the queues were not empty after {timeout} s")
            time.sleep(self._idle_seconds)
        return self.stats

    def __enter__(self) -> "QueuePump":
        self._thread = threading.Thread(target=self._forever, name="queuepump", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _forever(self) -> None:
        while not self._stop.is_set():
            try:
                worked = self._pump_once()
            except AzureError as exc:  # Azurite stopping under us at the end of a test
                log.debug("queue pump: %s", exc)
                worked = False
            if not worked:
                self._stop.wait(self._idle_seconds)

    # --- one round ---
    def _busy(self) -> bool:
        with self._lock:
            return self._in_flight > 0

    def _any_waiting(self) -> bool:
        for _, client, _ in self._queues:
            try:
                if client.get_queue_properties().approximate_message_count:
                    return True
            except AzureError:  # a queue that does not exist yet holds nothing
                continue
        return False

    def _pump_once(self) -> bool:
        worked = False
        for function, client, poison in self._queues:
            if not self._slots.acquire(timeout=self._idle_seconds):
                return True  # every slot busy for a while: the round's work is in flight
            free = 1
            while free < 32 and self._slots.acquire(blocking=False):
                free += 1
            try:
                messages = list(
                    client.receive_messages(
                        messages_per_page=free, max_messages=free, visibility_timeout=self._visibility_timeout
                    )
                )
            except AzureError:  # not created yet
                messages = []
            for _ in range(free - len(messages)):
                self._slots.release()
            for message in messages:
                with self._lock:
                    self._in_flight += 1
                self._pool.submit(self._run, function, client, poison, message)
            worked = worked or bool(messages)
        return worked

    def _run(self, function, client: QueueClient, poison: QueueClient, message) -> None:
        try:
            self._invoke(function, client, poison, message)
        finally:
            with self._lock:
                self._in_flight -= 1
            self._slots.release()

    def _invoke(self, function, client: QueueClient, poison: QueueClient, message) -> None:
        body = message.content
        queue_message = QueueMessage(
            id=message.id,
            body=body.encode() if isinstance(body, str) else body,
            dequeue_count=message.dequeue_count,
            insertion_time=message.inserted_on,
            expiration_time=message.expires_on,
            pop_receipt=message.pop_receipt,
        )
        name = function.get_trigger().get_dict_repr().get("name", "message")
        started = time.perf_counter()
        try:
            invoke(function, **{name: queue_message})
        except Exception as exc:  # noqa: BLE001 - what the host does with a failed invocation
            self._record(function, started, failed=True)
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
        self._record(function, started, failed=False)
        client.delete_message(message)

    def _record(self, function, started: float, failed: bool) -> None:
        seconds = time.perf_counter() - started
        with self._lock:
            self.stats.durations.setdefault(function.get_function_name(), []).append(seconds)
            if failed:
                self.stats.failed_attempts += 1
            else:
                self.stats.succeeded += 1
