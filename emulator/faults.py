"""Faults and latency on demand, for the fault-injection and benchmark suites.

A backup tool is judged by its worst day, so the emulator can make any of
its services misbehave the way Azure does: throttle, fail, hang past a
client's timeout, drop the connection, or be down altogether. Rules are
matched per service, method and path (regex, case-insensitive) and are used
up after ``count`` matching requests.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

from werkzeug.wrappers import Request, Response

SERVICES = ("identity", "login", "arm", "keyvault", "file")
ACTIONS = ("status", "hang", "drop")
MAX_HANG_SECONDS = 300.0

ErrorFactory = Callable[[int, str, str], Response]


@dataclass
class FaultRule:
    service: str
    action: str
    status: int = 503
    retry_after: int | None = None
    seconds: float = 0.0
    count: int | None = 1
    method: str | None = None
    path: str | None = None
    code: str | None = None
    after: bool = False  # act after the service handled the request: the work is done, the answer lost
    hits: int = 0
    _pattern: re.Pattern[str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.service not in SERVICES:
            raise ValueError(f"service must be one of {SERVICES}, not {self.service!r}")
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, not {self.action!r}")
        if not 0 <= self.seconds <= MAX_HANG_SECONDS:
            raise ValueError(f"seconds must be between 0 and {MAX_HANG_SECONDS}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1 (or null for 'until cleared')")
        if self.action == "status" and not 400 <= self.status <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        self._pattern = re.compile(self.path, re.IGNORECASE) if self.path else None

    def matches(self, service: str, method: str, path: str) -> bool:
        if service != self.service:
            return False
        if self.method and self.method.upper() != method.upper():
            return False
        return self._pattern is None or bool(self._pattern.search(path))

    def describe(self) -> dict:
        return {
            "service": self.service,
            "action": self.action,
            "status": self.status,
            "retryAfter": self.retry_after,
            "seconds": self.seconds,
            "remaining": None if self.count is None else self.count - self.hits,
            "method": self.method,
            "path": self.path,
            "code": self.code,
            "after": self.after,
        }


@dataclass
class OperationFailure:
    """Makes the next ARM operation of a kind end Failed (or Canceled) with this error."""

    kind: str
    code: str
    message: str
    status: str = "Failed"


class FaultInjector:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._latency: list[tuple[str, re.Pattern[str] | None, float]] = []
        self._operation_failures: list[OperationFailure] = []
        self.requests: list[tuple[str, str, str, int]] = []  # (service, method, path, status) as answered

    # --- configuration (Python API; the control endpoint calls the same) ---
    def add(self, rule: FaultRule) -> FaultRule:
        with self._lock:
            self._rules.append(rule)
        return rule

    def fail_next(
        self,
        service: str,
        status: int,
        *,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        retry_after: int | None = None,
        code: str | None = None,
        after: bool = False,
    ) -> FaultRule:
        return self.add(
            FaultRule(
                service,
                "status",
                status=status,
                retry_after=retry_after,
                count=count,
                method=method,
                path=path,
                code=code,
                after=after,
            )
        )

    def hang_next(
        self,
        service: str,
        seconds: float,
        *,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        after: bool = False,
    ) -> FaultRule:
        return self.add(FaultRule(service, "hang", seconds=seconds, count=count, method=method, path=path, after=after))

    def drop_next(
        self,
        service: str,
        *,
        count: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        after: bool = False,
    ) -> FaultRule:
        return self.add(FaultRule(service, "drop", count=count, method=method, path=path, after=after))

    def down(self, service: str) -> FaultRule:
        """The whole service answers 503 until ``clear()``: identity or Key Vault outages."""
        return self.add(FaultRule(service, "status", status=503, count=None, code="ServiceUnavailable"))

    def set_latency(self, service: str, seconds: float, path: str | None = None) -> None:
        with self._lock:
            self._latency.append((service, re.compile(path, re.IGNORECASE) if path else None, seconds))

    def fail_next_operation(
        self,
        kind: str,
        code: str = "InternalServerError",
        message: str = "The operation failed (injected fault).",
        status: str = "Failed",
    ) -> None:
        if status not in ("Failed", "Canceled"):
            raise ValueError("status must be Failed or Canceled")
        with self._lock:
            self._operation_failures.append(OperationFailure(kind, code, message, status))

    def clear(self) -> None:
        """Remove every fault, latency and queued operation failure (the request log stays)."""
        with self._lock:
            self._rules.clear()
            self._latency.clear()
            self._operation_failures.clear()

    def describe(self) -> list[dict]:
        with self._lock:
            return [rule.describe() for rule in self._rules]

    # --- use ---
    def take_operation_failure(self, kind: str) -> OperationFailure | None:
        with self._lock:
            for failure in self._operation_failures:
                if failure.kind == kind:
                    self._operation_failures.remove(failure)
                    return failure
        return None

    def _take(self, service: str, method: str, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(service, method, path):
                    rule.hits += 1
                    if rule.count is not None and rule.hits >= rule.count:
                        self._rules.remove(rule)
                    return rule
        return None

    def _delay(self, service: str, path: str) -> float:
        with self._lock:
            return sum(
                seconds
                for rule_service, pattern, seconds in self._latency
                if rule_service == service and (pattern is None or pattern.search(path))
            )

    def wrap(self, service: str, app: Callable, error_factory: ErrorFactory) -> Callable:
        """WSGI middleware applying latency and faults before ``app`` sees the request."""

        def middleware(environ: dict, start_response: Callable) -> Iterable[bytes]:
            request = Request(environ)

            def recording_start_response(status: str, headers: list, exc_info=None):
                with self._lock:
                    self.requests.append((service, request.method, request.path, int(status.split()[0])))
                return start_response(status, headers, exc_info)

            return self._handle(service, app, error_factory, request, environ, recording_start_response)

        return middleware

    def _handle(
        self,
        service: str,
        app: Callable,
        error_factory: ErrorFactory,
        request: Request,
        environ: dict,
        start_response: Callable,
    ) -> Iterable[bytes]:
        delay = self._delay(service, request.path)
        if delay:
            time.sleep(delay)
        rule = self._take(service, request.method, request.path)
        if rule is None:
            return app(environ, start_response)
        if rule.action == "hang" and not rule.after:
            time.sleep(rule.seconds)
            return app(environ, start_response)
        if rule.action == "hang":  # handle the request now, answer it late
            body = b"".join(app(environ, start_response))
            time.sleep(rule.seconds)
            return [body]
        if rule.after:  # let the service do the work, then lose its answer
            body = app(environ, lambda status, headers, exc_info=None: (lambda data: None))
            for _ in body:
                pass
            getattr(body, "close", lambda: None)()
        if rule.action == "drop":
            _drop_connection(environ)
            return []
        response = error_factory(
            rule.status, rule.code or _default_code(rule.status), f"Injected fault: HTTP {rule.status}."
        )
        if rule.retry_after is not None:
            response.headers["Retry-After"] = str(rule.retry_after)
        return response(environ, start_response)

    def count(self, service: str, method: str | None = None, path: str | None = None, status: int | None = None) -> int:
        """How many requests a service answered (regex on path), for tests that count calls."""
        pattern = re.compile(path, re.IGNORECASE) if path else None
        with self._lock:
            return sum(
                1
                for svc, meth, req_path, code in self.requests
                if svc == service
                and (method is None or meth == method)
                and (pattern is None or pattern.search(req_path))
                and (status is None or code == status)
            )


def _default_code(status: int) -> str:
    return {
        429: "TooManyRequests",
        500: "InternalServerError",
        502: "BadGateway",
        503: "ServiceUnavailable",
        504: "GatewayTimeout",
    }.get(status, "InjectedFault")


class ConnectionDropped(ConnectionResetError):
    """Raised into the server after the socket is shut, so no response is written."""


def _drop_connection(environ: dict) -> None:
    environ["emulator.dropped"] = True  # the handler closes the connection instead of keeping it alive
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    raise ConnectionDropped("connection dropped by an injected fault")
