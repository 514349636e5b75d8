"""Benchmark: what following long ARM operations costs in function invocations, against the design before.

    python -m bench.invocations [--targets 100] [--operation-seconds 60] [--retry-after 10] [--skip-before]

On the local emulator (its own process) with backups that take --operation-seconds and ARM's
Retry-After of --retry-after seconds (ARM's subscription limits on), a scheduled run over --targets
targets, in both fan-out modes, measured in one run on this machine:

- function-busy seconds: the sum of every invocation's duration (the timer, and each queue message),
  which is what Flex Consumption bills and what scale-in can cut short. Goal: <= 2 s per target.
- wall time from the timer firing to every backup job final. Goal: <= 1.1 x (operation duration + the
  time ARM's write limit needs to accept every backup request + one poll interval).

The queue functions run through devhost/queuepump.py, as the host runs them (--pump-concurrency at
once, polling an idle queue every 2 s, host.json's maxPollingInterval). All of them share this
machine's two cores with the emulator and Azurite, so an invocation's duration includes waiting for a
core; more at once would measure that contention rather than the design. The design before this one (commit BEFORE,
where the timer and each queue message followed its operation to the end) is measured the same way
from a git worktree of that commit, unless --skip-before.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from azure.functions.timer import TimerRequest

from devhost.emulator_process import EmulatorProcess
from bench.fanout import bucket_seconds, create_instances
from emulator.throttle import ThrottleConfig
from mccf_backup.identity import reset_credentials
from mccf_backup.service import BackupService
from devhost.azurite import Azurite
from devhost.envvars import scoped_environ
from devhost.invocation import invoke
from devhost.queuepump import QueuePump

REPO = Path(__file__).resolve().parents[1]
BEFORE = "c0a7eb7"  # the last commit whose invocations waited for the ARM operation
GOAL_BUSY_PER_TARGET = 2.0
GOAL_WALL_RATIO = 1.1
PUMP_CONCURRENCY = 8  # queue messages run at once by the pump (one process: more would only contend for 2 cores)
BEFORE_WORKERS = 32  # the design before held a message per backup: it needs as many at once to keep up
HOST_POLL_SECONDS = 2.0
WAIT_LIMIT_SECONDS = 900  # a run that has not ended by then is broken: say so rather than wait forever


@dataclass
class Measured:
    label: str
    targets: int
    busy_seconds: float
    invocations: int
    longest: float
    wall_seconds: float
    failed: int

    def line(self) -> str:
        return (
            f"{self.label:<22} busy {self.busy_seconds:9.1f} s ({self.busy_seconds / self.targets:6.2f} s per target, "
            f"{self.invocations} invocations, longest {self.longest:6.1f} s); wall {self.wall_seconds:6.1f} s; "
            f"{self.failed} failed"
        )


def scenario_env(base: dict[str, str], targets: list[str], mode: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {
        **base,
        "MCCF_TARGETS": ",".join(targets),
        "BACKUP_FANOUT": mode,
        "BACKUP_CONCURRENCY": "16",
        "JOBS_TABLE_NAME": f"inv{tag}",
        "BACKUP_QUEUE_NAME": f"targets-{tag}",
        "OPERATIONS_QUEUE_NAME": f"ops-{tag}",
    }


def measure_now(env: dict[str, str], mode: str, count: int, concurrency: int) -> Measured:
    """This design: the timer starts (or enqueues) and returns; the queue functions do the rest."""
    from function_app import app
    from devhost.devserver import functions_of

    with scoped_environ(env):
        reset_credentials()
        timer = next(f for f in functions_of(app) if f.get_function_name() == "scheduled_backup")
        service = BackupService.from_environment()
        with QueuePump(
            app, visibility_timeout=30, concurrency=PUMP_CONCURRENCY, idle_seconds=HOST_POLL_SECONDS
        ) as pump:
            fired = time.perf_counter()
            invoke(timer, timer=TimerRequest())
            timer_seconds = time.perf_counter() - fired
            give_up = fired + WAIT_LIMIT_SECONDS
            while True:
                jobs = [j for j in service.jobs.list(kind="backup", limit=10 * count)]
                if len(jobs) >= count and all(j.done for j in jobs):
                    break
                if time.perf_counter() > give_up:
                    raise RuntimeError(
                        f"{sum(not j.done for j in jobs)} jobs still running after {WAIT_LIMIT_SECONDS} s"
                    )
                time.sleep(0.5)
            wall = time.perf_counter() - fired
        durations = [d for values in pump.stats.durations.values() for d in values] + [timer_seconds]
        failed = sum(1 for j in jobs if j.status != "succeeded")
    return Measured(f"now, {mode}", count, sum(durations), len(durations), max(durations), wall, failed)


BEFORE_DRIVER = r"""
import json, sys, threading, time
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy
import function_app, os

functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
mode, workers = sys.argv[1], int(sys.argv[2])
durations, errors = [], []
fired = time.perf_counter()
try:
    functions["scheduled_backup"].get_user_function()(TimerRequest())
except Exception as exc:
    errors.append(str(exc)[:200])
