"""Benchmark: the catalog and retention planning over thousands of backup shares.

    python -m bench.catalog [--shares 10000] [--small 2500]

One target with --shares tagged backup shares (hourly, newest now) in the local emulator's Azure
Files account (its own process). Measures in one run on this machine:
- the engine's retention dry run for the target (``BackupService.prune``: list the catalog, plan
  retention with a reason per share), against the Storage SDK's bare ``list_shares`` iteration of
  the same shares with their metadata (the least any catalog must do);
- peak Python memory (tracemalloc) of the dry run, against the memory the catalog itself holds (the
  list of Backup records), at --small and at --shares shares: the ratio must not grow with the
  share count.
Goal: within 1.2x of the bare listing; memory not growing with the share count beyond the catalog.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from azure.storage.fileshare import ShareServiceClient

from devhost.emulator_process import EmulatorProcess
from emulator import Emulator
from emulator.runtime import STORAGE_ACCOUNT
from mccf_backup import catalog as cat
from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.azurite import Azurite
from devhost.envvars import scoped_environ

APP = "bigledger"


def create_shares(state: Path, count: int) -> str:
    """``count`` tagged backup shares of one instance, written straight into the emulator (setup)."""
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    with Emulator(state, seed=True) as emu:
        target = emu.add_instance("rg-catalog", APP)
        for hour in range(count):
            created = now - dt.timedelta(hours=hour)
            share = f"{APP}-{created:%Y%m%d%H%M%S}"
            metadata = {
                cat.META_TARGET: target,
                cat.META_JOB: f"job{hour:08d}",
                cat.META_TRIGGER: "timer",
                cat.META_OUTCOME: "succeeded",
                cat.META_VERIFIED: "true" if hour % 2 else "",
            }
            emu.files.create_share(STORAGE_ACCOUNT, share, {k: v for k, v in metadata.items() if v})
        return target


def timed(function, repeats: int = 3) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(count: int, scratch: Path) -> dict:
    state = scratch / f"emulator-{count}"
    target = create_shares(state, count)
    with EmulatorProcess(state) as emu, Azurite() as azurite:
        env = {
            **emu.env,
            "MCCF_TARGETS": target,
            "AzureWebJobsStorage": azurite.connection_string,
            "JOBS_TABLE_NAME": "benchcatalog",
        }
        with scoped_environ(env):
            reset_credentials()
            service = BackupService.from_environment()
            service.jobs.running(None, "backup")  # create the table and warm the connections (setup)
            sdk = ShareServiceClient.from_connection_string(emu.connection_string())

            def bare() -> int:
                return sum(1 for _ in sdk.list_shares(name_starts_with=f"{APP}-", include_metadata=True))

            def engine():
                return service.prune(target, apply=False)

            assert bare() == count
            (result,) = engine()
            assert len(result.plan.decisions) == count
            bare_seconds = timed(bare)
            engine_seconds = timed(engine)

            tracemalloc.start()
            engine()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            tracemalloc.start()
            backups = service.run.catalog().backups(service.targets.resolve(target))
            held, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            del backups
    return {
        "count": count,
        "bare": bare_seconds,
        "engine": engine_seconds,
        "peak": peak / 2**20,
        "held": held / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=2_500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mccf-bench-catalog-") as scratch:
        rows = [measure(count, Path(scratch)) for count in (args.small, args.shares)]
    for row in rows:
        print(
            f"{row['count']:6d} shares: bare list_shares {row['bare']:6.2f} s, list + retention plan "
            f"{row['engine']:6.2f} s ({row['engine'] / row['bare']:.2f}x, goal <= 1.2); peak memory "
            f"{row['peak']:6.1f} MiB, catalog held {row['held']:6.1f} MiB (peak / catalog "
            f"{row['peak'] / row['held']:.2f})"
        )
    small, large = rows
    growth = (large["peak"] / large["held"]) / (small["peak"] / small["held"])
    print(
        f"peak/catalog at {large['count']} over at {small['count']}: {growth:.2f} (1.0 = memory grows only with "
        "the catalog)"
    )
    return 0 if large["engine"] / large["bare"] <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
