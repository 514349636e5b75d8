"""infra/*.bicep parses, passes checkov's policy scan, and grants and alerts on what the code really does.

checkov reports a file it cannot parse only in its JSON summary and then checks nothing in it, so the
scan runs over a copy of infra/ with two canaries: a file that does not parse and one that breaks a
policy. Both must be reported, and nothing else may be: that proves the scan parsed and checked the
real files rather than passing them silently.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from lark.exceptions import LarkError

from functions.timer import scheduled_backup
from mccf_backup import events, rbac

from .bicep import BICEP_FILES, INFRA, REPO, main, module_config, parsed

CHECKOV = REPO / "tools" / "checkov" / ".venv" / "bin" / "checkov"
INSECURE_CANARY = """resource canary 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'stcanary'
  location: 'westeurope'
  kind: 'StorageV2'
  sku: { name: 'Standard_GRS' }
  properties: {
    supportsHttpsTrafficOnly: false
    minimumTlsVersion: 'TLS1_0'
  }
}
"""
BROKEN_CANARY = "resource canary 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n  name: 'x'\n"


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path):
    template = parsed(path)
    assert template["resources"] or template.get("modules"), f"{path.name} declares nothing"


def test_the_parser_rejects_broken_bicep(tmp_path: Path):
    broken = tmp_path / "broken.bicep"
    broken.write_text(BROKEN_CANARY)
    with pytest.raises(LarkError):
        parsed(broken)


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory) -> dict:
    if not CHECKOV.exists():
        pytest.fail("checkov is not installed: run `make test`, which installs it into tools/checkov/.venv")
    root = tmp_path_factory.mktemp("scan") / "infra"
    shutil.copytree(INFRA, root)
    (root / "zz-canary").mkdir()
    (root / "zz-canary" / "insecure.bicep").write_text(INSECURE_CANARY)
    (root / "zz-canary" / "broken.bicep").write_text(BROKEN_CANARY)
    run = subprocess.run(
        [str(CHECKOV), "-d", str(root), "--framework", "bicep", "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.stdout.strip(), f"checkov printed nothing (exit {run.returncode}): {run.stderr[-2000:]}"
    report = json.loads(run.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["bicep"]
    return reports[0]


def test_checkov_parses_every_real_file(checkov_report: dict):
    errors = [Path(p).name for p in checkov_report["results"]["parsing_errors"]]
    assert errors == ["broken.bicep"], f"checkov could not parse (so it checked nothing in): {errors}"
    assert checkov_report["summary"]["parsing_errors"] == 1


def test_checkov_finds_no_unsuppressed_failure(checkov_report: dict):
    failed = checkov_report["results"]["failed_checks"]
    real = [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed]
    real = [line for line in real if "zz-canary" not in line]
    assert not real, "fix these or suppress them inline with a reason:\n" + "\n".join(real)
    canary = {c["check_id"] for c in failed if "zz-canary" in c["file_path"]}
    assert {"CKV_AZURE_3", "CKV_AZURE_44"} <= canary, f"the scan missed the canary's violations: {canary}"


def test_every_suppression_gives_a_reason(checkov_report: dict):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped, "expected the inline suppressions of infra/main.bicep"
    for check in skipped:
        reason = check["check_result"].get("suppress_comment", "")
        assert len(reason.split()) >= 5, f"{check['check_id']} on {check['resource']} is suppressed without a reason"


MODULES = INFRA / "modules"
# What the code calls (mccf_backup.rbac, which the preflight also checks against ARM's answer).
READ_BACKUP_RESTORE = {action for kind in rbac.RESOURCE_TYPES for action in rbac.read_backup_restore(kind)}
DELETE = {action for kind in rbac.RESOURCE_TYPES for action in rbac.delete_for_replace(kind)}


def test_custom_role_grants_only_what_the_app_calls():
    role = parsed(MODULES / "mccf-role.bicep")
    assert set(role["variables"]["readBackupRestore"]["value"]) == READ_BACKUP_RESTORE
    assert set(role["variables"]["deleteForReplace"]["value"]) == DELETE
    permissions = role["resources"]["role"]["config"]["properties"]["permissions"][0]
    actions = json.dumps(permissions["actions"])
    # delete is granted only through the allowReplaceRestore condition
    assert "allowReplaceRestore" in actions and "deleteForReplace" in actions
    assert not permissions["notActions"] and "*" not in json.dumps(role["variables"])
    passed = module_config(main(), "mccfRoles")["params"]
    assert passed["allowReplaceRestore"] == "allowReplaceRestore"
    assignment = module_config(main(), "mccfRoleAssignments")
    assert "targetResourceGroupIds" in json.dumps(main()["modules"]["mccfRoleAssignments"]) and assignment


def test_deploy_doc_documents_each_action_of_the_role():
    doc = (REPO / "docs" / "deploy.md").read_text()
    for action in READ_BACKUP_RESTORE | DELETE:
        assert f"`{action}`" in doc, action
    assert "az provider operation show --namespace Microsoft.ConfidentialLedger" in doc


def test_alert_rules_watch_events_and_functions_that_exist():
    alerts = parsed(MODULES / "alerts.bicep")
    rules = alerts["variables"]["rules"]["value"]
    queried_events = set()
    for rule in rules:
        queried_events |= set(re.findall(r'event == "([a-z_.]+)"', rule["query"]))
    assert queried_events <= set(events.ALL), queried_events - set(events.ALL)
    assert {events.BACKUP_FAILURE, events.HEALTH_RPO_BREACH, events.RESTORE_ATTEMPT} <= queried_events
    failed_run = next(rule for rule in rules if rule["name"] == "scheduled-backup-failed")
    function_name = scheduled_backup.build().get_function_name()
    assert f'requests | where name == "{function_name}" and success == false' in failed_run["query"]
    assert f"substring(message, {len(events.PREFIX) + 1})" in alerts["variables"]["eventsQuery"]["value"]


def test_logic_app_module_passes_every_workflow_parameter():
    module = parsed(MODULES / "logic-apps.bicep")
    for resource, sample in (
        ("backupWorkflow", "backup-before-change.json"),
        ("restoreWorkflow", "restore-with-approval.json"),
        ("restoreBeforeWorkflow", "restore-before-transaction.json"),
    ):
        wanted = json.loads((INFRA / "logicapp" / sample).read_text())["definition"]["parameters"]
        given = {name.strip("'") for name in module["resources"][resource]["config"]["properties"]["parameters"]}
        assert set(given) == set(wanted), (sample, set(wanted) ^ set(given))
        assert sample in json.dumps(module["variables"])


def test_only_the_swagger_is_anonymous_and_no_easy_auth_stands_in_front():
    """The OpenAPI 2.0 document is the one route without a key (the Logic Apps designer fetches it
    from the portal page, CORS allowing it). There is no App Service Authentication: the app checks
    Entra ID tokens itself, on every plan, and Easy Auth's Return401 would refuse the Logic Apps."""
    from function_app import app
    from devhost.devserver import functions_of

    anonymous = set()
    for function in functions_of(app):
        trigger = function.get_trigger().get_dict_repr()
        if trigger.get("type") == "httpTrigger" and str(trigger.get("authLevel")).lower().endswith("anonymous"):
            anonymous.add("/api/" + trigger["route"])
    assert anonymous == {"/api/swagger.json"}
    resources = main()["resources"]
    cors = resources["app"]["config"]["properties"]["siteConfig"]["cors"]["allowedOrigins"]
    assert set(cors) == {"https://portal.azure.com", "https://ms.portal.azure.com"}
    assert "authsettings" not in (INFRA / "main.bicep").read_text().lower()
    text = (INFRA / "main.bicep").read_text()
    for line in (
        "AUTH_CLIENT_ID: authClientId",
        "AUTH_TENANT_ID: subscription().tenantId",
        "AUTH_AUTHORITY_HOST: environment().authentication.loginEndpoint",
    ):
        assert line in text


