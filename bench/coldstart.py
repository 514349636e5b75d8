"""Benchmark: what importing the Functions app costs at a cold start, against azure.functions alone.

    python -m bench.coldstart [--runs 15]

The Functions host imports function_app (and every blueprint) to index the app before the first
invocation. Each import is timed in a fresh interpreter, alternating, --runs times; the medians are
printed with their ratio. Also timed, for reference: importing the engine (mccf_backup.service),
which the functions import on first use (functions/engine.py). Goal: function_app <= 2x
azure.functions.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
MODULES = ("azure.functions", "function_app", "mccf_backup.service")


def import_seconds(module: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module)], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {module: [] for module in MODULES}
    for _ in range(args.runs):
        for module in MODULES:
            samples[module].append(import_seconds(module))
    medians = {module: statistics.median(values) for module, values in samples.items()}
    for module, value in medians.items():
        print(f"import {module:22s} {value * 1000:7.1f} ms  (median of {args.runs} fresh interpreters)")
    ratio = medians["function_app"] / medians["azure.functions"]
    print(f"function_app / azure.functions  {ratio:5.2f} x   (goal <= 2)")
    print(
        f"engine / azure.functions        {medians['mccf_backup.service'] / medians['azure.functions']:5.2f} x   "
        "(paid at the first invocation instead)"
    )
    return 0 if ratio <= 2 else 1


if __name__ == "__main__":
    sys.exit(main())
