"""The negative fuzz run: schemathesis sends what the OpenAPI document says is invalid (every field
of every route broken in turn), then walks the document's links (start -> poll, list -> verify) with
valid data. No answer is a 5xx, every refusal is a documented problem+json code, and a request refused
for what it held reaches no backend: the emulator's request log (ARM, Key Vault, Azure Files and
the identity endpoint) does not move."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.devserver import RunningServer

from .conftest import every_role_headers, seeded_settings
from .contract import DOCUMENT, contract

CODES = set(DOCUMENT["components"]["schemas"]["Problem"]["properties"]["code"]["enum"])
# Refusals judged from the request alone: none of them may cost a backend call.
INPUT_REFUSALS = {
    "invalid_json",
    "unsupported_media_type",
    "invalid_request",
    "invalid_share_name",
    "target_not_allowed",
    "unauthenticated",
    "role_missing",
}
negative = contract(GenerationMode.NEGATIVE)
stateful = contract(GenerationMode.POSITIVE)


def backend_calls(emulator) -> int:
    """Requests to the services a request acts on; fetching the tenant's token-signing keys (login)
    is checking who asks, which comes first."""
    with emulator.faults._lock:
        return sum(1 for service, *_ in emulator.faults.requests if service != "login")


def judge(response, before: int, emulator) -> None:
    """The run's invariants for one answer."""
    assert response.status_code < 500, response.text
    if response.status_code < 400:
        return
    content_type = {k.lower(): v for k, v in response.headers.items()}.get("content-type") or [""]
    if not (content_type if isinstance(content_type, str) else content_type[0]).startswith("application/problem+json"):
        # Only routing answers without a body (no route, wrong method), as the Functions host does.
        assert response.status_code in (404, 405), response.text
        assert backend_calls(emulator) == before
        return
    problem = response.json()
    assert problem["code"] in CODES and problem["status"] == response.status_code, problem
    if problem["code"] in INPUT_REFUSALS:
        assert backend_calls(emulator) == before, f"{problem['code']} after a backend call"


@pytest.fixture
def fuzz_server(emulator, azurite, monkeypatch):
    """The app on the emulator's seeded targets, guarded by Entra ID as in production; no queue pump, so
    nothing runs between requests but what a request does itself. ``server.caller`` holds the headers
    of a caller with every role."""
    for key, value in {**seeded_settings(emulator, azurite, prefix="fuzz"), **emulator.api_auth_settings}.items():
        monkeypatch.setenv(key, value)
    from function_app import app

    reset_credentials()
    with RunningServer(app, function_key=f"key-{uuid.uuid4().hex}", pump=False) as server:
        server.caller = every_role_headers(emulator, server.key)
        yield server
    reset_credentials()


@pytest.fixture
def refusals():
    """The statuses of every example of one operation: the run must have been refused at least once,
    or it sent nothing invalid and proved nothing."""
    statuses: list[int] = []
    yield statuses
    assert any(400 <= status < 500 for status in statuses), statuses


@negative.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_invalid_requests_are_refused_with_a_documented_code_and_no_backend_call(case, fuzz_server, emulator, refusals):
    if case.query and "code" in case.query:
        case.query["code"] = fuzz_server.key  # the function key is a credential, not an input to fuzz
    before = backend_calls(emulator)
    response = case.call(base_url=f"{fuzz_server.url}/api", headers=fuzz_server.caller)
    refusals.append(response.status_code)
    judge(response, before, emulator)
    case.validate_response(response)  # schemathesis' own checks: conformance, and invalid data refused


def test_following_the_documents_links_never_fails(fuzz_server, emulator):
    machine = stateful.as_state_machine()
    calls: list[tuple[str, int]] = []
    # The walk is about links with valid data: name configured targets (the negative run above covers
    # every other target), so a backup starts and its operation is polled.
    apps = [target.rsplit("/", 1)[-1] for target in emulator.env["MCCF_TARGETS"].split(",")]

    def configured(value: object) -> str:
        return apps[len(str(value)) % len(apps)]

    # Links follow what answers hold, and hypothesis requires that the same choices draw the same way:
    # every target has a backup before the walk, so a listing is never empty in one run and not the next.
    service = BackupService.from_environment()
    for app in apps:
        service.follow(service.start_backup(app, "cli"))

    class Workflow(machine):
        def get_call_kwargs(self, case):
            return {"base_url": f"{fuzz_server.url}/api", "headers": fuzz_server.caller}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            calls.append((f"{case.method} {case.path}", response.status_code))
            judge(response, self._before, emulator)
            super().validate_response(response, case, additional_checks, **kwargs)

        def before_call(self, case):
            if case.query and "code" in case.query:
                case.query["code"] = fuzz_server.key
            if isinstance(case.body, dict) and "target" in case.body:
                case.body["target"] = configured(case.body["target"])
            if case.query and "target" in case.query:
                case.query["target"] = configured(case.query["target"])
            self._before = backend_calls(emulator)

    Workflow.run(
        settings=settings(
            max_examples=30, stateful_step_count=6, deadline=None, suppress_health_check=list(HealthCheck)
        )
    )
    polled = [status for label, status in calls if label == "GET /operations/{id}"]
    assert any(status in (200, 202) for status in polled), calls  # a link from a 202 to its operation was followed
