"""The docs document every setting the code reads, every error code and every event name, each in the doc
that holds its list (settings and events: docs/operations.md; error codes: docs/api.md), and
local.settings.sample.json holds every setting."""

from __future__ import annotations

import json
import re
from pathlib import Path

from mccf_backup import errors

REPO = Path(__file__).resolve().parents[2]
OPERATIONS_DOC = REPO / "docs" / "operations.md"
API_DOC = REPO / "docs" / "api.md"


def settings_read_by_code() -> set[str]:
    source = (REPO / "mccf_backup" / "settings.py").read_text()
    names = set(re.findall(r'(?:get|required|integer)\("([A-Za-z_]+)"', source))
    names |= set(re.findall(r'"([A-Z_]+_SCHEDULE)"', source))
    names |= set(re.findall(r'"(AzureWebJobsStorage(?:__\w+)?)"', source))
    return names


# Set by App Service and by Core Tools (localhost:7071); a value in local settings would hide the latter's.
SET_BY_THE_HOST = {"WEBSITE_HOSTNAME"}


def test_every_setting_is_documented():
    doc = OPERATIONS_DOC.read_text()
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    names = settings_read_by_code()
    assert {"MCCF_TARGETS", "KEY_VAULT_URL", "BACKUP_CONCURRENCY", "AzureWebJobsStorage"} <= names
    for name in names:
        assert f"`{name}`" in doc or f"`{name.split('__')[0]}" in doc, name
        if "__" not in name and name not in SET_BY_THE_HOST:
            assert name in sample, name


def test_every_error_code_is_listed_in_the_api_doc():
    doc = API_DOC.read_text()
    for error in errors.ALL_ERRORS:
        assert f"`{error.code}`" in doc, error.code


def test_every_event_name_is_listed_in_the_operations_doc():
    from mccf_backup import events

    doc = OPERATIONS_DOC.read_text()
    for name in events.ALL:
        assert f"`{name}`" in doc, name


def test_the_events_table_lists_each_events_dimensions():
    from mccf_backup import events

    doc = (REPO / "docs" / "operations.md").read_text()
    documented = {}
    for row in re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \| [A-Z]+ \| (.*) \|$", doc, re.M):
        for name in re.findall(r"`([a-z_.]+)`", row[0]):
            documented[name] = set(re.findall(r"`(\w+)`", row[1]))
    assert documented == {name: set(dimensions) for name, dimensions in events.DIMENSIONS.items()}
