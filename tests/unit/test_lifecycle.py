"""The job model on its own: which transitions exist, every non-final state's deadline, the API's
coarse status, the queue's step messages, and jobs recorded before the model had states."""

from __future__ import annotations

import datetime as dt

import pytest

from mccf_backup import lifecycle
from mccf_backup.errors import InvalidRequest
from mccf_backup.jobs import Job
from mccf_backup.work_queue import StepMessage, TargetMessage

T0 = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.timezone.utc)


def test_final_states_go_nowhere_and_every_other_state_can_end():
    for state in lifecycle.STATES:
        allowed = lifecycle.TRANSITIONS[state]
        if lifecycle.is_final(state):
            assert allowed == frozenset()
        else:
            assert {lifecycle.FAILED, lifecycle.ABANDONED} <= allowed, state


@pytest.mark.parametrize(
    ("current", "to"),
    [
        ("running", "accepted"),  # never back to before the request was sent
        ("finishing", "running"),
        ("succeeded", "failed"),
        ("abandoned", "running"),
        ("accepted", "running"),  # only a step that claimed it (starting) sends the request
        ("starting", "succeeded"),
    ],
)
def test_transitions_the_model_forbids(current, to):
    with pytest.raises(lifecycle.IllegalTransition):
        lifecycle.check(current, to)


def test_every_non_final_state_has_a_deadline_and_no_final_state_has_one():
    deadlines = lifecycle.Deadlines.from_settings(operation_minutes=60, arm_timeout_seconds=60, lost_seconds=900)
    for state in lifecycle.STATES:
        deadline = deadlines.for_state(state, T0, T0)
        assert (deadline is None) == lifecycle.is_final(state), state
        if deadline is not None:
            assert deadline > T0
    assert deadlines.for_state("running", T0, T0) == T0 + dt.timedelta(minutes=60)
    late = T0 + dt.timedelta(minutes=59)  # a replace-restore's restore, sent late: still gets time
    assert deadlines.for_state("running", T0, late) == late + deadlines.starting
    assert deadlines.starting == dt.timedelta(seconds=240) and deadlines.lost == dt.timedelta(seconds=900)


@pytest.mark.parametrize(
    ("state", "status"),
    [("accepted", "running"), ("finishing", "running"), ("succeeded", "succeeded"), ("abandoned", "failed")],
)
def test_the_api_status_is_coarse(state, status):
    assert lifecycle.coarse_status(state) == status


def test_a_job_recorded_before_states_existed_reads_as_its_status_said():
    for status, state in (("running", "running"), ("succeeded", "succeeded"), ("failed", "failed")):
        entity = {"PartitionKey": "job", "RowKey": "1" * 21, "kind": "backup", "target": "/x", "trigger": "timer"}
        job = Job.from_entity({**entity, "status": status})
        assert job.state == state and job.step == 0 and job.deadline is None


def test_a_job_round_trips_through_its_entity():
    job = Job("8" * 21, "backup", "/t", "http", state="running", deadline=T0, next_check=T0, step=7, watch="share")
    again = Job.from_entity(job.to_entity())
    assert again == job and again.to_entity()["status"] == "running"


@pytest.mark.parametrize(
    "body",
    [
        "",
        "x",
        "[]",
        "{}",
        '{"job": 1, "step": 2}',
        '{"job": "a", "step": "2"}',
        '{"job": "a", "step": true}',
        '{"job": "a", "step": -1}',
        '{"job": "a"}',
        "{" + " " * 5000 + "}",
    ],
)
def test_a_malformed_step_message_is_refused_with_a_clear_error(body):
    with pytest.raises(InvalidRequest):
        StepMessage.parse(body)


def test_messages_round_trip():
    job = "8203944607156" + "22c12d16"
    assert StepMessage.parse(StepMessage(job, 3).to_json()) == StepMessage(job, 3)
    assert TargetMessage.parse(TargetMessage("/t", "run").to_json()) == TargetMessage("/t", "run")
