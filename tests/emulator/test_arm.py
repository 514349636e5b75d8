"""The Managed CCF control plane, through azure-mgmt-core's pipeline and Microsoft's generated client."""

from __future__ import annotations

import base64
import datetime as dt
import re
import time
import uuid

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest
from azure.mgmt.confidentialledger.models import ManagedCCFBackup, ManagedCCFRestore
from azure.storage.fileshare import AccountSasPermissions, ResourceTypes, ShareServiceClient, generate_account_sas
from azure.storage.fileshare._shared.shared_access_signature import SharedAccessSignature

from emulator.ledger import committed_chunks

from .helpers import arm_pipeline, bearer, file_service_sas_url, mgmt_client, new_instance

API = "2024-09-19-preview"
OPERATION_STATES = {"InProgress", "Succeeded", "Failed", "Canceled"}
PROVISIONING_STATES = {"Unknown", "Succeeded", "Failed", "Canceled", "Creating", "Deleting", "Updating"}


def account_key(emulator) -> str:
    return emulator.account_keys[emulator.env["STORAGE_ACCOUNT_NAME"]]


def parse(resource_id: str) -> tuple[str, str]:
    match = re.search(r"/resourceGroups/([^/]+)/.*/managedCCFs/([^/]+)$", resource_id)
    return match.group(1), match.group(2)


def shares(emulator, prefix: str) -> list[str]:
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    return [s.name for s in service.list_shares(name_starts_with=prefix)]


def url(emulator, path: str, api: str = API) -> str:
    return f"{emulator.env['ARM_ENDPOINT']}{path}?api-version={api}"


def arm_headers():
    return bearer("https://management.azure.com/.default")


def test_get_seeded_instance_matches_the_spec_shape(emulator):
    rg, app = parse(emulator.targets[0])
    resource = mgmt_client(emulator).managed_ccf.get(rg, app)
    assert resource.id == emulator.targets[0]
    assert resource.type == "Microsoft.ConfidentialLedger/managedCCFs"
    assert resource.properties.app_name == app
    assert resource.properties.provisioning_state in PROVISIONING_STATES
    assert resource.properties.provisioning_state == "Succeeded"


def test_backup_with_the_generated_client_writes_real_ledger_chunks(emulator):
    rg, app = new_instance(emulator)
    before = set(shares(emulator, app))
    poller = mgmt_client(emulator).managed_ccf.begin_backup(
        rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator), restore_region="eastus")
    )
    assert poller.result().message == f"Backup Created for ManagedCCF App : {app}."
    (share,) = set(shares(emulator, app)) - before
    assert re.fullmatch(rf"{app}-\d{{14}}", share)
    fixture = emulator.arm.get(
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/"
        f"providers/Microsoft.ConfidentialLedger/managedCCFs/{app}"
    )["ledger"]["fixture"]
    client = ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(share)
    assert {i.name for i in client.list_directories_and_files()} == {"ledger", "snapshots"}
    first_chunk = committed_chunks(fixture)[0]
    written = client.get_file_client(f"ledger/{first_chunk.name}").download_file().readall()
    assert written == first_chunk.read_bytes()


def test_later_backups_hold_at_least_as_many_chunks(emulator):
    rg, app = parse(emulator.targets[0])  # expired_service: three chunks, two live at seed time
    counts = []
    for _ in range(3):
        mgmt_client(emulator).managed_ccf.begin_backup(
            rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
        ).result()
        newest = sorted(shares(emulator, app))[-1]
        share = ShareServiceClient.from_connection_string(emulator.connection_string()).get_share_client(newest)
        counts.append(len(list(share.list_directories_and_files("ledger"))))
    assert counts == sorted(counts) and counts[-1] == 3


