"""The Logic App samples call routes the API document has, with bodies its schemas accept."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCUMENT = json.loads((REPO / "functions" / "openapi.json").read_text())


def http_actions(node: dict):
    for name, action in node.get("actions", {}).items():
        if action.get("type") == "Http":
            yield name, action
        yield from http_actions(action)
        yield from http_actions(action.get("else", {}))


def test_samples_use_documented_routes_and_fields():
    samples = sorted((REPO / "infra" / "logicapp").glob("*.json"))
    assert {p.name for p in samples} == {
        "backup-before-change.json",
        "restore-with-approval.json",
        "restore-before-transaction.json",
    }
    for path in samples:
        definition = json.loads(path.read_text())["definition"]
        assert definition["$schema"].endswith("workflowdefinition.json#")
        actions = list(http_actions(definition))
        assert actions, path.name
        for name, action in actions:
            inputs = action["inputs"]
            route = "/" + inputs["uri"].split("/")[-1]
            operation = DOCUMENT["paths"][route][inputs["method"].lower()]
            schema_name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            allowed = DOCUMENT["components"]["schemas"][schema_name]["properties"]
            assert set(inputs["body"]) <= set(allowed), (path.name, name)
            assert inputs["queries"]["code"] == "@parameters('functionKey')"
            assert definition["parameters"]["functionKey"]["type"] == "SecureString"


def test_the_backup_sample_is_an_http_swagger_action_on_the_2_0_document():
    """Logic Apps' HTTP + Swagger action: the designer reads the operation from metadata.apiDefinitionUrl."""
    from functions.openapi_v2 import to_swagger2

    swagger = to_swagger2(DOCUMENT)
    definition = json.loads((REPO / "infra" / "logicapp" / "backup-before-change.json").read_text())["definition"]
    (name, action), *_ = http_actions(definition)
    assert action["metadata"] == {
        "apiDefinitionUrl": "https://<function app>.azurewebsites.net/api/swagger.json",
        "swaggerSource": "custom",
    }
    route = "/" + action["inputs"]["uri"].rsplit("}/", 1)[1]  # "@{parameters('mccfBackupApi')}/backups"
    operation = swagger["paths"][route][action["inputs"]["method"].lower()]
    assert operation["operationId"] == "StartBackup" and "202" in operation["responses"]
