"""Benchmark: a scheduled run over many targets against ARM's write throttle.

    python -m bench.fanout [--targets 500] [--groups 25] [--sequential-sample 30]

On the local emulator (its own process) with 100 ms added to every ARM request and ARM's
subscription limits (writes: 200 burst, then 10/s; reads: 250 burst, then 25/s), measures in one
run on this machine:
- the scheduled run (BackupService.run_scheduled, BACKUP_CONCURRENCY=--concurrency, 64) over --targets targets,
  from the timer firing to every backup ended, the operations queue following them (devhost/queuepump.py,
  --concurrency messages at once), with its failures and the 429s it met;
- the lower bound: the time the token buckets alone need for the fewest requests the work takes
  (one backup POST per target; one list per resource group and one status poll per backup), plus
  one Retry-After before the last backup can be seen done;
- the manual procedure, one call after the other (POST, then poll until done), timed on a sample
  of --sequential-sample targets and scaled to --targets (scaled, because the full sequential loop
  takes over ten minutes; the per-target time does not depend on how many came before).
Goal: the run within 1.15x of the lower bound, zero targets failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from devhost.emulator_process import EmulatorProcess
from emulator import Emulator
from emulator.throttle import ThrottleConfig
from mccf_backup.arm import ManagedCcfClient
from mccf_backup.identity import get_credential, reset_credentials
from mccf_backup.service import BackupService
from mccf_backup.storage_config import BACKUP, load_storage_config
from mccf_backup.targets import parse_target
from devhost.azurite import Azurite
from devhost.envvars import scoped_environ
from devhost.queuepump import QueuePump

ARM_LATENCY_SECONDS = 0.1
OPERATION_SECONDS = 0.2
RETRY_AFTER_SECONDS = 1  # the emulator's Retry-After on 202s


def create_instances(state: Path, groups: int, per_group: int, prefix: str) -> list[str]:
    """Instances written straight into the emulator's state (setup, not measured)."""
    with Emulator(state, seed=True) as emu:
        return [
            emu.add_instance(f"rg-{prefix}-{g:03d}", f"{prefix}{g:03d}x{i:03d}")
            for g in range(groups)
            for i in range(per_group)
        ]


def bucket_seconds(requests: int, burst: int, per_second: float) -> float:
    return max(0, requests - burst) / per_second


def sequential_manual(targets: list[str], env: dict[str, str]) -> float:
    """The documented manual procedure for each target in turn: POST .../backup, poll until done."""
    with scoped_environ(env):
        reset_credentials()
        credential = get_credential(None)
        storage = load_storage_config(env["KEY_VAULT_URL"], env["STORAGE_SECRET_NAME"], credential)
        arm = ManagedCcfClient(env["ARM_ENDPOINT"], credential, "2023-06-28-preview")
        started = time.perf_counter()
        for resource_id in targets:
            target = parse_target(resource_id)
            operation = arm.start_backup(target, storage.sas_url(BACKUP, dt.timedelta(hours=1)))
            status = arm.status(operation, target)
            while not status.done:
                time.sleep(status.retry_after)
                status = arm.status(operation, target)
            assert status.status == "Succeeded", status
        return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=500)
    parser.add_argument("--groups", type=int, default=25, help="resource groups the targets are spread over")
    parser.add_argument("--sequential-sample", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=64, help="BACKUP_CONCURRENCY of the run")
    args = parser.parse_args()
    throttle = ThrottleConfig()
    with tempfile.TemporaryDirectory(prefix="mccf-bench-fanout-") as scratch:
        state = Path(scratch) / "emulator"
        per_group = args.targets // args.groups
        targets = create_instances(state, args.groups, per_group, "fan")
        sample = create_instances(state, 1, args.sequential_sample, "seq")
        with EmulatorProcess(state, OPERATION_SECONDS) as emu, Azurite() as azurite:
            emu.control("POST", "/latency", {"service": "arm", "seconds": ARM_LATENCY_SECONDS})
            env = {
                **emu.env,
                "MCCF_TARGETS": ",".join(targets),
                "BACKUP_SCHEDULE": "0 0 2 * * *",
                "AzureWebJobsStorage": azurite.connection_string,
                "JOBS_TABLE_NAME": "benchfanout",
                "BACKUP_CONCURRENCY": str(args.concurrency),
                "OPERATIONS_QUEUE_NAME": "benchfanout-operations",
                "BACKUP_QUEUE_NAME": "benchfanout-targets",
            }
            print(
                f"{len(targets)} targets in {args.groups} resource groups; ARM +{ARM_LATENCY_SECONDS * 1000:.0f} ms, "
                f"writes {throttle.writes.burst} burst + {throttle.writes.refill_per_second:.0f}/s, "
                f"reads {throttle.reads.burst} burst + {throttle.reads.refill_per_second:.0f}/s",
                flush=True,
            )

            sequential_sample = sequential_manual(sample, env)
            per_target = sequential_sample / len(sample)
            if len(sample) + len(targets) > throttle.writes.burst:  # let the buckets refill first
                time.sleep(throttle.writes.burst / throttle.writes.refill_per_second + 2)

            before_429 = emu.count(service="arm", status=429)
            with scoped_environ(env):
                reset_credentials()
                from function_app import app

                service = BackupService.from_environment()
                with QueuePump(app, visibility_timeout=30, concurrency=args.concurrency, idle_seconds=0.2):
                    started = time.perf_counter()
                    summary = service.run_scheduled("bench")
                    start_seconds = time.perf_counter() - started
                    while service.jobs.running():
                        time.sleep(0.2)
                    run_seconds = time.perf_counter() - started
                jobs = service.jobs.list(kind="backup", limit=2 * len(targets))
            throttled = emu.count(service="arm", status=429) - before_429
            calls = {service: emu.count(service=service) for service in ("arm", "file", "keyvault", "identity")}
            emulator_cpu = emu.cpu_seconds()

    writes = bucket_seconds(len(targets), throttle.writes.burst, throttle.writes.refill_per_second)
    reads = bucket_seconds(args.groups + len(targets), throttle.reads.burst, throttle.reads.refill_per_second)
    # The last backup cannot be accepted before the write bucket allows it, and cannot be seen done before
    # ARM's Retry-After (1 s, longer than the operation) has passed once.
    bound = max(writes, reads, ARM_LATENCY_SECONDS) + max(OPERATION_SECONDS, RETRY_AFTER_SECONDS)
    sequential = per_target * len(targets)
    failed = len(summary.failed) + sum(1 for job in jobs if job.status != "succeeded")
    print(
        f"scheduled run            {run_seconds:8.1f} s   to every backup ended ({start_seconds:.1f} s to start them "
        f"all); {failed} of {len(targets)} targets failed, {throttled} answers were 429"
    )
    print(
        f"lower bound              {bound:8.1f} s   (throttle: writes {writes:.1f} s, reads {reads:.1f} s; "
        f"then one Retry-After)"
    )
    print(
        f"manual, one by one       {sequential:8.1f} s   ({per_target:.2f} s per target over {len(sample)}, "
        f"scaled to {len(targets)})"
    )
    print(f"emulator requests        {calls}  (emulator CPU {emulator_cpu:.1f} s in all)")
    print(f"run / lower bound        {run_seconds / bound:8.2f} x   (goal <= 1.15)")
    print(f"one by one / run         {sequential / run_seconds:8.2f} x")
    if failed:
        for result in summary.failed[:5]:
            print(f"  FAILED {result.target}: {result.error_code}: {result.error_message}")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