def _api_calls(actions: dict) -> list[dict]:
    """The workflow's HTTP actions that call the mccf-backup API, however deeply nested."""
    found = []
    for action in actions.values():
        if action["type"] == "Http" and "mccfBackupApi" in action["inputs"]["uri"]:
            found.append(action)
        for nested in (action.get("actions"), action.get("else", {}).get("actions")):
            found += _api_calls(nested or {})
    return found


@pytest.mark.parametrize(
    "sample", ["backup-before-change.json", "restore-with-approval.json", "restore-before-transaction.json"]
)
def test_the_logic_apps_send_their_identitys_token_exactly_when_entra_id_guards_the_api(sample):
    """Each call to the API carries the identity line the module removes when authClientId is empty:
    with it, a managed-identity token for api://<AUTH_CLIENT_ID>; without it, the function key alone."""
    module_text = (MODULES / "logic-apps.bicep").read_text()
    line = re.search(r"var identityAuthentication = '(.*)'\n", module_text).group(1).replace("\\'", "'")
    text = (INFRA / "logicapp" / sample).read_text()
    with_identity = json.loads(text)["definition"]
    calls = _api_calls(with_identity["actions"])
    assert calls and text.count(line) == len(calls)
    for call in calls:
        assert call["inputs"]["authentication"] == {
            "type": "ManagedServiceIdentity",
            "audience": "@parameters('apiAudience')",
        }
        assert call["inputs"]["queries"]["code"] == "@parameters('functionKey')"  # the host's key, always
    assert with_identity["parameters"]["apiAudience"]["defaultValue"] == ""
    key_only = json.loads(text.replace(line, ""))["definition"]
    assert all("authentication" not in call["inputs"] for call in _api_calls(key_only["actions"]))
    module = parsed(MODULES / "logic-apps.bicep")
    for resource in ("backupWorkflow", "restoreWorkflow", "restoreBeforeWorkflow"):
        assert module["resources"][resource]["config"]["identity"]["type"] == "SystemAssigned"
    assert "apiAudience: empty(authClientId) ? '' : 'api://${authClientId}'" in (INFRA / "main.bicep").read_text()
