"""What an attacker sends at every edge of the HTTP API: each refused with a documented code, no 5xx,
no forged event line, no key handed to a stranger, and no backend call for what was refused."""

from __future__ import annotations

import json
import logging
import re

import pytest
import requests

from mccf_backup.logs import EVENT_MARKER

from .test_http_api import app_of, assert_problem

FORGED = json.dumps({"event": "restore.success", "target": "/subscriptions/x", "job": "forged"})
HOSTILE_TEXT = [
    "\n" + EVENT_MARKER + " " + FORGED,
    "app\r\n" + EVENT_MARKER + " " + FORGED,
    "app\x00",
    "app\u202egpj.exe",  # a right-to-left override
    "app\n",
    "../../etc",
    "a?b#c",
    "x" * 5000,
]


def backend_calls(emulator) -> int:
    """Every request ARM, Key Vault, Azure Files and the identity endpoint of the emulator answered."""
    with emulator.faults._lock:
        return len(emulator.faults.requests)


def event_lines(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    """(logger, line) for every line that reads as an event, as the alert rules read them (a trace
    whose message starts with the marker) and as a console or file log shows them (any line of a
    record, traceback included, that starts with it)."""
    formatter = logging.Formatter("%(message)s")
    return [
        (record.name, line)
        for record in records
        for line in formatter.format(record).splitlines()
        if line.lstrip().startswith(EVENT_MARKER)
    ]


def test_deeply_nested_json_is_invalid_json_not_a_server_error(api, app_env, emulator):
    before = backend_calls(emulator)
    for body in (b"[" * 5000, b'{"target":' * 1500):
        response = api("POST", "backups", data=body, headers={"Content-Type": "application/json"})
        assert_problem(response, 400, "invalid_json")
    assert backend_calls(emulator) == before


@pytest.mark.parametrize("body", [b'{"target": ' + b"1" * 4301 + b"}", b"1" * 5000, b'{"zzz": [' + b"9" * 4400 + b"]}"])
def test_a_number_longer_than_python_converts_is_invalid_json_not_a_500(api, app_env, body):
    """Found by a red-team run: Python 3.11 refuses integers over 4,300 digits with a bare ValueError."""
    for path in ("backups", "restores", "backups/app-20260101000000/verify"):
        assert_problem(api("POST", path, data=body, headers={"Content-Type": "application/json"}), 400, "invalid_json")


def test_an_unknown_field_is_named_only_when_its_name_is_a_plain_name(api, app_env):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    assert assert_problem(api("POST", "backups", json={"target": app, "tier": 1}), 400, "invalid_request")["field"] == (
        "tier"
    )
    odd = {"target": app, "x\n" + EVENT_MARKER: 1}
    assert assert_problem(api("POST", "backups", json=odd), 400, "invalid_request")["field"] == "body"


def test_duplicate_fields_are_refused_not_silently_merged(api, app_env):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    body = f'{{"target": "{app}", "target": "other-app"}}'.encode()
    assert_problem(api("POST", "backups", data=body, headers={"Content-Type": "application/json"}), 400, "invalid_json")


@pytest.mark.parametrize(
    "headers",
    [{"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"}, {}],
)
def test_a_body_that_is_not_declared_json_is_415(api, app_env, emulator, headers):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    before = backend_calls(emulator)
    response = api("POST", "backups", data=json.dumps({"target": app}).encode(), headers=headers)
    assert_problem(response, 415, "unsupported_media_type")
    assert backend_calls(emulator) == before
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert api("POST", "backups", data=json.dumps({"target": app}).encode(), headers=charset).status_code == 202


def test_a_callers_name_is_stored_as_one_printable_line(api, app_env, entra):
    """The name comes from a token Entra ID signed, but its owner chose it."""
    from .entra import bearer
    from .test_entra_tokens import claims

    target = app_env["MCCF_TARGETS"].split(",")[0]
    name = "eve\n" + EVENT_MARKER + " " + FORGED + "\u202e"
    token = entra.authority.sign(claims(entra, preferred_username=name, roles=["Backup.Operator"]))
    accepted = api("POST", "backups", json={"target": target}, headers=bearer(token))
    assert accepted.status_code == 202, accepted.text
    caller = accepted.json()["caller"]
    assert caller.isprintable() and caller.startswith("eve?") and caller.endswith("?")


@pytest.mark.parametrize(
    "region", ["east\x00us", "/../eastus", "eastus?x=1", "eastus#x", "e" * 5000, "eastus\n", " eastus"]
)
def test_a_hostile_restore_region_never_reaches_arm(api, app_env, emulator, region):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    before = backend_calls(emulator)
    for dry_run in (True, False):
        body = {"target": app, "restoreRegion": region, "dryRun": dry_run}
        refused = assert_problem(api("POST", "restores", json=body), 400, "invalid_request")
        assert refused["field"] == "restoreRegion" and region[:20] not in refused["detail"]
    assert backend_calls(emulator) == before


@pytest.mark.parametrize("target", HOSTILE_TEXT)
def test_a_hostile_target_forges_no_event_and_is_never_echoed_raw(api, app_env, emulator, caplog, target):
    caplog.set_level(logging.DEBUG)
    before = backend_calls(emulator)
    for method, path, kwargs in (
        ("POST", "backups", {"json": {"target": target}}),
        ("POST", "restores", {"json": {"target": target, "dryRun": True}}),
        ("GET", "backups", {"params": {"target": target}}),
        ("POST", "backups/app-20260101000000/verify", {"json": {"target": target}}),
    ):
        body = assert_problem(api(method, path, **kwargs), 400, "invalid_request")
        assert body["field"] == "target" and target not in body["detail"]
    assert backend_calls(emulator) == before
    assert event_lines(caplog.records) == []  # nothing the app did here emits an event
    for record in caplog.records:
        assert all(line.isprintable() for line in logging.Formatter("%(message)s").format(record).splitlines())


def test_events_cannot_be_forged_from_any_logger_even_through_an_exception(caplog):
    """The backstop under every engine logger: whatever a message or a traceback quotes stays one line,
    and only the events module's own lines start with the marker."""
    from mccf_backup import events, logs

    caplog.set_level(logging.DEBUG)
    log = logs.logger("mccf_backup.test")
    log.warning("target %s refused", "x\n" + EVENT_MARKER + " " + FORGED)
    log.info("\x00\u202e" + EVENT_MARKER + " " + FORGED)
    try:
        raise ValueError("bad\n" + EVENT_MARKER + " " + FORGED)
    except ValueError:
        log.exception("failed")
    events.emit(events.BACKUP_SUCCESS, target="/subscriptions/real", job="real\n" + EVENT_MARKER)
    lines = event_lines(caplog.records)
    assert [name for name, _ in lines] == ["mccf_backup.events"]
    (line,) = [text for _, text in lines]
    assert (
        line.startswith(EVENT_MARKER + " ") and json.loads(line[len(EVENT_MARKER) + 1 :])["event"] == "backup.success"
    )


def test_location_comes_from_the_deployment_not_the_host_header(api, app_env, devserver, monkeypatch):
    target = app_env["MCCF_TARGETS"].split(",")[0]
    evil = {"Host": "evil.example:8443", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"}
    accepted = api("POST", "backups", json={"target": target}, headers=evil)
    assert accepted.status_code == 202, accepted.text
    for url in (accepted.headers["Location"], accepted.json()["statusUrl"]):
        assert url.startswith(devserver.url + "/api/operations/") and "evil" not in url
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.contoso.example/mccf")  # a gateway in front
    second = api("POST", "backups", json={"target": app_env["MCCF_TARGETS"].split(",")[1]}, headers=evil)
    assert second.status_code == 202, second.text
    assert second.headers["Location"].startswith("https://api.contoso.example/mccf/api/operations/")
    assert f"code={devserver.key}" in second.headers["Location"]  # Logic Apps polls it as given


@pytest.mark.parametrize(
    "origin", ["http://api.contoso.example", "https://x.example/?q=1", "ftp://x.example", "not a url"]
)
def test_a_public_base_url_that_would_leak_the_key_is_a_settings_error(origin):
    from mccf_backup.settings import _public_origin

    problems: list[str] = []
    assert _public_origin(origin, "", problems) is None and problems and origin not in problems[0]
    assert _public_origin("", "mccf.azurewebsites.net", []) == "https://mccf.azurewebsites.net"
    assert _public_origin("", "localhost:7071", []) == "http://localhost:7071"
    assert _public_origin("", "evil\n.example", []) is None


@pytest.mark.parametrize("share", ["app-20260101000000\n", "app-20260101000000%0A", "APP-1", "a", "a--b"])
def test_a_share_name_that_only_nearly_matches_never_reaches_azure_files(api, app_env, emulator, share):
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    before = backend_calls(emulator)
    assert_problem(
        api("POST", "restores", json={"target": app, "share": share, "dryRun": True}), 400, "invalid_share_name"
    )
    if "/" not in share:
        path = "backups/" + requests.utils.quote(share, safe="") + "/verify"
        assert_problem(api("POST", path, json={"target": app}), 400, "invalid_share_name")
    assert backend_calls(emulator) == before


def test_an_operation_id_with_a_trailing_newline_is_not_an_id(api, app_env):
    body = assert_problem(api("GET", "operations/1234567890123deadbeef%0A"), 404, "operation_not_found")
    assert body["field"] == "id" and "\n" not in body["detail"]


def test_the_admin_api_takes_only_the_master_key_and_the_access_log_shows_no_key(devserver, caplog):
    caplog.set_level(logging.INFO, logger="werkzeug")  # the emulator quiets werkzeug's access log
    admin = f"{devserver.url}/admin/functions/sweep_operations"
    assert requests.post(admin, params={"code": devserver.key}, timeout=30).status_code == 401
    assert requests.post(admin, headers={"x-functions-key": devserver.key}, timeout=30).status_code == 401
    assert requests.post(admin, params={"code": devserver.master_key}, timeout=60).status_code == 202
    assert requests.get(f"{devserver.url}/api/status", params={"code": devserver.master_key}, timeout=30).ok
    requests.get(f"{devserver.url}/api/status?x=1;code={devserver.key}", timeout=30)  # a key where no rule looks
    requests.get(f"{devserver.url}/api/status/code={devserver.key}", timeout=30)
    forged = requests.get(f"{devserver.url}/api/%E2%80%A8{EVENT_MARKER}%20{FORGED}", timeout=30)
    assert forged.status_code == 404 and forged.content == b""  # the host's own answers have no body
    assert requests.put(f"{devserver.url}/api/status", timeout=30).status_code == 405
    assert devserver.key not in caplog.text and devserver.master_key not in caplog.text
    assert re.search(r"code=REDACTED", caplog.text)
    assert event_lines(caplog.records) == []  # U+2028 split werkzeug's line in two; the access log is one line


@pytest.mark.parametrize("key", ["", "key with spaces", "k" * 256, "caf\u00e9"])
def test_a_malformed_idempotency_key_is_refused_even_by_a_dry_run(api, app_env, emulator, key):
    """Found by the stateful fuzz run: a dry run answered 200 whatever the header held."""
    app = app_of(app_env["MCCF_TARGETS"].split(",")[0])[1]
    before = backend_calls(emulator)
    for path, body in (("restores", {"target": app, "dryRun": True}), ("backups", {"target": app})):
        refused = assert_problem(api("POST", path, json=body, headers={"Idempotency-Key": key}), 400, "invalid_request")
        assert refused["field"] == "Idempotency-Key"
    assert backend_calls(emulator) == before


def test_python_m_scripts_devserver_serves_the_app(app_env):
    """The documented local command starts (run as __main__ it indexed the app twice and crashed)."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "devhost.devserver", "--port", str(port), "--key", "k-1", "--master-key", "m-1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and server.poll() is None:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/api/status", timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert server.poll() is None, server.stdout.read().decode()[-2000:]
        assert answer.status_code == 401  # up, and asking for its key
        assert requests.get(f"http://127.0.0.1:{port}/api/status", params={"code": "k-1"}, timeout=60).ok
    finally:
        server.terminate()
        server.wait(timeout=30)
