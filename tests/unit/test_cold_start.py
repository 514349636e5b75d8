"""Indexing the app (what the Functions host does at a cold start) does not import the engine's SDKs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HEAVY = [
    "mccf_backup.service",
    "azure.storage.fileshare",
    "azure.data.tables",
    "azure.storage.queue",
    "azure.identity",
    "azure.keyvault.secrets",
]


def test_importing_function_app_leaves_the_engine_for_the_first_invocation():
    probe = (
        "import json, sys; import function_app; "
        "functions = function_app.app.get_functions(); "
        f"print(json.dumps({{'loaded': [m for m in {HEAVY!r} if m in sys.modules], "
        "'functions': sorted(f.get_function_name() for f in functions)}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["loaded"] == [], f"imported at indexing time: {report['loaded']}"
    assert "backup_target" in report["functions"] and "scheduled_backup" in report["functions"]
