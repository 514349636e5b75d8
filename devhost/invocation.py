"""Invoke one of the app's functions as the Python worker does, where no Functions host runs.

Bindings are passed by name; a function that declares ``context`` gets a ``func.Context`` whose
``thread_local_storage`` is one process-wide thread-local, like the worker's. The worker sets the
invocation id there on the thread running the function (and only there) and attributes a log
record to an invocation by reading it on the thread that logs; the host drops records without one.
``current_invocation_id`` reads it the same way, so tests can check what the host would keep.
"""

from __future__ import annotations

import inspect
import threading
import uuid
from pathlib import Path

import azure.functions as func

REPO = Path(__file__).resolve().parents[1]
invocation_local = threading.local()  # the worker's own is azure_functions_worker.dispatcher._invocation_id_local


def current_invocation_id() -> str | None:
    return getattr(invocation_local, "invocation_id", None)


class InvocationContext(func.Context):
    def __init__(self, function_name: str) -> None:
        self._function_name = function_name
        self._invocation_id = str(uuid.uuid4())

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:
        return invocation_local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(REPO)

    @property
    def trace_context(self):
        return None

    @property
    def retry_context(self):
        return None


def invoke(function, **bindings):
    """Call ``function`` (from ``app.get_functions()``) with its bindings, in an invocation context."""
    user = function.get_user_function()
    context = InvocationContext(function.get_function_name())
    if "context" in inspect.signature(user).parameters:
        bindings["context"] = context
    invocation_local.invocation_id = context.invocation_id
    try:
        return user(**bindings)
    finally:
        invocation_local.invocation_id = None
