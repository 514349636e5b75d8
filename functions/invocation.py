"""The invocation's logging context, carried to the worker threads the engine uses for it.

The Python worker attributes a log record to an invocation by the invocation id it finds in a
thread-local (``context.thread_local_storage``); the host drops records that carry none. It sets it
on the thread that runs the function, not on threads the function starts, so every worker thread
of the engine first runs the setup this returns (Microsoft's documented way for threads).
"""

from __future__ import annotations

from typing import Callable

import azure.functions as func


def thread_setup(context: func.Context | None) -> Callable[[], None] | None:
    if context is None:
        return None
    invocation_id = context.invocation_id
    storage = context.thread_local_storage

    def carry() -> None:
        storage.invocation_id = invocation_id

    return carry