def test_backup_follows_the_arm_async_protocol(emulator):
    rg, app = new_instance(emulator)
    emulator.arm.options.operation_seconds = 1.0
    try:
        response = requests.post(
            url(
                emulator,
                f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/"
                f"{rg}/providers/Microsoft.ConfidentialLedger/managedCCFs/{app}/backup",
            ),
            json={"uri": file_service_sas_url(emulator)},
            headers=arm_headers(),
            timeout=10,
        )
    finally:
        emulator.arm.options.operation_seconds = 0.3
    assert response.status_code == 202
    status_url, location = response.headers["Azure-AsyncOperation"], response.headers["Location"]
    assert int(response.headers["Retry-After"]) >= 0
    assert "/operationStatuses/" in status_url and "/operationResults/" in location
    first = requests.get(status_url, headers=arm_headers(), timeout=5)
    assert first.json()["status"] == "InProgress"
    assert requests.get(location, headers=arm_headers(), timeout=5).status_code == 202
    deadline = time.time() + 10
    while (body := requests.get(status_url, headers=arm_headers(), timeout=5).json())["status"] == "InProgress":
        assert time.time() < deadline
        time.sleep(0.1)
    assert body["status"] in OPERATION_STATES and body["status"] == "Succeeded"
    assert body["startTime"] <= body["endTime"]
    final = requests.get(location, headers=arm_headers(), timeout=5)
    assert final.status_code == 200 and final.json() == {"message": f"Backup Created for ManagedCCF App : {app}."}


def test_arm_pipeline_polls_the_backup_to_completion(emulator):
    from azure.core.polling import LROPoller
    from azure.mgmt.core.polling.arm_polling import ARMPolling

    rg, app = new_instance(emulator)
    client = arm_pipeline(emulator)
    path = (
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/providers/"
        f"Microsoft.ConfidentialLedger/managedCCFs/{app}/backup"
    )
    initial = client.send_request(
        HttpRequest("POST", url(emulator, path), json={"uri": file_service_sas_url(emulator)}),
        _return_pipeline_response=True,
    )
    poller = LROPoller(
        client,
        initial,
        lambda pipeline_response: pipeline_response.http_response.json(),
        ARMPolling(0, lro_options={"final-state-via": "location"}),
    )
    assert poller.result() == {"message": f"Backup Created for ManagedCCF App : {app}."}


def test_paths_match_case_insensitively(emulator):
    rg, app = parse(emulator.targets[1])
    path = (
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourcegroups/{rg}/providers/"
        f"microsoft.confidentialledger/ManagedCCFs/{app}"
    )
    response = requests.get(url(emulator, path), headers=arm_headers(), timeout=5)
    assert response.status_code == 200 and response.json()["name"] == app


@pytest.mark.parametrize(
    "api", ["2023-06-28-preview", "2024-07-09-preview", "2024-09-19-preview", "2025-06-10-preview"]
)
def test_every_supported_api_version_answers(emulator, api):
    rg, app = parse(emulator.targets[1])
    response = requests.get(
        url(
            emulator,
            f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/"
            f"providers/Microsoft.ConfidentialLedger/managedCCFs/{app}",
            api,
        ),
        headers=arm_headers(),
        timeout=5,
    )
    assert response.status_code == 200
    assert ("enclavePlatform" in response.json()["properties"]) == (api >= "2024-09-19-preview")


def test_unknown_api_version_is_refused_as_arm_does(emulator):
    path = emulator.targets[0]
    response = requests.get(url(emulator, path, "2021-01-01"), headers=arm_headers(), timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidApiVersionParameter"
    missing = requests.get(f"{emulator.env['ARM_ENDPOINT']}{path}", headers=arm_headers(), timeout=5)
    assert missing.json()["error"]["code"] == "MissingApiVersionParameter"


def test_bearer_token_is_required(emulator):
    response = requests.get(url(emulator, emulator.targets[0]), timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    assert response.json()["error"]["code"] == "AuthenticationFailed"


def test_token_for_another_audience_is_refused(emulator):
    response = requests.get(
        url(emulator, emulator.targets[0]), headers=bearer("https://vault.azure.net/.default"), timeout=5
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationTokenAudience"


def test_forged_token_is_refused(emulator):
    token = arm_headers()["Authorization"]
    forged = token[:-8] + ("AAAAAAAA" if not token.endswith("AAAAAAAA") else "BBBBBBBB")
    response = requests.get(url(emulator, emulator.targets[0]), headers={"Authorization": forged}, timeout=5)
    assert response.status_code == 401 and response.json()["error"]["code"] == "InvalidAuthenticationToken"


def test_denied_identity_gets_authorization_failed(emulator):
    emulator.deny(emulator.system_identity.client_id, {"Microsoft.ConfidentialLedger/managedCCFs/backup/action"})
    rg, app = parse(emulator.targets[0])
    client = mgmt_client(emulator)
    assert client.managed_ccf.get(rg, app).name == app  # reading is still allowed
    with pytest.raises(HttpResponseError) as info:
        client.managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator)))
    assert info.value.status_code == 403 and info.value.error.code == "AuthorizationFailed"
    assert "backup/action" in info.value.error.message


