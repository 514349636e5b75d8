"""The API document as schemathesis reads it, shared by the conformance run and the fuzz runs."""

from __future__ import annotations

import json
from pathlib import Path

import schemathesis
from schemathesis import GenerationMode

REPO = Path(__file__).resolve().parents[2]
DOCUMENT_PATH = REPO / "functions" / "openapi.json"
DOCUMENT = json.loads(DOCUMENT_PATH.read_text())
# Valid by the schema is not always valid by the state of things: a share named for another app than
# the target (400 share_of_other_target), a backup past the 90-day limit (422), a target that is gone
# (404) or a replace the settings forbid (403) are refused by what the app looks up, not by the
# document's shapes.
VALID_BUT_REFUSED = ["2XX", "3XX", "400", "401", "403", "404", "409", "422"]


def contract(mode: GenerationMode | None = None):
    """The document as schemathesis loads it; ``mode`` restricts generation to valid or invalid data."""
    schema = schemathesis.openapi.from_path(str(DOCUMENT_PATH))
    if mode is not None:
        schema.config.generation.update(modes=[mode])
    schema.config.checks.positive_data_acceptance.expected_statuses = VALID_BUT_REFUSED
    return schema
