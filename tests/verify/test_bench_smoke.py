"""The verification benchmark still runs end to end (tiny sizes; real figures come from `make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_verify_runs_and_prints_its_ratios():
    result = subprocess.run(
        [sys.executable, "-m", "bench.verify", "--mib", "6", "--small-mib", "3"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "the validator alone (goal <= 1.25x)" in result.stdout and "MiB/s" in result.stdout
