"""Alerts and the workbook count event traces: sampling must never drop one, and the traces that are
kept unsampled must not be flooded by the Azure SDKs' per-request lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_traces_are_never_sampled():
    sampling = json.loads((REPO / "host.json").read_text())["logging"]["applicationInsights"]["samplingSettings"]
    excluded = set(sampling["excludedTypes"].split(";"))
    assert "Trace" in excluded and {"Request", "Exception"} <= excluded


def test_the_sdks_request_lines_stay_out_of_the_traces():
    import function_app  # noqa: F401 - importing it configures the loggers, as the worker's indexing does

    for name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "azure.mgmt.core"):
        assert logging.getLogger(name).getEffectiveLevel() >= logging.WARNING, name
    # the app's own loggers are left to the host's level (the worker sets the root from host.json)
    assert logging.getLogger("mccf_backup.events").level == logging.NOTSET
