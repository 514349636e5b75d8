"""Throttling, persistence across restarts, the command line and the control endpoint."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.confidentialledger.models import ManagedCCFBackup
from azure.storage.fileshare import ShareServiceClient

from emulator import Emulator
from emulator.throttle import BucketConfig, ThrottleConfig

from .helpers import bearer, emulator_env, file_service_sas_url, mgmt_client, secret_client

REPO = Path(__file__).resolve().parents[2]


def test_writes_are_throttled_per_subscription_with_retry_after(emulator, tmp_path):
    config = ThrottleConfig(writes=BucketConfig(burst=3, refill_per_second=0.5), reads=BucketConfig(100, 100))
    with Emulator(tmp_path / "throttled", seed=True, operation_seconds=0.1, throttle=config) as emu, emulator_env(emu):
        headers = bearer("https://management.azure.com/.default")
        target = f"{emu.env['ARM_ENDPOINT']}{emu.targets[0]}/backup?api-version=2024-09-19-preview"
        remaining = []
        for _ in range(3):
            response = requests.post(target, json={"uri": "x"}, headers=headers, timeout=5)
            remaining.append(int(response.headers["x-ms-ratelimit-remaining-subscription-writes"]))
        assert remaining == [2, 1, 0]
        throttled = requests.post(target, json={"uri": "x"}, headers=headers, timeout=5)
        assert throttled.status_code == 429
        assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
        assert int(throttled.headers["Retry-After"]) >= 1
        reads = requests.get(
            f"{emu.env['ARM_ENDPOINT']}{emu.targets[0]}?api-version=2024-09-19-preview", headers=headers, timeout=5
        )
        assert reads.status_code == 200  # reads have their own bucket
        assert "x-ms-ratelimit-remaining-subscription-reads" in reads.headers


def test_state_survives_a_restart(tmp_path):
    state = tmp_path / "persisted"
    with Emulator(state, seed=True, operation_seconds=0.1) as emu, emulator_env(emu):
        rg, app = "rg-ledger-audit", "fabrikam-audit"
        mgmt_client(emu).managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=file_service_sas_url(emu))).result()
        share_names = [s.name for s in ShareServiceClient.from_connection_string(emu.connection_string()).list_shares()]
        ports = (emu.env["ARM_ENDPOINT"], emu.env["FILE_ENDPOINT"])
    with Emulator(state, seed=True) as emu, emulator_env(emu):
        assert (emu.env["ARM_ENDPOINT"], emu.env["FILE_ENDPOINT"]) == ports  # ports are reused when free
        service = ShareServiceClient.from_connection_string(emu.connection_string())
        assert [s.name for s in service.list_shares()] == share_names
        assert mgmt_client(emu).managed_ccf.get(rg, app).properties.provisioning_state == "Succeeded"
        secret = secret_client(emu).get_secret(emu.env["STORAGE_SECRET_NAME"]).value
        assert secret == emu.connection_string()


def test_command_line_serves_writes_env_and_stops_on_sigterm(tmp_path):
    state = tmp_path / "cli"
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "serve", "--state-dir", str(state), "--seed"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        printed = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = process.stdout.readline()
            if not line or line.strip() == "ready":
                break
            printed.append(line.strip())
        env_file = dict(line.split("=", 1) for line in (state / "emulator.env").read_text().splitlines() if "=" in line)
        printed_env = dict(line.split("=", 1) for line in printed if "=" in line and not line.startswith("#"))
        assert printed_env == env_file
        for key in (
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "ARM_ENDPOINT",
            "KEY_VAULT_URL",
            "STORAGE_SECRET_NAME",
            "STORAGE_ACCOUNT_NAME",
            "FILE_ENDPOINT",
            "REQUESTS_CA_BUNDLE",
            "MCCF_TARGETS",
        ):
            assert env_file[key], key
        assert len(env_file["MCCF_TARGETS"].split(",")) == 2
        control = env_file["EMULATOR_CONTROL_URL"]
        created = requests.post(f"{control}/faults", json={"service": "arm", "status": 429, "retryAfter": 7}, timeout=5)
        assert created.status_code == 201
        token = requests.get(
            env_file["IDENTITY_ENDPOINT"],
            params={"api-version": "2019-08-01", "resource": "https://management.azure.com"},
            headers={"X-IDENTITY-HEADER": env_file["IDENTITY_HEADER"]},
            timeout=5,
        ).json()
        response = requests.get(
            f"{env_file['ARM_ENDPOINT']}{env_file['MCCF_TARGETS'].split(',')[0]}",
            params={"api-version": "2024-09-19-preview"},
            headers={"Authorization": f"Bearer {token['access_token']}"},
            verify=env_file["REQUESTS_CA_BUNDLE"],
            timeout=5,
        )
        assert response.status_code == 429 and response.headers["Retry-After"] == "7"
        assert (
            requests.post(f"{control}/clock", json={"advanceSeconds": 86400}, timeout=5).json()["offsetSeconds"]
            == 86400
        )
        resources = requests.get(f"{control}/resources", timeout=5).json()
        assert {r["name"] for r in resources} == {"contoso-ledger", "fabrikam-audit"}
        assert requests.post(f"{control}/faults", json={"service": "nope"}, timeout=5).status_code == 400
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert out.strip().endswith("stopped")
    assert "Traceback" not in err


def test_control_endpoint_drives_operation_failures_rbac_and_latency(emulator):
    control = emulator.env["EMULATOR_CONTROL_URL"]
    rg, app = "rg-ledger-audit", "fabrikam-audit"
    response = requests.post(
        f"{control}/faults/operations", json={"kind": "backup", "code": "QuorumLost", "message": "no quorum"}, timeout=5
    )
    assert response.status_code == 204
    poller = mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
    )
    try:
        poller.result()
        raise AssertionError("the injected failure did not fail the backup")
    except HttpResponseError as err:
        assert err.error.code == "QuorumLost"
    operations = requests.get(f"{control}/operations", timeout=5).json()
    assert any(o["status"] == "Failed" and o["error"]["code"] == "QuorumLost" for o in operations)

    assert requests.post(f"{control}/rbac/deny", json={"clientId": emulator.system_identity.client_id}, timeout=5).ok
    with_denial = requests.get(
        f"{emulator.env['ARM_ENDPOINT']}{emulator.targets[1]}?api-version=2024-09-19-preview",
        headers=bearer("https://management.azure.com/.default"),
        timeout=5,
    )
    assert with_denial.status_code == 403 and with_denial.json()["error"]["code"] == "AuthorizationFailed"
    assert requests.delete(f"{control}/rbac/deny", timeout=5).status_code == 204

    assert (
        requests.post(f"{control}/latency", json={"service": "keyvault", "seconds": 0.4}, timeout=5).status_code == 204
    )
    started = time.monotonic()
    secret_client(emulator).get_secret(emulator.env["STORAGE_SECRET_NAME"])
    assert time.monotonic() - started >= 0.4
    assert requests.delete(f"{control}/faults", timeout=5).status_code == 204
    assert requests.get(f"{control}/nope", timeout=5).status_code == 404