@pytest.mark.parametrize("missing", ["uri", "fileShareName", "restoreRegion"])
def test_restore_requires_uri_share_name_and_region(emulator, missing):
    rg, app = new_instance(emulator)
    path = (
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/providers/"
        f"Microsoft.ConfidentialLedger/managedCCFs/{app}/restore"
    )
    body = {"uri": file_service_sas_url(emulator), "fileShareName": f"{app}-20260101000000", "restoreRegion": "eastus"}
    del body[missing]
    response = requests.post(url(emulator, path), json=body, headers=arm_headers(), timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "InvalidRequestContent"
    assert missing in response.json()["error"]["message"]


def test_backup_requires_uri(emulator):
    rg, app = parse(emulator.targets[1])
    path = (
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/providers/"
        f"Microsoft.ConfidentialLedger/managedCCFs/{app}/backup"
    )
    response = requests.post(url(emulator, path), json={"restoreRegion": "eastus"}, headers=arm_headers(), timeout=5)
    assert response.status_code == 400 and "uri" in response.json()["error"]["message"]


def test_restore_while_the_instance_exists_is_a_conflict(emulator):
    rg, app = parse(emulator.targets[0])
    with pytest.raises(HttpResponseError) as info:
        restore(emulator, rg, app, f"{app}-20260101000000")
    assert info.value.status_code == 409


def restore(emulator, rg: str, app: str, share: str, permission: str = "rwdlc"):
    request = ManagedCCFRestore(
        uri=file_service_sas_url(emulator, permission), file_share_name=share, restore_region="eastus"
    )
    return mgmt_client(emulator).managed_ccf.begin_restore(rg, app, request)


def backup_then_delete(emulator) -> tuple[str, str, str]:
    rg, app = new_instance(emulator)
    client = mgmt_client(emulator)
    client.managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))).result()
    (share,) = shares(emulator, app)
    client.managed_ccf.begin_delete(rg, app).result()
    with pytest.raises(ResourceNotFoundError):
        client.managed_ccf.get(rg, app)
    return rg, app, share


def test_restore_after_delete_recreates_the_instance(emulator):
    rg, app, share = backup_then_delete(emulator)
    client = mgmt_client(emulator)
    poller = restore(emulator, rg, app, share, permission="rl")
    assert client.managed_ccf.get(rg, app).properties.provisioning_state == "Creating"
    assert poller.result().message == f"Restore Created for ManagedCCF App : {app}."
    restored = client.managed_ccf.get(rg, app)
    assert restored.properties.provisioning_state == "Succeeded"
    record = emulator.arm.get(restored.id)
    assert record["restoredFrom"]["fileShareName"] == share


def test_restore_of_a_backup_older_than_90_days_fails(emulator):
    rg, app, share = backup_then_delete(emulator)
    emulator.clock.advance(days=91)
    with pytest.raises(HttpResponseError) as info:
        restore(emulator, rg, app, share).result()
    assert info.value.error.code == "BackupTooOld"
    with pytest.raises(ResourceNotFoundError):
        mgmt_client(emulator).managed_ccf.get(rg, app)


