"""Operator CLI: ``mccf-backup backup|restore|list|jobs|status|...``.

The same engine as the Functions app, for break-glass work outside it. Readable tables by default,
``--json`` for scripts, progress on stderr while ``--wait`` follows a long operation (by looking at
its job and taking its next step when due, as the app's queue would). Exit codes: 0 ok, 1 failed,
2 usage (bad arguments, settings or target).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from . import cli_preflight, errors
from .coverage import Before
from .jobs import Job
from .logs import one_line
from .redaction import redact
from .cli_format import JOB_COLUMNS, job_rows, ledger_columns, table
from .restore_checks import RestoreRequest
from .service import BackupService

USAGE_ERRORS = (errors.SettingsInvalid, errors.InvalidRequest, errors.InvalidShareName, errors.TargetNotAllowed)


class Cli:
    def __init__(self, out=sys.stdout, err=sys.stderr) -> None:
        self.out, self.err = out, err

    def progress(self, job: Job) -> None:
        detail = job.arm_status or ""
        if job.last_error:
            detail += f"; last look failed: {job.last_error[:120]}"
        print(f"  ... {job.state} {detail}".rstrip(), file=self.err, flush=True)

    def emit(self, args: argparse.Namespace, data: Any, text: str) -> None:
        print(json.dumps(data, indent=2, default=str) if args.json else text, file=self.out)

    def run(self, args: argparse.Namespace) -> int:
        if args.command == "preflight":  # it reports settings that do not load, rather than stopping at them
            return self.cmd_preflight(args)
        service = BackupService.from_environment(interactive=True)
        return getattr(self, f"cmd_{args.command}")(service, args)

    def cmd_preflight(self, args: argparse.Namespace) -> int:
        report = cli_preflight.report_for(args.canary, self.progress)
        if args.json:
            self.emit(args, report.to_dict(), "")
        else:
            cli_preflight.render(report, self.out)
        return 1 if report.status == "failed" else 0

    def _started_or_done(self, service: BackupService, args: argparse.Namespace, job: Job) -> int:
        self.emit(
            args,
            job.to_dict(),
            f"{job.kind} {job.status}: job {job.id}"
            + (f", share {job.share}" if job.share else "")
            + (f"\n  {job.error_code}: {job.error_message}" if job.error_code else "")
            + (f"\n  follow it with: {getattr(args, 'prog', 'mccf-backup')} jobs" if not job.done else ""),
        )
        return 1 if job.status == "failed" else 0

    def cmd_backup(self, service: BackupService, args: argparse.Namespace) -> int:
        references = [t.resource_id for t in service.targets] if args.all else args.target
        if not references:
            raise errors.InvalidRequest("Name a --target (app name or resource ID), or --all.")
        status = 0
        for reference in references:
            job = service.start_backup(reference, "cli", caller="cli")
            if args.wait:
                print(f"backing up {reference.rsplit('/', 1)[-1]} (operation {job.id}) ...", file=self.err, flush=True)
                job = service.follow(job, self.progress)
            status = max(status, self._started_or_done(service, args, job))
        return status

    def cmd_restore(self, service: BackupService, args: argparse.Namespace) -> int:
        before = None
        if args.before_txid is not None or args.before is not None:
            before = Before.parse(args.before_txid, args.before)
        request = RestoreRequest(
            args.target,
            args.share,
            args.region,
            args.replace,
            args.confirm,
            trigger="cli",
            caller="cli",
            before=before,
            label=args.label,
        )
        if args.dry_run:
            check = service.check_restore(request)
            lines = [
                f"restore of {check.target.name}"
                + (f" from {check.backup.share}" if check.backup else "")
                + f": {'all preconditions hold' if check.ok else 'REFUSED'} (dry run, nothing done)"
            ]
            lines += [f"  {'ok  ' if c['ok'] else 'FAIL'} {c['check']}: {c['detail']}" for c in check.checks]
            if check.choice:
                lines += [f"  passed over {item['share']}: {item['reason']}" for item in check.choice.passed_over]
            self.emit(args, check.to_dict(), "\n".join(lines))
            return 0 if check.ok else 1
        job = service.start_restore(request)
        if args.wait:
            print(f"restoring {args.target} (operation {job.id}) ...", file=self.err, flush=True)
            job = service.follow(job, self.progress)
        return self._started_or_done(service, args, job)

    def cmd_find(self, service: BackupService, args: argparse.Namespace) -> int:
        """The verified backups that hold a transaction (restore the newest one before it instead)."""
        return self.cmd_list(service, args, contains_txid=args.txid)

    def cmd_inspect(self, service: BackupService, args: argparse.Namespace) -> int:
        """What a backup holds: its files, chunks, ledger range, table writes and governance history."""
        found = service.inspect(args.target, args.share, progress=None if args.json else self.bar)
        if not args.json:
            print(file=self.err)  # end the progress line
        ledger = found["ledger"]
        lines = [f"{found['share']}: {len(found['chunks'])} committed chunks, {found['bytesRead']} bytes read"]
        lines += [
            f"  {c['name']}  seqno {c['firstSeqno']}-{c['lastSeqno']}  {c['bytes']} bytes" for c in found["chunks"]
        ]
        lines += [f"  problem: {problem}" for problem in found["problems"]]
        if ledger.get("error"):
            lines.append(f"  the ledger reader stopped: {ledger['error']}")
        lines.append(
            f"ledger: seqno {ledger.get('firstSeqno')}-{ledger.get('lastSeqno')}, {ledger.get('transactions')} "
            f"transactions, {ledger.get('signatures')} signatures (last {ledger.get('lastSignatureTxid')}), "
            f"{ledger.get('privateTransactions')} with private (encrypted) writes"
        )
        writes = (ledger.get("publicWrites") or {}).items()
        lines += ["writes per public table:"] + [f"  {n:>6}  {one_line(t)}" for t, n in writes]
        lines.append("governance history:")  # names and states come from the ledger: printed escaped
        lines += [
            f"  {e['txid']:>10}  {e['kind']:<8} {one_line(e['change']):<16} {one_line(e.get('id') or '')}"
            for e in ledger.get("governance") or []
        ]
        self.emit(args, found, "\n".join(lines))
        return 0 if not ledger.get("error") and not found["problems"] else 1

    def cmd_pin(self, service: BackupService, args: argparse.Namespace) -> int:
        backup = service.pins.pin(args.target, args.share, args.label, args.note, "cli", "cli")
        self.emit(args, backup.to_dict(), f"{backup.share} pinned as '{args.label}': retention keeps it")
        return 0

    def cmd_unpin(self, service: BackupService, args: argparse.Namespace) -> int:
        backup = service.pins.unpin(args.target, args.share, "cli", "cli")
        self.emit(args, backup.to_dict(), f"{backup.share} is not pinned: retention decides its fate")
        return 0

    def cmd_list(self, service: BackupService, args: argparse.Namespace, contains_txid: str | None = None) -> int:
        target, backups = service.list_backups(args.target, contains_txid)
        rows = [{**b.to_dict(), **ledger_columns(b.to_dict())} for b in backups]
        self.emit(
            args,
            {"target": target.resource_id, "backups": rows},
            f"backups of {target.resource_id}\n"
            + table(
                rows,
                [
                    ("share", "SHARE"),
                    ("created", "CREATED (UTC)"),
                    ("ageDays", "AGE (DAYS)"),
                    ("restorable", "RESTORABLE"),
                    ("restorableDaysLeft", "DAYS LEFT"),
                    ("outcome", "OUTCOME"),
                    ("seqnos", "LEDGER (SEQNO)"),
                    ("pinLabel", "PINNED AS"),
                    ("trigger", "TRIGGER"),
                ],
            ),
        )
        return 0

    def cmd_jobs(self, service: BackupService, args: argparse.Namespace) -> int:
        jobs = [
            service.poll(job.id) if not job.done else job for job in service.list_jobs(args.target, limit=args.limit)
        ]
        self.emit(args, [j.to_dict() for j in jobs], table(job_rows(jobs), JOB_COLUMNS))
        return 0

    def cmd_prune(self, service: BackupService, args: argparse.Namespace) -> int:
        results = service.prune(args.target, apply=args.apply, override=args.override, trigger="cli")
        lines = []
        for result in results:
            lines.append(f"{result.target}{'  (deletion cap reached: nothing deleted)' if result.plan.capped else ''}")
            for decision in result.plan.decisions:
                lines.append(f"  {decision.action:<6} {decision.share}  {'; '.join(decision.reasons)}")
            for job in result.jobs:
                lines.append(
                    f"  {'deleted' if job.status == 'succeeded' else 'FAILED to delete'} {job.share}"
                    + (f": {job.error_message}" if job.error_message else "")
                )
        if not args.apply:
            lines.append("dry run: nothing deleted (use --apply to act)")
        self.emit(args, [r.to_dict() for r in results], "\n".join(lines))
        return 1 if any(j.status == "failed" for r in results for j in r.jobs) else 0

    def bar(self, done: int, total: int) -> None:
        """Progress over bytes on stderr, for the long reads (verify, inspect)."""
        width = 30
        filled = int(width * done / total) if total else width
        print(
            f"\r  [{'#' * filled}{'.' * (width - filled)}] {done / 2**20:7.1f} / {total / 2**20:.1f} MiB",
            end="",
            file=self.err,
            flush=True,
        )

    def cmd_verify(self, service: BackupService, args: argparse.Namespace) -> int:
        share = args.share or args.share_name
        target = args.target or (
            share and next((t.resource_id for t in service.targets if share.startswith(t.share_prefix)), None)
        )
        if not target:
            raise errors.InvalidRequest("Name the backup's --target (or a share named <app>-<timestamp> of a target).")
        job, report = service.verify(target, share, "cli", progress=None if args.json else self.bar)
        if not args.json:
            print(file=self.err)
        lines = [f"{report.share}: {report.verdict.upper()}"]
        lines += [f"  reason: {reason}" for reason in report.reasons]
        lines += [
            f"  chunks: {len(report.chunks)} (seqno {report.first_seqno}-{report.last_seqno}), "
            f"{report.transactions} transactions, {report.bytes / 2**20:.2f} MiB",
            f"  signatures verified: {report.signatures}, last verified transaction: {report.last_verified_txid}",
            f"  unverified remainder: the final signature transaction (seqno {report.unverified_from_seqno}) and "
            "anything after it, covered by no later signature",
            f"  service identity (SHA-256 of the service certificate): {report.service_identity}",
            f"  snapshots: {', '.join(report.snapshots) or 'none'}; uncommitted: "
            f"{', '.join(report.uncommitted) or 'none'}; ignored: {', '.join(report.ignored) or 'none'}",
        ]
        self.emit(
            args,
            {"job": job.to_dict(), "report": {k: v for k, v in report.to_dict().items() if k != "service_certificate"}},
            "\n".join(lines),
        )
        return 0 if report.valid else 1

    def cmd_sweep(self, service: BackupService, args: argparse.Namespace) -> int:
        result = service.sweep()
        self.emit(
            args,
            {"running": result.looked_at, "movedOn": result.advanced, "ended": result.ended},
            f"{result.looked_at} running jobs; {result.advanced} overdue moved on; {result.ended} ended",
        )
        return 0

    def cmd_status(self, service: BackupService, args: argparse.Namespace) -> int:
        report = service.status()
        rows = [
            {
                "app": item["app"],
                "newest": (item["newestBackup"] or {}).get("share"),
                "age": item["newestBackupAgeHours"],
                "restorable": (item["newestBackup"] or {}).get("restorable"),
                "failure": ((item["lastFailure"] or {}).get("error") or {}).get("code"),
            }
            for item in report
        ]
        self.emit(
            args,
            report,
            table(
                rows,
                [
                    ("app", "APP"),
                    ("newest", "NEWEST BACKUP"),
                    ("age", "AGE (HOURS)"),
                    ("restorable", "RESTORABLE"),
                    ("failure", "LAST FAILURE"),
                ],
            ),
        )
        return 0


def parser() -> argparse.ArgumentParser:
    prog = "mccf-backup" if Path(sys.argv[0]).name == "mccf-backup" else "python -m mccf_backup"  # as invoked
    root = argparse.ArgumentParser(prog=prog, description="Back up and restore Azure Managed CCF.")
    root.set_defaults(prog=prog)  # hints name the command the operator typed
    root.add_argument("--json", action="store_true", help="machine-readable output")
    commands = root.add_subparsers(dest="command", required=True)
    backup = commands.add_parser("backup", help="back up targets now")
    backup.add_argument("--target", action="append", help="app name or resource ID (repeatable)")
    backup.add_argument("--all", action="store_true", help="every target in MCCF_TARGETS")
    backup.add_argument("--wait", action="store_true", help="follow the operation to its end, with progress")
    restore = commands.add_parser("restore", help="restore a deleted target from a backup")
    restore.add_argument("--target", required=True)
    restore.add_argument("--share", help="the backup share (default: the newest restorable one)")
    restore.add_argument("--label", help="the backup pinned (golden copy) under this label")
    restore.add_argument(
        "--before-txid", metavar="VIEW.SEQNO", help="the newest verified backup ending before this transaction"
    )
    restore.add_argument(
        "--before",
        metavar="TIME",
        help="the newest verified backup taken before this RFC 3339 time (e.g. 2026-11-20T10:00Z)",
    )
    restore.add_argument("--region", help="restore region (default: RESTORE_REGION, else the backup's location)")
    restore.add_argument("--dry-run", action="store_true", help="check every precondition and show the plan")
    restore.add_argument(
        "--replace",
        action="store_true",
        help="delete the live instance first (needs ALLOW_REPLACE_RESTORE and --confirm)",
    )
    restore.add_argument("--confirm", help="the instance's name, repeated, to confirm --replace")
    restore.add_argument("--wait", action="store_true")
    listing = commands.add_parser("list", help="the backups of a target")
    listing.add_argument("--target", required=True)
    find = commands.add_parser("find", help="the verified backups that hold a transaction")
    find.add_argument("--target", required=True)
    find.add_argument("--txid", required=True, metavar="VIEW.SEQNO")
    inspect = commands.add_parser("inspect", help="what a backup holds: files, ledger range, tables, governance")
    inspect.add_argument("share", metavar="SHARE")
    inspect.add_argument("--target", required=True)
    pin = commands.add_parser("pin", help="keep a backup as a golden copy: retention never deletes it")
    pin.add_argument("share", metavar="SHARE")
    pin.add_argument("--target", required=True)
    pin.add_argument("--label", required=True, help="the name to restore it by (restore --label)")
    pin.add_argument("--note", help="why it is kept")
    unpin = commands.add_parser("unpin", help="give a pinned backup back to retention")
    unpin.add_argument("share", metavar="SHARE")
    unpin.add_argument("--target", required=True)
    jobs = commands.add_parser("jobs", help="job history, newest first (moves on jobs whose next step is due)")
    jobs.add_argument("--target")
    jobs.add_argument("--limit", type=int, default=20)
    prune = commands.add_parser("prune", help="apply the retention policy (a dry run unless --apply)")
    prune.add_argument("--target", help="one target (default: all)")
    prune.add_argument("--apply", action="store_true", help="delete what the plan says")
    prune.add_argument("--override", action="store_true", help="allow deleting past the deletion cap")
    verify = commands.add_parser("verify", help="verify a backup's ledger files offline")
    verify.add_argument("share_name", nargs="?", metavar="SHARE", help="the backup share")
    verify.add_argument("--target", help="app name or resource ID (default: the target the share belongs to)")
    verify.add_argument("--share", help="the backup share (default: the newest good one of --target)")
    commands.add_parser("status", help="health per target")
    commands.add_parser("sweep", help="move on jobs whose next step is overdue; end jobs past their deadline")
    preflight = commands.add_parser("preflight", help="check every permission and connection a backup and restore need")
    preflight.add_argument("--canary", metavar="TARGET", help="also back up and verify this target, with timings")
    for sub in (
        backup,
        restore,
        listing,
        find,
        inspect,
        pin,
        unpin,
        jobs,
        prune,
        verify,
        commands.choices["status"],
        commands.choices["sweep"],
        preflight,
    ):
        sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    return root


def main(argv: Sequence[str] | None = None, out=sys.stdout, err=sys.stderr) -> int:
    args = parser().parse_args(argv)
    try:
        return Cli(out, err).run(args)
    except errors.MccfBackupError as exc:
        print(f"error ({exc.code}): {redact(exc.message)}", file=err)
        return 2 if isinstance(exc, USAGE_ERRORS) else 1
    except KeyboardInterrupt:
        print("interrupted; an operation already started goes on in Azure (see: jobs)", file=err)
        return 1
