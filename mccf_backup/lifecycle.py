"""The job model's states, the transitions allowed between them, and the deadline of every state.

A backup or restore is an ARM long-running operation that lasts minutes. No invocation waits for
one: a job is recorded, started, then moved on in short steps (one ARM read, one transition) by
whoever finds it due: the operations queue, a poll, the sweeper. For that to be safe with any
number of instances, the job's state is the only truth, every change of it is a transition checked
here, and no state but a final one can be held forever: each has a deadline, and a job found past
it is ended (or, for ``starting``, moved on) by whoever finds it, whatever ARM answers.

    accepted -> starting -> running -> finishing -> succeeded
                                                  \\-> failed | abandoned  (from any non-final state)

docs/design.md draws the full diagram. This module decides nothing about Azure; it never does I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

ACCEPTED = "accepted"  # recorded, holding the target's lease; nothing sent to ARM yet
STARTING = "starting"  # the ARM request is being sent; if its sender dies, ARM may or may not have acted
RUNNING = "running"  # ARM accepted it: followed by its status URL, the share it writes, or the instance
FINISHING = "finishing"  # ARM says done: tag and lease the share, or wait for the restored instance
SUCCEEDED = "succeeded"
FAILED = "failed"  # ARM refused or failed it, or a step after it failed
ABANDONED = "abandoned"  # ended by its deadline: nobody could tell its outcome in time

STATES = (ACCEPTED, STARTING, RUNNING, FINISHING, SUCCEEDED, FAILED, ABANDONED)
FINAL = frozenset({SUCCEEDED, FAILED, ABANDONED})
_ENDS = frozenset({FAILED, ABANDONED})

TRANSITIONS: dict[str, frozenset[str]] = {
    ACCEPTED: frozenset({STARTING, SUCCEEDED}) | _ENDS,  # succeeded: a record made final at once
    # finishing: ARM answered 200 (done at once), or the lost answer's backup share is already there
    STARTING: frozenset({RUNNING, FINISHING}) | _ENDS,
    # running -> running records a poll; running -> starting is a replace-restore's second request;
    # running -> succeeded ends an operation with nothing to do after ARM's end (a replace's delete)
    RUNNING: frozenset({RUNNING, STARTING, FINISHING, SUCCEEDED}) | _ENDS,
    FINISHING: frozenset({FINISHING, SUCCEEDED}) | _ENDS,
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    ABANDONED: frozenset(),
}


class IllegalTransition(ValueError):
    """A bug: code tried a transition the model does not allow."""


def check(current: str, to: str) -> None:
    if to not in TRANSITIONS.get(current, frozenset()):
        raise IllegalTransition(f"a job cannot go from {current} to {to}")


def is_final(state: str) -> bool:
    return state in FINAL


def coarse_status(state: str) -> str:
    """What the API and table queries call the state: running until final, then succeeded or failed."""
    if state == SUCCEEDED:
        return "succeeded"
    if state in _ENDS:
        return "failed"
    return "running"


@dataclass(frozen=True)
class Deadlines:
    """How long a job may stay in each non-final state.

    ``running`` counts from the job's start (the ARM operation's whole lifetime); the others count
    from entering the state. ``lost`` bounds how long an operation ARM lost track of is followed by
    the share it writes before its job ends.
    """

    accepted: dt.timedelta = dt.timedelta(minutes=5)
    starting: dt.timedelta = dt.timedelta(minutes=3)
    running: dt.timedelta = dt.timedelta(minutes=60)
    finishing: dt.timedelta = dt.timedelta(minutes=30)
    lost: dt.timedelta = dt.timedelta(minutes=15)

    @classmethod
    def from_settings(cls, operation_minutes: int, arm_timeout_seconds: int, lost_seconds: int) -> "Deadlines":
        # starting: the request itself (ARM_TIMEOUT_SECONDS), a look and a second request after a lost answer
        return cls(
            starting=dt.timedelta(seconds=3 * arm_timeout_seconds + 60),
            running=dt.timedelta(minutes=operation_minutes),
            lost=dt.timedelta(seconds=lost_seconds),
        )

    def for_state(self, state: str, started: dt.datetime, now: dt.datetime) -> dt.datetime | None:
        if state == ACCEPTED:
            return now + self.accepted
        if state == STARTING:
            return now + self.starting
        if state == RUNNING:
            return max(started + self.running, now + self.starting)  # a restore's second request starts late
        if state == FINISHING:
            return now + self.finishing
        return None
