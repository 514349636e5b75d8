"""Fixtures for the app: Azurite (real, from npm), the app's settings, the dev server."""

from __future__ import annotations

import os
import uuid

import pytest

from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.azurite import Azurite
from devhost.devserver import RunningServer


@pytest.fixture(scope="session")
def azurite():
    with Azurite() as server:
        yield server


@pytest.fixture
def targets(emulator):
    """Two fresh instances in two resource groups, so tests never share an instance's state. Made
    directly in the emulator's state (tests/emulator checks creation over ARM): two ARM creates per
    test cost more than two seconds of polling each time."""
    return [emulator.add_instance(rg, f"app-{uuid.uuid4().hex[:8]}") for rg in ("rg-app-a", "rg-app-b")]


@pytest.fixture
def target(app_env) -> str:
    """The first of the test's two instances."""
    return app_env["MCCF_TARGETS"].split(",")[0]


@pytest.fixture
def service(app_env) -> BackupService:
    """The engine on the test's settings, as the CLI builds it."""
    return BackupService.from_environment()


@pytest.fixture
def app_env(emulator, azurite, targets, monkeypatch):
    """The app's settings as a Functions host would set them, against the emulator and Azurite."""
    settings = {
        "MCCF_TARGETS": ",".join(targets),
        "BACKUP_SCHEDULE": "0 0 2 * * *",
        "KEY_VAULT_URL": emulator.env["KEY_VAULT_URL"],
        "STORAGE_SECRET_NAME": emulator.env["STORAGE_SECRET_NAME"],
        "ARM_ENDPOINT": emulator.env["ARM_ENDPOINT"],
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_TABLE_NAME": f"jobs{uuid.uuid4().hex[:10]}",
        "OPERATIONS_QUEUE_NAME": f"ops-{uuid.uuid4().hex[:10]}",
        "BACKUP_QUEUE_NAME": f"targets-{uuid.uuid4().hex[:10]}",
        "SWEEP_SCHEDULE": "0 */5 * * * *",
        "RESTORE_REGION": "",
    }
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    for key in ("AZURE_CLIENT_ID", "MCCF_API_VERSION", "BACKUP_CONCURRENCY"):
        monkeypatch.delenv(key, raising=False)
    reset_credentials()
    yield settings
    reset_credentials()


def every_role_headers(emulator, function_key: str) -> dict[str, str]:
    """What a caller holding every app role sends: the function key and its token."""
    token = emulator.api_token("Backup.Read", "Backup.Operator", "Restore.Operator")
    return {"x-functions-key": function_key, "Authorization": f"Bearer {token}"}


@pytest.fixture
def entra(app_env, emulator, monkeypatch):
    """The API guarded by Entra ID app roles, the emulator's tenant issuing the tokens. The app's key
    cache starts empty, as on a fresh instance."""
    from mccf_backup import entra_tokens

    for key, value in emulator.api_auth_settings.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(entra_tokens, "_signing_keys", {})
    return emulator


@pytest.fixture
def devserver(app_env):
    from function_app import app

    with RunningServer(app, function_key=f"key-{uuid.uuid4().hex}") as server:
        yield server


@pytest.fixture
def api(devserver):
    """Call the app over HTTP with the function key, as an internal tool would."""
    import requests

    def call(method: str, path: str, **kwargs) -> requests.Response:
        params = dict(kwargs.pop("params", {}) or {})
        params.setdefault("code", devserver.key)
        return requests.request(method, f"{devserver.url}/api/{path}", params=params, timeout=30, **kwargs)

    return call


def pytest_configure(config):
    os.environ.setdefault("PYTHONUTF8", "1")


def seeded_settings(emulator, azurite, prefix: str) -> dict[str, str]:
    """The app's settings on the emulator's seeded targets (whose names the document's examples use),
    with a job table and queues of its own."""
    unique = f"{prefix}{uuid.uuid4().hex[:8]}"
    return {
        "MCCF_TARGETS": emulator.env["MCCF_TARGETS"],
        "KEY_VAULT_URL": emulator.env["KEY_VAULT_URL"],
        "STORAGE_SECRET_NAME": emulator.env["STORAGE_SECRET_NAME"],
        "ARM_ENDPOINT": emulator.env["ARM_ENDPOINT"],
        "AzureWebJobsStorage": azurite.connection_string,
        "JOBS_TABLE_NAME": unique,
        "OPERATIONS_QUEUE_NAME": f"{unique}-ops",
        "BACKUP_QUEUE_NAME": f"{unique}-targets",
    }


@pytest.fixture
def schemathesis_env(emulator, azurite, monkeypatch):
    """The dev server on the emulator's seeded targets, whose names the document's examples use, guarded
    by Entra ID as a production deployment is: yields its URL and the headers of a caller holding every role."""
    settings = {**seeded_settings(emulator, azurite, prefix="schemathesis"), **emulator.api_auth_settings}
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    from function_app import app

    reset_credentials()
    with RunningServer(app, function_key=f"key-{uuid.uuid4().hex}") as server:
        yield server.url, every_role_headers(emulator, server.key)
    reset_credentials()


@pytest.fixture(autouse=True)
def _fresh_preflight(monkeypatch):
    """Each test's settings get their own preflight run (an instance reuses a report for 30 s)."""
    from functions import http_api

    monkeypatch.setattr(http_api, "_last_preflight", None)
