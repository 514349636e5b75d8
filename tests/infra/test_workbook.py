"""The Azure Monitor workbook: a valid workbook document, deployed by the infra over the app's
Application Insights, whose every query reads only events the app emits and only their dimensions."""

from __future__ import annotations

import json
import re

from mccf_backup import events

from .bicep import INFRA, main, module_config, parsed

WORKBOOK = json.loads((INFRA / "workbook" / "mccf-backup.workbook.json").read_text())
# The alert rules' parse of an event trace; the workbook reads events the same way.
EVENTS_QUERY = parsed(INFRA / "modules" / "alerts.bicep")["variables"]["eventsQuery"]["value"]
COMMON = {"target", "event"}  # projected by the events parse itself


def queries() -> list[tuple[str, str]]:
    return [(item["content"]["title"], item["content"]["query"]) for item in WORKBOOK["items"] if item["type"] == 3]


def test_the_document_has_a_workbooks_shape():
    assert WORKBOOK["version"] == "Notebook/1.0" and WORKBOOK["$schema"].endswith("/schema/workbook.json")
    assert {item["type"] for item in WORKBOOK["items"]} <= {1, 3, 9}  # text, query, parameters
    names = [item["name"] for item in WORKBOOK["items"]]
    assert len(names) == len(set(names))
    for item in WORKBOOK["items"]:
        if item["type"] == 3:
            content = item["content"]
            assert content["version"] == "KqlItem/1.0" and content["queryType"] == 0
            assert content["resourceType"] == "microsoft.insights/components" and content["title"]
            assert content["visualization"] in {"table", "timechart", "barchart", "tiles"}
    parameters = next(item for item in WORKBOOK["items"] if item["type"] == 9)["content"]["parameters"]
    declared = {p["name"] for p in parameters}
    used = {name for _, query in queries() for name in re.findall(r"\{(\w+)\}", query)}
    used |= {item["content"].get("timeContextFromParameter") for item in WORKBOOK["items"] if item["type"] == 3} - {
        None
    }
    assert used <= declared, used - declared


def problems(query: str) -> list[str]:
    """What a query reads that the app never emits: an unknown event, or a field its events lack."""
    if not query.startswith(EVENTS_QUERY + " | "):
        return ["does not read events as the alert rules do"]
    named = set(re.findall(r'event == "([a-z_.]+)"', query))
    for listed in re.findall(r"event in \(([^)]*)\)", query):
        named |= set(re.findall(r'"([a-z_.]+)"', listed))
    if not named:
        return ["names no event"]
    unknown = named - set(events.ALL)
    if unknown:
        return [f"unknown events {sorted(unknown)}"]
    readable = set().union(*(events.DIMENSIONS[name] for name in named)) | COMMON
    fields = set(re.findall(r"\be\.(\w+)", query[len(EVENTS_QUERY) :])) - readable
    return [f"fields no such event has: {sorted(fields)}"] if fields else []


def test_every_query_reads_emitted_events_and_only_their_dimensions():
    panels = {title for title, _ in queries()}
    assert {
        "RPO status per target",
        "Backups and failures per target over time",
        "Verification verdicts",
        "Operation durations (seconds)",
        "Restore window left on the newest backup (days)",
    } <= panels
    for title, query in queries():
        assert problems(query) == [], title


def test_a_query_naming_an_event_or_field_the_app_never_emits_is_caught():
    """The check above can fail: each mutation of a real query trips it."""
    _, query = next((t, q) for t, q in queries() if t == "Verification verdicts")
    assert problems(query.replace('"verify.failure"', '"verify.failed"'))
    assert problems(query.replace("e.reason", "e.reasons"))
    assert problems(query.replace('event in ("verify.success", "verify.failure")', 'event == "prune.capped"'))
    assert problems(query.replace("substring(message, 17)", "substring(message, 16)"))


def test_the_infra_deploys_it_over_the_apps_application_insights():
    config = module_config(main(), "workbook")
    assert config["params"]["insightsId"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "insights", "operand_2": "id"}}
    } or "insights" in json.dumps(config["params"]["insightsId"])
    module = parsed(INFRA / "modules" / "workbook.bicep")
    resource = module["resources"]["workbook"]
    assert resource["type"] == "Microsoft.Insights/workbooks" and resource["api_version"] == "2023-06-01"
    properties = resource["config"]["properties"]
    assert properties["category"] == "workbook" and properties["version"] == "Notebook/1.0"
    assert "mccf-backup.workbook.json" in json.dumps(properties["serializedData"])


def test_every_emitted_dimension_is_declared(caplog):
    """emit refuses a field the queries could not know about."""
    import pytest

    with pytest.raises(ValueError, match="no dimension"):
        events.emit(events.BACKUP_SUCCESS, target="t", secret="x")
