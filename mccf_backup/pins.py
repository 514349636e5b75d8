"""Golden copies: backups someone names and keeps on purpose, the second reason Microsoft gives for
backing up a Managed CCF ("add reference data ... use the copy later to create a fresh resource").

A pin is share metadata (label, note, who, when), so it survives a lost job table and is seen by
every reader of the catalog: retention never deletes a pinned backup, a restore can name it by its
label, and the health timer warns before Managed CCF's 90-day restore limit closes on it, since a
golden copy that can no longer be restored is only a souvenir. Pinning and unpinning are recorded
in the job history like every change the app makes.
"""

from __future__ import annotations

import logging

from . import catalog as cat
from . import clock, events, inputs
from .catalog import Backup
from .errors import BackupNotPinnable, MccfBackupError, PinLabelInUse, ShareNotFound
from .jobs import Job, new_job_id
from .label_claims import LabelClaims
from .lifecycle import SUCCEEDED
from .operations import Operations
from .run import Run


class Pins:
    def __init__(self, run: Run, operations: Operations) -> None:
        self.run = run
        self.ops = operations
        self.claims = LabelClaims(run.table)

    def pin(
        self, reference: str, share: str, label: str, note: str | None, trigger: str, caller: str | None = None
    ) -> Backup:
        """Pin ``share`` as ``label``; a label names one backup of a target at a time. The label is
        claimed in the job table before the metadata is written (label_claims), so of two operators
        pinning two shares under one label at once, exactly one gets it."""
        target = self.run.targets.resolve(reference)
        inputs.share_name(share)
        inputs.pin_label(label)
        if note is not None:
            inputs.pin_note(note)
        catalog = self.run.catalog()
        holder = self._holder(catalog.backups(target), label, share)
        if holder is not None:
            raise PinLabelInUse(
                f"'{label}' already pins {holder.share} of {target.name}; unpin it first, or choose another label.",
                target=str(target),
                field="label",
            )
        backup = catalog.get(target, share)  # read last, just before the write that carries it over
        if backup.outcome != "succeeded" or not backup.good:  # judged from its state, not from the request
            raise BackupNotPinnable(
                f"'{share}' is not a finished, good backup (its job failed or still runs, or it failed "
                "verification); pin a good backup.",
                target=str(target),
                field="share",
            )
        pinned = backup.pin
        if pinned is not None and pinned["label"] != label:
            raise PinLabelInUse(
                f"'{share}' is pinned as '{pinned['label']}'; unpin it first to give it another label.",
                target=str(target),
                field="label",
            )
        taken = self.claims.claim(target.resource_id, label, share, lambda other: self._holds(target, other, label))
        if taken is not None:
            raise PinLabelInUse(f"'{label}' was just pinned on {taken}.", target=str(target), field="label")
        metadata = {
            cat.META_PIN_LABEL: label,
            cat.META_PINNED_BY: cat.metadata_text(caller or trigger, 256),
            cat.META_PINNED_AT: clock.utcnow().isoformat(),
            **({cat.META_PIN_NOTE: note} if note else {}),
        }
        current = {k: v for k, v in backup.metadata.items() if k not in cat.PIN_METADATA}  # a new pin, whole
        try:
            catalog.tag(share, metadata, current)
        except MccfBackupError:
            self.claims.release(target.resource_id, label, share)
            raise
        holder = self.claims.holder(target.resource_id, label)
        if holder != share:  # taken over while this pin was being written: the other one holds the label
            catalog.untag(share, cat.PIN_METADATA, catalog.get(target, share).metadata)
            raise PinLabelInUse(f"'{label}' was just pinned on {holder}.", target=str(target), field="label")
        self._protect_quietly(catalog, share)
        self._record("pin", target.resource_id, share, trigger, caller, f"pinned as '{label}'")
        return catalog.get(target, share)

    def _holds(self, target, share: str, label: str) -> bool:
        """Whether ``share`` still carries the pin ``label`` (a claim for it is live), per the catalog."""
        try:
            return (self.run.catalog().get(target, share).pin or {}).get("label") == label
        except ShareNotFound:
            return False  # gone: its claim is stale
        except MccfBackupError:
            return True  # storage did not say: the claim stands

    @staticmethod
    def _holder(backups: list[Backup], label: str, share: str) -> Backup | None:
        return next((b for b in backups if (b.pin or {}).get("label") == label and b.share != share), None)

    @staticmethod
    def _protect_quietly(catalog, share: str) -> None:
        """A golden copy keeps its lease against accidental deletion (its backup may have failed to take one)."""
        try:
            catalog.protect(share)
        except MccfBackupError:
            pass  # the pin holds regardless; retention reads it, not the lease

    def unpin(self, reference: str, share: str, trigger: str, caller: str | None = None) -> Backup:
        """Remove the pin; the backup is retention's again. Unpinning an unpinned backup changes nothing."""
        target = self.run.targets.resolve(reference)
        inputs.share_name(share)
        catalog = self.run.catalog()
        backup = catalog.get(target, share)
        if backup.pin is None:
            return backup
        catalog.untag(share, cat.PIN_METADATA, backup.metadata)
        self.claims.release(target.resource_id, backup.pin["label"], share)
        self._record("unpin", target.resource_id, share, trigger, caller, f"unpinned '{backup.pin['label']}'")
        return catalog.get(target, share)

    def _record(self, kind: str, target: str, share: str, trigger: str, caller: str | None, reason: str) -> Job:
        job = Job(new_job_id(), kind, target, trigger, caller=caller, state=SUCCEEDED, share=share, reason=reason)
        return self.ops.record(job)

    def survey(self, warn_days: int) -> list[dict]:
        """Every pinned backup, one ``health.golden_copy`` each (the workbook's list of golden copies:
        events older than Application Insights' retention are gone, so each health run says them all
        again); those still restorable but within ``warn_days`` of the 90-day limit also warn, and are
        returned as findings."""
        now = clock.utcnow()
        catalog = self.run.catalog()
        findings = []
        for target in self.run.targets:
            for backup in catalog.backups(target):
                if backup.pin is None:
                    continue
                finding = {
                    "target": target.resource_id,
                    "share": backup.share,
                    "label": backup.pin["label"],
                    "daysLeft": backup.days_left(now),
                    "restorable": backup.restorable(now),
                }
                events.emit(events.HEALTH_GOLDEN_COPY, logging.INFO, **finding)
                if backup.days_left(now) > warn_days or not backup.restorable(now):
                    continue  # past the limit it is no longer a restorable copy: warned for warn_days already
                findings.append({"event": events.HEALTH_PIN_RESTORE_WINDOW_CLOSING, **finding})
                events.emit(events.HEALTH_PIN_RESTORE_WINDOW_CLOSING, logging.WARNING, **finding)
        return findings