def test_restore_of_a_missing_share_fails_clearly(emulator):
    rg, app, _ = backup_then_delete(emulator)
    with pytest.raises(HttpResponseError) as info:
        restore(emulator, rg, app, f"{app}-19990101000000").result()
    assert info.value.error.code == "FileShareNotFound"


def test_restore_needs_the_same_app_name(emulator):
    rg, app, share = backup_then_delete(emulator)
    with pytest.raises(HttpResponseError) as info:
        restore(emulator, rg, f"{app}x", share).result()
    assert info.value.error.code == "AppNameMismatch"


@pytest.mark.parametrize(
    "problem", ["bad-signature", "expired", "no-create-permission", "objects-only", "blob-service", "other-key"]
)
def test_backup_with_an_unusable_sas_fails_the_operation(emulator, problem):
    rg, app = new_instance(emulator)
    if problem == "bad-signature":
        uri = re.sub(r"sig=[^&]+", "sig=AAAA", file_service_sas_url(emulator))
    elif problem == "expired":
        uri = file_service_sas_url(emulator, minutes=-5)
    elif problem == "no-create-permission":
        uri = file_service_sas_url(emulator, "rl")
    elif problem == "objects-only":
        uri = file_service_sas_url(emulator, resource_types=ResourceTypes(object=True))
    elif problem == "blob-service":
        signer = SharedAccessSignature(emulator.env["STORAGE_ACCOUNT_NAME"], account_key(emulator))
        sas = signer.generate_account(
            "b",
            ResourceTypes(container=True, object=True),
            AccountSasPermissions(create=True, write=True),
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
        )
        uri = f"{emulator.file_endpoint}?{sas}"
    else:
        other = base64.b64encode(b"k" * 64).decode()
        sas = generate_account_sas(
            emulator.env["STORAGE_ACCOUNT_NAME"],
            other,
            ResourceTypes(container=True, object=True),
            AccountSasPermissions(create=True, write=True),
            dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=5),
        )
        uri = f"{emulator.file_endpoint}?{sas}"
    with pytest.raises(HttpResponseError) as info:
        mgmt_client(emulator).managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=uri)).result()
    assert info.value.error.code == "StorageAccessDenied"
    signature = re.search(r"sig=([^&]+)", uri).group(1)
    assert signature not in str(info.value) and signature not in info.value.error.message
    assert shares(emulator, app) == []


def test_backup_uri_must_be_https(emulator):
    rg, app = new_instance(emulator)
    http_uri = file_service_sas_url(emulator).replace("https://", "http://")
    with pytest.raises(HttpResponseError) as info:
        mgmt_client(emulator).managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=http_uri))
    assert info.value.status_code == 400 and info.value.error.code == "InvalidSasUri"


def test_injected_operation_failure_and_cancellation(emulator):
    rg, app = new_instance(emulator)
    emulator.faults.fail_next_operation("backup", "LedgerUnavailable", "The ledger nodes are unreachable.")
    with pytest.raises(HttpResponseError) as info:
        mgmt_client(emulator).managed_ccf.begin_backup(
            rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
        ).result()
    assert info.value.error.code == "LedgerUnavailable"
    emulator.faults.fail_next_operation("backup", "OperationCanceled", "Canceled.", status="Canceled")
    with pytest.raises(HttpResponseError):
        mgmt_client(emulator).managed_ccf.begin_backup(
            rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator))
        ).result()
    statuses = [o["status"] for o in emulator.arm.operations.values() if app in o["resource"] and o["kind"] == "backup"]
    assert statuses == ["Failed", "Canceled"]
    assert shares(emulator, app) == []


def test_a_second_backup_while_one_runs_is_a_conflict(emulator):
    rg, app = new_instance(emulator)
    client = mgmt_client(emulator)
    emulator.arm.options.operation_seconds = 2
    try:
        client.managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator)))
        with pytest.raises(HttpResponseError) as info:
            client.managed_ccf.begin_backup(rg, app, ManagedCCFBackup(uri=file_service_sas_url(emulator)))
        assert info.value.status_code == 409
    finally:
        emulator.arm.options.operation_seconds = 0.3


