"""Property tests of the input rules, the principal parser, the body parser and the log backstop:
whatever arrives, the answer is the value or a documented refusal, never another exception, and
nothing unprintable passes."""

from __future__ import annotations

import base64
import json
import logging
import re

import azure.functions as func
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions.http_helpers import json_body
from mccf_backup import errors, inputs, logs
from mccf_backup.entra_tokens import TokenPolicy, caller_from
from mccf_backup.restore_checks import RestoreRequest

RULES = {
    inputs.target_reference: (inputs.APP_NAME, inputs.RESOURCE_ID),
    inputs.share_name: (inputs.SHARE_NAME,),
    inputs.region: (inputs.REGION,),
    inputs.confirmation: (inputs.APP_NAME,),
    inputs.job_id: (inputs.JOB_ID,),
    inputs.idempotency_key: (inputs.IDEMPOTENCY_KEY,),
}
NEAR_MISSES = [
    "contoso\n",
    "contoso\r",
    " contoso",
    "contoso\x00",
    "cont\u202eoso",
    "contoso-ledger-20261127020000\n",
    "fabri\u212aam",  # the Kelvin sign, which case-insensitive Unicode matching takes for 'k'
    "\uff11" * 13 + "deadbeef",  # fullwidth digits, which \\d matches
    "/\u017fubscriptions/8a2c5f7e-3b1d-4c6a-9e0f-1d2b3c4d5e6f/resourceGroups/rg/providers/"
    "Microsoft.ConfidentialLedger/managedCCFs/contoso",  # the long s
]
anything = st.one_of(st.text(), st.binary(), st.integers(), st.none(), st.lists(st.text(max_size=3), max_size=2))


@pytest.mark.parametrize("rule", list(RULES), ids=lambda rule: rule.__name__)
@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=anything)
@example(value="contoso-ledger")
def test_a_rule_accepts_exactly_its_full_matches(rule, value):
    matches = isinstance(value, str) and any(pattern.fullmatch(value) for pattern in RULES[rule])
    try:
        assert rule(value) == value and matches
    except errors.MccfBackupError as refused:
        assert not matches and refused.status == 400 and refused.field
        assert len(str(value)) < 8 or str(value) not in refused.message  # refusals never quote the value


@pytest.mark.parametrize("rule", list(RULES), ids=lambda rule: rule.__name__)
@pytest.mark.parametrize("value", NEAR_MISSES)
def test_a_trailing_newline_or_a_hidden_character_is_not_a_name(rule, value):
    with pytest.raises(errors.MccfBackupError):
        rule(value)


def test_every_name_rule_of_the_engine_is_anchored():
    """`$` lets a trailing newline through; every compiled pattern is used with fullmatch, not match."""
    for path in ("mccf_backup", "functions", "emulator"):
        for source in __import__("pathlib").Path(path).rglob("*.py"):
            text = source.read_text()
            assert not re.search(r"re\.compile\(r?[\"']\^.*\$[\"']", text), source
            assert not re.search(r"\b[A-Z_]+\.match\(", text), source


@given(name=st.text(max_size=400))
def test_a_caller_name_is_one_printable_line(name):
    shown = inputs.caller_name(name)
    assert shown.isprintable() and 1 <= len(shown) <= inputs.MAX_CALLER_LENGTH


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


class _NoKeys:
    """A tenant that publishes no keys: every header must then be refused, and cleanly."""

    def key(self, kid: str) -> None:
        return None

    def issuers(self) -> list[str]:
        return []


_POLICY = TokenPolicy("5d3b0c1e-0000-4000-8000-000000000001", "72f988bf-0000-4000-8000-00000000e1e1")
_SEGMENT = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60)


@settings(max_examples=300)
@given(
    value=st.one_of(
        st.text(max_size=300),
        st.builds(lambda parts: "Bearer " + ".".join(parts), st.lists(_SEGMENT, min_size=1, max_size=4)),
        st.builds(
            lambda header: "Bearer " + base64.urlsafe_b64encode(header).decode().rstrip("=") + ".e30.c2ln",
            st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode())),
        ),
    )
)
def test_any_authorization_header_is_refused_as_unauthenticated_and_nothing_else(value):
    with pytest.raises(errors.Unauthenticated) as refused:
        caller_from({"Authorization": value}, _POLICY, _NoKeys())
    assert refused.value.__context__ is None or not isinstance(refused.value.__context__, RecursionError)


def _request(body: bytes, content_type: str | None = "application/json") -> func.HttpRequest:
    headers = {"Content-Type": content_type} if content_type else {}
    return func.HttpRequest(method="POST", url="http://localhost/api/backups", headers=headers, body=body)


@settings(max_examples=300)
@given(
    body=st.one_of(
        st.binary(max_size=300),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.integers(1, 20000).map(lambda depth: b"[" * depth),
        st.integers(1, 3000).map(lambda depth: b'{"a":' * depth),
    ),
    content_type=st.sampled_from(["application/json", "application/merge-patch+json", "text/plain", None]),
)
def test_any_body_is_parsed_or_refused_with_a_documented_code(body, content_type):
    allowed = {"target": str, "dryRun": bool}
    try:
        parsed = json_body(_request(body, content_type), allowed, required=("target",))
    except errors.MccfBackupError as refused:
        assert refused.code in {"invalid_json", "invalid_request", "unsupported_media_type"}
        return
    assert set(parsed) <= set(allowed) and isinstance(parsed["target"], str)


@settings(max_examples=200)
@given(
    fields=st.fixed_dictionaries(
        {},
        optional={
            "target": st.text(max_size=80),
            "share": st.text(max_size=70),
            "region": st.text(max_size=50),
            "confirm": st.text(max_size=40),
        },
    )
)
def test_a_restore_request_holds_only_values_that_passed_the_rules(fields):
    try:
        request = RestoreRequest(**{"target": "contoso", **fields})
    except errors.MccfBackupError as refused:
        assert refused.status == 400
        return
    for value in (request.target, request.share, request.region, request.confirm):
        assert value is None or (value.isprintable() and value.strip() == value)


@given(text=st.text())
def test_the_log_backstop_makes_one_printable_line(text):
    shown = logs.one_line(text)
    assert shown.isprintable() and "\n" not in shown and (shown == text) == text.isprintable()


def test_the_log_backstop_is_on_every_app_logger():
    """Every logger the app writes through carries the filter (logs.logger), and no module makes its own."""
    import function_app  # noqa: F401 - imports every blueprint, and so every logger they create
    import mccf_backup.service  # noqa: F401 - the engine, imported on first use by the functions

    for name in ("mccf_backup", "mccf_backup.events", "mccf_backup.http", "mccf_backup.timer", "mccf_backup.queue"):
        assert any(type(f).__name__ == "_OneLine" for f in logging.getLogger(name).filters), name
    for path in ("mccf_backup", "functions"):
        for source in __import__("pathlib").Path(path).rglob("*.py"):
            if source.name != "logs.py":
                assert "logging.getLogger(" not in source.read_text(), source
