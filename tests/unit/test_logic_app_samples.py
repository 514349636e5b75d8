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


# --- every caller gets an answer, and none waits past Logic Apps' 120 s inbound limit ---
LONG = {"Http", "ApiConnection", "ApiConnectionWebhook", "Workflow", "Function"}
OUTCOMES = ("Succeeded", "Failed", "TimedOut")


class Run:
    """One run of a workflow's actions for one sequence of outcomes (a long action's status, or an If's
    branch), with Logic Apps' rules: an action runs when each action in its runAfter ended in a listed
    status, else it is Skipped; a Response is recorded with whether long work ran before it."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices, self.used, self.long_done, self.responses = list(choices), 0, False, []

    def choose(self) -> str:
        choice = self.choices[self.used % len(self.choices)]
        self.used += 1
        return choice

    def scope(self, actions: dict) -> None:
        status: dict[str, str] = {}
        while len(status) < len(actions):
            progressed = False
            for name, action in actions.items():
                after = action.get("runAfter") or {}
                if name in status or any(previous not in status for previous in after):
                    continue
                runs = all(status[previous] in allowed for previous, allowed in after.items())
                status[name] = self.run(action) if runs else "Skipped"
                progressed = True
            assert progressed, f"runAfter cycle or unknown action among {sorted(set(actions) - set(status))}"

    def run(self, action: dict) -> str:
        kind = action["type"]
        if kind == "Response":
            self.responses.append((action.get("operationOptions") == "Asynchronous", self.long_done))
            return "Succeeded"
        if kind in LONG:
            self.long_done = True
            return self.choose()
        if kind == "If":
            branch = (
                action.get("actions", {}) if self.choose() == "Succeeded" else action.get("else", {}).get("actions", {})
            )
            self.scope(branch)
        return "Succeeded"


def request_workflows():
    for path in sorted((REPO / "infra" / "logicapp").glob("*.json")):
        definition = json.loads(path.read_text())["definition"]
        if any(t["type"] == "Request" for t in definition["triggers"].values()):
            yield path.name, definition


def test_every_path_answers_the_caller_and_no_answer_after_long_work_is_synchronous():
    import itertools

    for name, definition in request_workflows():
        for choices in itertools.product(OUTCOMES, repeat=5):
            run = Run(choices)
            run.scope(definition["actions"])
            assert run.responses, (name, choices[: run.used], "no Response: the caller waits for nothing")
            asynchronous, long_before = run.responses[0]
            # Logic Apps answers a synchronous Response only within 120 s of the request
            assert asynchronous or not long_before, (name, choices[: run.used], "a synchronous answer after long work")


def test_no_response_sits_in_a_parallel_branch():
    """Logic Apps refuses a Response action in a parallel branch (two actions of one scope running after
    the same action): branches that exclude each other go inside one If instead."""

    def answers(action: dict) -> bool:
        if action["type"] == "Response":
            return True
        inner = list(action.get("actions", {}).values()) + list(action.get("else", {}).get("actions", {}).values())
        return any(answers(a) for a in inner)

    def scopes(node: dict):
        yield node
        for action in node.values():
            yield from scopes(action.get("actions", {}))
            yield from scopes(action.get("else", {}).get("actions", {}))

    for name, definition in request_workflows():
        for scope in scopes(definition["actions"]):
            followers: dict[str, list[str]] = {}
            for action_name, action in scope.items():
                for previous in action.get("runAfter") or {}:
                    followers.setdefault(previous, []).append(action_name)
            for previous, after in followers.items():
                if len(after) > 1:  # a parallel branch: none of its actions may answer the caller
                    assert not any(answers(scope[a]) for a in after), (name, previous, after)


def test_no_key_or_location_reaches_the_run_history_and_no_empty_options():
    def actions(node: dict):
        for action_name, action in node.items():
            yield action_name, action
            yield from actions(action.get("actions", {}))
            yield from actions(action.get("else", {}).get("actions", {}))

    for name, definition in request_workflows():
        for action_name, action in actions(definition["actions"]):
            assert action.get("operationOptions", "x") != "", (name, action_name)  # '' is no documented value
            if action["type"] == "Http":  # its inputs carry ?code=, its outputs the Location with the key
                secure = set(action.get("runtimeConfiguration", {}).get("secureData", {}).get("properties", []))
                assert secure == {"inputs", "outputs"}, (name, action_name)


def test_the_walker_catches_what_it_guards_against():
    unanswered = {
        "Call": {"type": "Http", "runAfter": {}},
        "Answer": {"type": "Response", "runAfter": {"Call": ["Succeeded"]}, "operationOptions": "Asynchronous"},
    }
    run = Run(("Failed",))
    run.scope(unanswered)
    assert run.responses == []  # a failed call leaves the caller without an answer: the test above fails
    late = {
        "Call": {"type": "Http", "runAfter": {}},
        "Answer": {"type": "Response", "runAfter": {"Call": ["Succeeded"]}},
    }
    run = Run(("Succeeded",))
    run.scope(late)
    assert run.responses == [(False, True)]  # synchronous after long work: the test above fails