def test_http_faults_status_drop_and_hang(emulator):
    target = url(emulator, emulator.targets[0])
    only_this = re.escape(emulator.targets[0]) + "$"  # background pollers of earlier tests must not eat the faults
    emulator.faults.fail_next("arm", 503, count=2, retry_after=3, path=only_this)
    for _ in range(2):
        response = requests.get(target, headers=arm_headers(), timeout=5)
        assert response.status_code == 503 and response.headers["Retry-After"] == "3"
        assert response.json()["error"]["code"] == "ServiceUnavailable"
    assert requests.get(target, headers=arm_headers(), timeout=5).status_code == 200
    emulator.faults.drop_next("arm", path=only_this)
    with pytest.raises(requests.ConnectionError):
        requests.get(target, headers=arm_headers(), timeout=5)
    emulator.faults.hang_next("arm", 2.0, path=only_this)
    with pytest.raises(requests.Timeout):
        requests.get(target, headers=arm_headers(), timeout=0.5)


def test_retry_policy_rides_out_transient_failures(emulator):
    rg, app = parse(emulator.targets[0])
    emulator.faults.fail_next("arm", 429, count=2, retry_after=1, method="GET", path="/managedCCFs/")
    started = time.monotonic()
    assert mgmt_client(emulator).managed_ccf.get(rg, app).name == app
    assert time.monotonic() - started >= 2  # Retry-After was honoured twice


def test_create_list_and_delete(emulator):
    rg = f"rg-{uuid.uuid4().hex[:6]}"
    _, app = new_instance(emulator, rg=rg)
    client = mgmt_client(emulator)
    assert [r.name for r in client.managed_ccf.list_by_resource_group(rg)] == [app]
    assert app in {r.name for r in client.managed_ccf.list_by_subscription()}
    client.managed_ccf.begin_delete(rg, app).result()
    assert list(client.managed_ccf.list_by_resource_group(rg)) == []
    response = requests.delete(
        url(
            emulator,
            f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/"
            f"{rg}/providers/Microsoft.ConfidentialLedger/managedCCFs/{app}",
        ),
        headers=arm_headers(),
        timeout=5,
    )
    assert response.status_code == 204


def test_ledgers_share_the_backup_api(emulator):
    rg, name = "rg-ledgers", f"ledger-{uuid.uuid4().hex[:6]}"
    base = (
        f"/subscriptions/{emulator.env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{rg}/providers/"
        "Microsoft.ConfidentialLedger/ledgers/" + name
    )
    api = "2025-06-10-preview"
    created = requests.put(
        url(emulator, base, api),
        json={"location": "eastus", "properties": {"ledgerType": "Public"}},
        headers=arm_headers(),
        timeout=5,
    )
    assert created.status_code == 201 and created.json()["properties"]["ledgerName"] == name
    time.sleep(0.4)
    assert (
        requests.get(url(emulator, base, api), headers=arm_headers(), timeout=5).json()["properties"][
            "provisioningState"
        ]
        == "Succeeded"
    )
    backup = requests.post(
        url(emulator, base + "/backup", api),
        json={"uri": file_service_sas_url(emulator)},
        headers=arm_headers(),
        timeout=5,
    )
    assert backup.status_code == 202
    time.sleep(0.4)
    assert (
        requests.get(backup.headers["Azure-AsyncOperation"], headers=arm_headers(), timeout=5).json()["status"]
        == "Succeeded"
    )
    assert len(shares(emulator, name)) == 1


def test_latency_per_route_delays_only_that_route(emulator):
    emulator.faults.set_latency("arm", 0.5, path=re.escape(emulator.targets[1]) + "$")
    fast_started = time.monotonic()
    requests.get(url(emulator, emulator.targets[0]), headers=arm_headers(), timeout=5)
    fast = time.monotonic() - fast_started
    slow_started = time.monotonic()
    requests.get(url(emulator, emulator.targets[1]), headers=arm_headers(), timeout=5)
    slow = time.monotonic() - slow_started
    assert slow >= 0.5 > fast