durations.append(time.perf_counter() - fired)
if mode == "queue":
    queue = QueueClient.from_connection_string(
        os.environ["AzureWebJobsStorage"], os.environ["BACKUP_QUEUE_NAME"],
        message_encode_policy=TextBase64EncodePolicy(), message_decode_policy=TextBase64DecodePolicy())
    messages = list(queue.receive_messages(messages_per_page=32, visibility_timeout=3600))
    lock = threading.Lock()
    def run(batch):
        for m in batch:
            started = time.perf_counter()
            try:
                functions["backup_target"].get_user_function()(QueueMessage(id=m.id, body=m.content.encode(), dequeue_count=1))
            except Exception as exc:
                errors.append(str(exc)[:200])
            with lock:
                durations.append(time.perf_counter() - started)
    threads = [threading.Thread(target=run, args=(messages[i::workers],)) for i in range(workers)]
    [t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps({"durations": durations, "wall": time.perf_counter() - fired, "errors": errors}))
"""


def measure_before(env: dict[str, str], mode: str, count: int, worktree: Path) -> Measured:
    """The design before: the same run, with the timer (inline) or each message (queue) following its backup."""
    result = subprocess.run(
        [sys.executable, "-c", BEFORE_DRIVER, mode, str(BEFORE_WORKERS)],
        cwd=worktree,
        env={**env, "PYTHONPATH": str(worktree)},  # the same BACKUP_CONCURRENCY as the run it is compared with
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    durations = report["durations"]
    label = f"before ({BEFORE}), {mode}"
    return Measured(label, count, sum(durations), len(durations), max(durations), report["wall"], len(report["errors"]))


def worktree_of(commit: str, scratch: Path) -> Path | None:
    path = scratch / "before"
    done = subprocess.run(["git", "worktree", "add", "--detach", str(path), commit], cwd=REPO, capture_output=True)
    return path if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=100)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--operation-seconds", type=float, default=60)
    parser.add_argument("--retry-after", type=int, default=10, help="ARM's Retry-After on 202s, seconds")
    parser.add_argument("--skip-before", action="store_true", help="do not measure the design before")
    parser.add_argument("--pump-concurrency", type=int, default=PUMP_CONCURRENCY, help="queue messages run at once")
    args = parser.parse_args()
    throttle = ThrottleConfig()
    per_group = args.targets // args.groups
    modes = ("inline", "queue")
    with tempfile.TemporaryDirectory(prefix="mccf-bench-invocations-") as scratch_dir:
        scratch = Path(scratch_dir)
        state = scratch / "emulator"
        runs = ["now-" + m for m in modes] + ([] if args.skip_before else ["before-" + m for m in modes])
        targets = {run: create_instances(state, args.groups, per_group, run.replace("-", "")[:8]) for run in runs}
        worktree = None if args.skip_before else worktree_of(BEFORE, scratch)
        if not args.skip_before and worktree is None:
            print(f"(the design before, commit {BEFORE}, is not in this clone: not measured)")
        extra = ("--retry-after-seconds", str(args.retry_after))
        results: list[Measured] = []
        try:
            with EmulatorProcess(state, args.operation_seconds, *extra) as emu, Azurite() as azurite:
                base = {**emu.env, "BACKUP_SCHEDULE": "0 0 2 * * *", "AzureWebJobsStorage": azurite.connection_string}
                print(
                    f"{per_group * args.groups} targets, backups of {args.operation_seconds:.0f} s, ARM Retry-After "
                    f"{args.retry_after} s, writes {throttle.writes.burst} burst + "
                    f"{throttle.writes.refill_per_second:.0f}/s",
                    flush=True,
                )
                for run in runs:
                    when, mode = run.split("-")
                    env = scenario_env(base, targets[run], mode)
                    if when == "now":
                        results.append(measure_now(env, mode, len(targets[run]), args.pump_concurrency))
                    elif worktree is not None:
                        results.append(measure_before(env, mode, len(targets[run]), worktree))
                    print(results[-1].line(), flush=True)
                    time.sleep(len(targets[run]) / throttle.writes.refill_per_second)  # let the write bucket refill
        finally:
            if worktree is not None:
                subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=REPO, capture_output=True)
    count = per_group * args.groups
    bound = args.operation_seconds + bucket_seconds(count, throttle.writes.burst, throttle.writes.refill_per_second)
    bound += args.retry_after
    ok = True
    print(f"wall-time bound: {bound:.1f} s (operation + write throttle + one poll interval)")
    for result in results:
        if not result.label.startswith("now"):
            continue
        mode = result.label.split(", ")[1]
        per_target = result.busy_seconds / result.targets
        ratio = result.wall_seconds / bound
        met = per_target <= GOAL_BUSY_PER_TARGET and ratio <= GOAL_WALL_RATIO and result.failed == 0
        ok = ok and met
        line = (
            f"{mode:<7} busy {per_target:5.2f} s per target (goal <= {GOAL_BUSY_PER_TARGET}); "
            f"wall / bound {ratio:4.2f} (goal <= {GOAL_WALL_RATIO})"
        )
        before = next((r for r in results if r.label.startswith("before") and r.label.endswith(mode)), None)
        if before is not None:
            line += f"; busy before / now {before.busy_seconds / result.busy_seconds:6.1f} x"
        print(line + ("" if met else "   NOT MET"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
