"""Every ARM exchange of this test session, replayed through Microsoft's validator ``oav``.

Named ``zz`` so pytest runs it after the other emulator tests and sees their traffic; ``make test``
runs the rest of the suite on several workers first, each recording into ARM_TRAFFIC_DIR, and then
this file alone, which reads every worker's recordings. It also drives
one full scenario per api-version itself, so it proves something when run alone. ``oav`` cannot
check the async headers or whether enum values are in range (enums are modelAsString), so those are
checked here in Python against the same swagger.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from .helpers import bearer, file_service_sas_url

REPO = Path(__file__).resolve().parents[2]
OAV = REPO / "tools" / "oav" / "node_modules" / ".bin" / "oav"
SPECS = (
    REPO
    / "tests"
    / "specs"
    / "specification"
    / "confidentialledger"
    / "resource-manager"
    / ("Microsoft.ConfidentialLedger/ConfidentialLedger")
)
SPEC_FILES = {
    "2023-06-28-preview": SPECS / "preview" / "2023-06-28-preview" / "managedccf.json",
    "2024-07-09-preview": SPECS / "preview" / "2024-07-09-preview" / "managedccf.json",
    "2024-09-19-preview": SPECS / "preview" / "2024-09-19-preview" / "managedccf.json",
    "2025-06-10-preview": SPECS / "2025-06-10-preview" / "openapi.json",
}
# Only the 2025 document describes .../ledgers; the older ledger swaggers are not in tests/specs.
LEDGER_VERSIONS = {"2025-06-10-preview"}
# oav 4.0.3's npm package lacks the HTML report template; the JSON report is complete without it.
KNOWN_REPORT_ERROR = "baseLayout.mustache"


def drive_scenario(emulator, api: str) -> None:
    """Create, read, list, back up, delete and restore one instance with this api-version."""
    sub = emulator.env["AZURE_SUBSCRIPTION_ID"]
    rg, app = "rg-spec", f"spec-{api[:10].replace('-', '')}"
    base = (
        f"{emulator.env['ARM_ENDPOINT']}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ConfidentialLedger"
    )
    headers = bearer("https://management.azure.com/.default")

    def call(method: str, path: str, body: dict | None = None) -> requests.Response:
        return requests.request(method, f"{base}{path}?api-version={api}", json=body, headers=headers, timeout=10)

    def wait(response: requests.Response) -> None:
        deadline = time.time() + 10
        while (
            requests.get(response.headers["Azure-AsyncOperation"], headers=headers, timeout=5).json()["status"]
            == "InProgress"
        ):
            assert time.time() < deadline
            time.sleep(0.1)

    created = call("PUT", f"/managedCCFs/{app}", {"location": "eastus", "properties": {"nodeCount": 3}})
    assert created.status_code in (200, 201)
    if created.status_code == 201:
        wait(created)
    assert call("GET", f"/managedCCFs/{app}").status_code == 200
    assert call("GET", "/managedCCFs/does-not-exist").status_code == 404
    assert call("GET", "/managedCCFs").status_code == 200
    backup = call(
        "POST", f"/managedCCFs/{app}/backup", {"uri": file_service_sas_url(emulator), "restoreRegion": "eastus"}
    )
    assert backup.status_code == 202
    wait(backup)
    share = emulator.arm.operations[backup.headers["Location"].split("/")[-1].split("?")[0]]["result"]["fileShareName"]
    wait(call("DELETE", f"/managedCCFs/{app}"))
    restore = call(
        "POST",
        f"/managedCCFs/{app}/restore",
        {"uri": file_service_sas_url(emulator, "rl"), "fileShareName": share, "restoreRegion": "eastus"},
    )
    assert restore.status_code == 202
    wait(restore)
    assert call("POST", f"/managedCCFs/{app}/restore", {"uri": "x"}).status_code == 400
    wait(call("DELETE", f"/managedCCFs/{app}"))


def recorded(paths: list[Path]) -> list[tuple[Path, dict]]:
    return [(path, json.loads(path.read_text())) for path in paths]


def api_version(entry: dict) -> str:
    return parse_qs(urlsplit(entry["liveRequest"]["url"]).query).get("api-version", [""])[0]


def run_oav(traffic: Path, spec: Path, out: Path) -> tuple[dict, str]:
    report = out / "report.json"
    result = subprocess.run(
        [
            str(OAV),
            "validate-traffic",
            str(traffic),
            str(spec),
            f"--report={out / 'report.html'}",
            f"--jsonReport={report}",
            "--logLevel=error",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=out,
    )
    output = result.stdout + result.stderr
    assert "Undefined operation" not in output, output[-3000:]
    assert "Exception when loading spec" not in output, output[-3000:]
    fatal = [line for line in output.splitlines() if "fatal error" in line and KNOWN_REPORT_ERROR not in line]
    assert not fatal, fatal
    assert report.exists(), f"oav wrote no JSON report:\n{output[-3000:]}"
    return json.loads(report.read_text()), output


@pytest.mark.skipif(not OAV.exists(), reason="oav is installed by `make test` (tools/oav)")
def test_recorded_arm_traffic_conforms_to_the_official_swagger(emulator, recorded_traffic, tmp_path):
    for api in SPEC_FILES:
        drive_scenario(emulator, api)
    entries = recorded(recorded_traffic())
    # Requests the tests sent malformed on purpose (answered 400) may break the request schema; their
    # responses must still conform. They are validated apart, so that request errors elsewhere still fail.
    groups: dict[tuple[str, bool], list[Path]] = {}
    for path, entry in entries:
        version = api_version(entry)
        if version not in SPEC_FILES:  # unsupported api-version: refused before routing; no swagger to check
            assert entry["liveResponse"]["statusCode"] == "400", path.name
            continue
        if "/ledgers" in entry["liveRequest"]["url"].lower() and version not in LEDGER_VERSIONS:
            continue
        groups.setdefault((version, entry["liveResponse"]["statusCode"] == "400"), []).append(path)
    checked = 0
    for (version, refused), paths in sorted(groups.items()):
        folder = tmp_path / f"{version}-{'refused' if refused else 'accepted'}"
        (folder / "traffic").mkdir(parents=True)
        for path in paths:  # each emulator numbers its recordings: keep the folder in the name
            shutil.copy(path, folder / "traffic" / f"{path.parent.name}-{path.name}")
        report, _ = run_oav(folder / "traffic", SPEC_FILES[version], folder)
        errors = [e for e in report["errors"] if not (refused and e["issueSource"] == "request")]
        assert errors == [], json.dumps(errors, indent=1)[:5000]
        if not refused:
            assert report["failedOperations"] == 0
            passed = {op for item in report["passedOperationsList"] for op in item["operationIds"]}
            assert {
                "ManagedCCF_Get",
                "ManagedCCF_Backup",
                "ManagedCCF_Restore",
                "ManagedCCF_Delete",
                "ManagedCCF_Create",
                "ManagedCCF_ListByResourceGroup",
            } <= passed, (version, passed)
        checked += len(paths)
    assert checked >= 9 * len(SPEC_FILES)  # at least the scenarios driven above


def spec_enum(version: str, name: str) -> set[str]:
    return set(json.loads(SPEC_FILES[version].read_text())["definitions"][name]["enum"])


def test_async_headers_and_enum_values_follow_the_spec(emulator, recorded_traffic):
    drive_scenario(emulator, "2024-09-19-preview")
    accepted = 0
    for path, entry in recorded(recorded_traffic()):
        version, response = api_version(entry), entry["liveResponse"]
        body = response["body"]
        if isinstance(body, dict) and isinstance(body.get("properties"), dict):
            properties = body["properties"]
            if "provisioningState" in properties and version in SPEC_FILES:
                assert properties["provisioningState"] in spec_enum(version, "ProvisioningState"), path.name
            if "runningState" in properties:
                assert properties["runningState"] in spec_enum(version, "RunningState"), path.name
        if response["statusCode"] == "202" and entry["liveRequest"]["method"] in ("POST", "DELETE"):
            accepted += 1
            headers = {k.lower(): v for k, v in response["headers"].items()}
            for name in ("azure-asyncoperation", "location"):
                assert headers[name].startswith("https://") and "api-version=" in headers[name], path.name
            assert int(headers["retry-after"]) >= 0
        assert "authorization" not in {k.lower() for k in entry["liveRequest"]["headers"]}
        assert "sig=REDACTED" in json.dumps(entry["liveRequest"]["body"]) or "sig=" not in json.dumps(
            entry["liveRequest"]["body"]
        )
    assert accepted >= 4
    statuses = {o["status"] for o in emulator.arm.operations.values()}
    assert statuses <= {"InProgress", "Succeeded", "Failed", "Canceled"}
