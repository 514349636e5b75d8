"""What must hold after any fault: no backup lost, none made twice, no share untagged, no job running forever."""

from __future__ import annotations

import time

from azure.storage.fileshare import ShareServiceClient

from mccf_backup import catalog as cat
from mccf_backup.arm import correlation_id
from mccf_backup.service import BackupService


def shares_of(emulator, app: str) -> dict[str, dict]:
    """Every backup share of an app, straight from the storage account (not through the engine)."""
    service = ShareServiceClient.from_connection_string(emulator.connection_string())
    return {
        share.name: dict(share.metadata or {})
        for share in service.list_shares(name_starts_with=f"{app}-", include_metadata=True)
    }


def backup_operations(emulator, resource_id: str) -> list[dict]:
    """Every backup ARM started for an instance, whatever became of the answer to its POST."""
    operations = emulator.arm.operations.values() if hasattr(emulator, "arm") else emulator.operations()
    return [o for o in operations if o["kind"] == "backup" and o["resource"].lower() == resource_id.lower()]


def finish_running(service: BackupService, targets: list[str], timeout: float = 60) -> None:
    """Follow every job still running for the targets to its end (what the operations queue does)."""
    deadline = time.monotonic() + timeout
    for target_id in targets:
        for job in service.jobs.running(service.targets.resolve(target_id).resource_id):
            while not job.done:
                assert time.monotonic() < deadline, f"{job.kind} {job.id} still {job.state} after {timeout} s"
                job = service.poll(job.id)
                time.sleep(0.2)


def assert_nothing_lost(service: BackupService, emulator, targets: list[str]) -> dict[str, list]:
    """Finish what runs, reconcile once (adopt unclaimed shares, as the next backup does), then check
    the invariants; returns the backup jobs by target."""
    finish_running(service, targets)
    by_target = {}
    for target_id in targets:
        target = service.targets.resolve(target_id)
        running = service.backups.reconcile(target)
        assert not running, f"{target.name}: jobs still running after reconciliation: {[j.id for j in running]}"
        history = service.jobs.list(target=target.resource_id, limit=100000)
        jobs = [j for j in history if j.kind == "backup"]
        assert all(j.done for j in jobs), [j.id for j in jobs if not j.done]
        # shares that retention deleted on purpose (each recorded as a delete job) are not lost
        pruned = {j.share for j in history if j.kind == "delete" and j.status == "succeeded"}
        shares = shares_of(emulator, target.name)
        assert not pruned & set(shares), f"{target.name}: shares recorded deleted still exist"
        for share, metadata in shares.items():
            assert metadata.get(cat.META_TARGET) == target.resource_id, f"{share} is not tagged for its target"
            assert metadata.get(cat.META_JOB), f"{share} is tagged with no job"
        claimed = [metadata[cat.META_JOB] for metadata in shares.values()]
        assert len(claimed) == len(set(claimed)), f"{target.name}: two shares claim one job"
        succeeded = {j.id: j for j in jobs if j.status == "succeeded" and j.share not in pruned}
        for job in succeeded.values():
            assert job.share in shares, f"backup {job.id} succeeded but its share {job.share} is gone"
        assert set(claimed) == set(succeeded), (
            f"{target.name}: shares and succeeded jobs differ: shares claim {sorted(claimed)}, "
            f"succeeded {sorted(succeeded)}"
        )
        # Nothing made twice: ARM ran at most one backup per job (by the correlation id each job sends).
        per_job: dict[str, int] = {}
        for operation in backup_operations(emulator, target.resource_id):
            per_job[operation.get("correlation")] = per_job.get(operation.get("correlation"), 0) + 1
        twice = {job.id for job in jobs if per_job.get(correlation_id(job.id), 0) > 1}
        assert not twice, f"{target.name}: ARM ran two backups for jobs {sorted(twice)}: " + str(
            [
                (o["startTime"], o.get("endTime"), o["status"])
                for o in backup_operations(emulator, target.resource_id)
                if o.get("correlation") in {correlation_id(j) for j in twice}
            ]
        )
        leases = service.run.leases.holder(target.resource_id)
        assert leases is None, f"{target.name}: the lease is still held by {leases}"
        written = [o for o in backup_operations(emulator, target.resource_id) if o["status"] == "Succeeded"]
        assert len(written) == len(shares) + len(pruned), (
            f"{target.name}: {len(written)} backups written, {len(shares)} shares and {len(pruned)} pruned"
        )
        by_target[target_id] = jobs
    return by_target
